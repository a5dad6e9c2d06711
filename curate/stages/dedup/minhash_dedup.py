"""MinHash-LSH near-duplicate removal in three resumable passes (`minhash_passes`): signatures → cluster → filter.

signatures: per input unit, one Parquet part with each document's id hash, keep value and one 64-bit key per
  LSH band (band_000 …), i.e. partitioned by band column-wise.
cluster: per band, documents with equal keys are unioned (out of core, see cluster.py); clusters of ≥ 2 are
  written with the kept member marked, one part per signatures unit. With --against, documents sharing a band
  key with an index document (confirmed by exact Jaccard when both stores keep shingle sets) are duplicates of
  it: their whole cluster goes.
filter: a MapStage through the shared runner: looks each document up by its id hash in the clusters parts of
  the units that read its rows (ids must be unique: the cluster pass refuses shared ids, naming both documents).
"""

from __future__ import annotations

import itertools
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.io.errors import InputError, UsageError
from curate.io.inputs import Columns, Unit
from curate.io.options import IOOptions
from curate.io.output import PLAN, ROW_GROUP_ROWS, OutputDir, ShardInfo, ShardWriter, UnitRecord, atomic_open
from curate.io.storage import require_local, work_dir_beside
from curate.params import digest, fingerprint
from curate.runner import run_map_stage
from curate.stages.base import MapStage, Pass, StageOutput, UnitContext
from curate.stages.dedup import cluster as uf
from curate.stages.dedup import store
from curate.stages.dedup.minhash import LshParams, band_keys, permutations, signatures
from curate.stages.dedup.params import ClusterParams, FilterParams, MinhashParams, SignatureParams
from curate.stages.dedup.shingles import normalize, shingle_hashes, shingle_sets

SIGNATURES = "signatures"
CLUSTERS = "clusters"
CLUSTER_SCHEMA = pa.schema([
    ("id_hi", pa.uint64()), ("id_lo", pa.uint64()), ("cluster_id", pa.int64()),
    ("cluster_size", pa.int64()), ("keep", pa.bool_()),
])


def band_column(band: int) -> str:
    return f"band_{band:03d}"


def keep_values(batch: pa.RecordBatch, columns: Columns, keep: str, where: str) -> np.ndarray:
    """The value --keep maximises: text length for `longest`, the column for `max:COLUMN`, 0 for `first`."""
    if keep == "first":
        return np.zeros(batch.num_rows)
    if keep == "longest":
        return pc.utf8_length(batch.column(columns.text)).to_numpy(zero_copy_only=False).astype(np.float64)
    name = keep[4:]
    if name not in batch.schema.names:
        raise InputError(where, f"--keep {keep}: no column '{name}' (columns: {', '.join(batch.schema.names)})")
    try:
        values = pc.cast(batch.column(name), pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise InputError(where, f"--keep {keep}: expected a numeric column, found {batch.schema.field(name).type}",
                         column=name) from None
    return pc.fill_null(values, -np.inf).to_numpy(zero_copy_only=False)


class SignatureComputer:
    """Turns a batch of documents into signature rows (kept picklable and cheap to rebuild)."""

    def __init__(self, params: SignatureParams):
        params.check()
        self.params = params
        self.lsh = LshParams.choose(params.threshold, params.num_perm, params.false_positive_weight,
                                    params.false_negative_weight, params.bands, params.rows)
        self.a, self.b = permutations(params.num_perm, params.seed)
        self.norm = params.normalization()

    def header(self) -> dict:
        return {"signature_parameters": fingerprint(self.params), "bands": self.lsh.bands, "rows": self.lsh.rows,
                "normalization": self.norm.describe()}

    def band_keys(self, texts: pa.Array, lang: pa.Array | None = None) -> tuple[np.ndarray, pa.Array | None]:
        """Band keys (bands × documents) and, with --verify, each document's shingle set (sorted uint32, as the
        little-endian bytes of a large_binary value).

        `lang` (the documents' language column, when the input has one) picks char shingles for languages
        written without spaces."""
        hashes, offsets = shingle_hashes(normalize(texts, self.norm), self.params.shingle, self.params.ngram,
                                         self.params.spaceless_ngram, lang)
        keys = band_keys(signatures(hashes, offsets, self.a, self.b), self.lsh.bands, self.lsh.rows)
        keys[:, np.diff(offsets) == 0] = uf.NO_KEY
        sets = None
        if self.params.verify:  # raw uint32 bytes: a Parquet list column costs ~70 bytes per value to write
            values, set_offsets = shingle_sets(hashes, offsets)
            sets = pa.LargeBinaryArray.from_buffers(pa.large_binary(), len(set_offsets) - 1,
                                                    [None, pa.py_buffer(set_offsets * 4), pa.py_buffer(values)])
        return keys, sets

    def __call__(self, batch: pa.RecordBatch, columns: Columns, where: str) -> pa.RecordBatch:
        id_hi, id_lo = store.document_ids(batch, columns, where)
        lang = batch.column("lang") if "lang" in batch.schema.names else None
        keys, sets = self.band_keys(batch.column(columns.text), lang)
        arrays = [pa.array(id_hi), pa.array(id_lo), pa.array(keep_values(batch, columns, self.params.keep, where))]
        names = ["id_hi", "id_lo", "keep_value"]
        for band in range(self.lsh.bands):
            arrays.append(pa.array(keys[band]))
            names.append(band_column(band))
        if sets is not None:
            arrays.append(sets)
            names.append("shingles")
        return pa.RecordBatch.from_arrays(arrays, names)


def kernels_to_compile() -> list[str]:
    """The numba kernels of the MinHash passes that have no compiled copy in numba's cache for this source.

    Compiling them takes ~15 s on the first run; later runs load them from the cache (`cache=True`).
    """
    from curate import hashing
    from curate.stages.dedup import minhash, shingles

    kernels = [shingles._normalize, shingles._compact, shingles._count_words, shingles._word_shingles,
               shingles._count_codepoints, shingles._char_shingles, shingles._spaceless_share,
               shingles._sort_unique_segments, shingles._compact_segments, minhash._signatures, minhash._band_keys,
               hashing._hash_strings, uf.run_edges, uf.union_pairs, uf.flatten, uf.edge_jaccard]
    missing = []
    for kernel in kernels:
        try:
            cached = bool(kernel._cache._cache_file._load_index())  # numba internals: assume cached if they move
        except (AttributeError, OSError):
            cached = True
        if not cached:
            missing.append(kernel.__name__)
    return missing


def compute_signatures(params: SignatureParams, io: IOOptions, out: str | Path) -> dict:
    computer = SignatureComputer(params)
    summary = store.run_unit_pass(SIGNATURES, io, params, computer.header(), out, computer)
    summary["lsh"] = computer.lsh.describe()
    return summary


def _check_compatible(index: dict, corpus: dict, index_path: str) -> None:
    keys = ("bands", "rows", "normalization")
    a, b = index["signature_parameters"], corpus["signature_parameters"]
    same = ("num_perm", "ngram", "shingle", "spaceless_ngram", "seed", "threshold")
    different = [k for k in keys if index[k] != corpus[k]] + [k for k in same if a.get(k) != b.get(k)]
    if different:
        raise UsageError(f"--against {index_path}: the index was made with other signature parameters ("
                         + ", ".join(f"{k}: {index.get(k, a.get(k))} there, {corpus.get(k, b.get(k))} here"
                                     for k in different) + ")")


def _edges_name(plan: dict, index: int, count: int) -> str:
    """Per-task union-find results; the plan digest keeps files of an overwritten run from being reused."""
    return f"edges-{digest(plan)}-{index:05d}-of-{count:05d}.npz"


def cluster_signatures(params: ClusterParams, sig_dir: str | Path, out_path: str | Path, io: IOOptions) -> dict:
    """Union-find over the bands of this task (all bands with one task), then clusters once all tasks are done."""
    started = time.perf_counter()
    header = store.read_header(sig_dir, SIGNATURES)
    if params.against:
        require_local(params.against, "--against")
    index_header = store.read_header(params.against, SIGNATURES) if params.against else None
    if index_header is not None:
        _check_compatible(index_header, header, params.against)  # type: ignore[arg-type]
    parts = store.part_files(sig_dir)
    total = int(store.part_rows(parts).sum())
    task, count = io.task()
    plan = {"stage": "dedup cluster", "parameters": {**fingerprint(params), "signatures": header,
                                                     "against": index_header}, "inputs": [str(sig_dir)],
            "units": [{"tasks": count}]}
    out = OutputDir(out_path)
    out.prepare(plan, io.overwrite, (task, count))
    store.drop_stale_header(out.path, plan)
    for stale in out.path.glob("edges-*.npz"):
        if f"-{digest(plan)}-" not in stale.name:
            stale.unlink(missing_ok=True)
    edges_path = out.path / _edges_name(plan, task, count)
    if not edges_path.exists():
        if task == 0:
            store.check_unique_ids(Path(sig_dir), parts, params.partition_rows)
        parent = uf.new_parent(total)
        matched = np.zeros(0, dtype=bool)  # with --against: which documents match the index
        verify = header["signature_parameters"]["verify"]
        my_bands = range(task, header["bands"], count)
        edges = (edge for band in my_bands for edge in uf.group_equal_keys(
            ((k, None) for k in store.read_column(parts, band_column(band))), total, params.partition_rows))
        if verify:
            threshold = header["signature_parameters"]["threshold"]
            union_verified(parent, edges, lambda left, right: verified(parts, left, right, threshold),
                           params.partition_rows)
        else:
            uf.union_edges(parent, edges)
        if params.against:
            assert index_header is not None
            verify_index = verify and index_header["signature_parameters"]["verify"]
            threshold = header["signature_parameters"]["threshold"]
            matched = _index_matches(parts, store.part_files(params.against), my_bands, verify_index, threshold,
                                     params.partition_rows)
        uf.flatten(parent)
        children = np.nonzero(parent != np.arange(total, dtype=parent.dtype))[0]
        with atomic_open(edges_path, "wb") as handle:
            np.savez(handle, child=children, root=parent[children].astype(np.int64), matched=np.flatnonzero(matched))
    summary = {"stage": "dedup cluster", "output": str(out.path), "documents": total, "task": task, "tasks": count}
    pending = [i for i in range(count) if not (out.path / _edges_name(plan, i, count)).exists()]
    if pending:
        summary["complete"] = False
        return summary
    summary.update(_write_clusters(out, plan, parts, total, count))
    summary["wall_seconds"] = round(time.perf_counter() - started, 3)
    return summary


def signature_pass(params: SignatureParams, out: str | Path) -> Pass:
    return Pass(SIGNATURES, Path(out), True, lambda task: compute_signatures(params, task, out))


def cluster_pass(params: ClusterParams, signatures_dir: str | Path, out: str | Path) -> Pass:
    return Pass("cluster", Path(out), True, lambda task: cluster_signatures(params, signatures_dir, out, task))


def filter_pass(params: FilterParams, clusters_dir: str | Path, output: str, rejected: str | None,
                name: str = "filter") -> Pass:
    return Pass(name, Path(output), True, lambda task: run_map_stage(ClusterFilterStage(params, clusters_dir), task,
                                                                     rejected_dir=rejected))


def minhash_passes(params: MinhashParams, io: IOOptions, rejected: str | None = None) -> list[Pass]:
    """signatures → cluster → filter, each an array pass (cluster: every N-th band per task); intermediates
    in --work-dir (default OUT.minhash-work), removed documents in `rejected` when given."""
    work = Path(require_local(params.work_dir, "--work-dir") if params.work_dir
                else work_dir_beside(io.output, "minhash-work"))
    signatures_dir, clusters_dir = work / SIGNATURES, work / CLUSTERS
    return [signature_pass(params.signatures, signatures_dir),
            cluster_pass(params.cluster, signatures_dir, clusters_dir),
            filter_pass(params.filter, clusters_dir, io.output, rejected)]


SCRATCH_GROUPS = 128  # at most this many scratch files (of each kind) open at once while verifying


def part_sets(part: Path, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shingle sets of `rows` (in that order) of one part, as (flat uint32 values, offsets)."""
    column = pq.read_table(part, columns=["shingles"]).column(0).combine_chunks()
    picked = column.take(pa.array(rows, pa.int64()))
    _, offsets_buffer, data_buffer = picked.buffers()
    byte_offsets = np.frombuffer(offsets_buffer, np.int64)[picked.offset : picked.offset + len(picked) + 1]
    data = np.frombuffer(data_buffer, np.uint8) if data_buffer is not None else np.zeros(0, np.uint8)
    return data[byte_offsets[0] : byte_offsets[-1]].view(np.uint32), (byte_offsets - byte_offsets[0]) // 4


def _segments(values: np.ndarray, offsets: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The segments `rows` of a flat (values, offsets) set list, as a new flat list."""
    lengths = offsets[rows + 1] - offsets[rows]
    new_offsets = np.concatenate([[0], np.cumsum(lengths)])
    source = np.repeat(offsets[rows] - new_offsets[:-1], lengths) + np.arange(new_offsets[-1])
    return values[source], new_offsets


def verified(parts: list[Path], left: np.ndarray, right: np.ndarray, threshold: float,
             right_parts: list[Path] | None = None) -> np.ndarray:
    """Which candidate edges have exact Jaccard ≥ threshold on the stored shingle sets.

    `right` ids refer to `right_parts` when given (an --against index), else to `parts`. Out of core, so that
    memory does not grow with the corpus: reading the store part by part, each edge's left set is written to a
    scratch file of the group of parts holding its right document; each group is then read back with the
    right documents' sets, one part at a time. Memory: one part's sets and one group's edges.
    """
    right_parts = parts if right_parts is None else right_parts
    ok = np.zeros(len(left), dtype=bool)
    if not len(left):
        return ok
    left_start = np.concatenate([[0], np.cumsum(store.part_rows(parts))])
    right_start = np.concatenate([[0], np.cumsum(store.part_rows(right_parts))])
    left_part = (np.searchsorted(left_start, left, side="right") - 1).astype(np.int32)
    right_part = (np.searchsorted(right_start, right, side="right") - 1).astype(np.int32)
    groups = min(len(right_parts), SCRATCH_GROUPS)
    group = (right_part.astype(np.int64) * groups // len(right_parts)).astype(np.int32)
    order = np.lexsort((group, left_part))
    with tempfile.TemporaryDirectory(prefix="curate-verify-") as tmp:
        names = [(os.path.join(tmp, f"e{g:05d}"), os.path.join(tmp, f"v{g:05d}")) for g in range(groups)]
        files = [(open(e, "wb"), open(v, "wb")) for e, v in names]  # noqa: SIM115
        try:
            part_bounds = np.searchsorted(left_part[order], np.arange(len(parts) + 1))
            for p in np.nonzero(np.diff(part_bounds))[0]:
                edges = order[part_bounds[p] : part_bounds[p + 1]]
                values, offsets = part_sets(parts[p], left[edges] - left_start[p])
                group_bounds = np.searchsorted(group[edges], np.arange(groups + 1))
                for g in np.nonzero(np.diff(group_bounds))[0]:
                    a, b = group_bounds[g], group_bounds[g + 1]
                    np.stack([edges[a:b], np.diff(offsets[a : b + 1])], axis=1).tofile(files[g][0])
                    values[offsets[a] : offsets[b]].tofile(files[g][1])
        finally:
            for edges_file, values_file in files:
                edges_file.close()
                values_file.close()
        for edges_name, values_name in names:
            meta = np.fromfile(edges_name, np.int64).reshape(-1, 2)
            left_values = np.fromfile(values_name, np.uint32)
            left_offsets = np.concatenate([[0], np.cumsum(meta[:, 1])])
            edges = meta[:, 0]
            by_part = np.argsort(right_part[edges], kind="stable")
            bounds = np.searchsorted(right_part[edges][by_part], np.arange(len(right_parts) + 1))
            for q in np.nonzero(np.diff(bounds))[0]:
                rows = by_part[bounds[q] : bounds[q + 1]]
                a_values, a_offsets = _segments(left_values, left_offsets, rows)
                b_values, b_offsets = part_sets(right_parts[q], right[edges[rows]] - right_start[q])
                values = np.concatenate([a_values, b_values])
                offsets = np.concatenate([a_offsets, b_offsets[1:] + a_offsets[-1]])
                pairs = np.arange(len(rows))
                ok[edges[rows]] = uf.edge_jaccard(values, offsets, pairs, pairs + len(rows)) >= threshold
            os.unlink(edges_name)
            os.unlink(values_name)
    return ok


def _index_matches(parts: list[Path], index_parts: list[Path], bands: range, verify: bool,
                   threshold: float, partition_rows: int) -> np.ndarray:
    """Whether each corpus document shares a band key with an index document (and, with verify, has exact
    Jaccard ≥ threshold with the first index document with that key).

    Each band's keys of the corpus (ids 0…N−1) and the index (ids N…) are grouped together, out of core as the
    corpus's own bands are, and the distinct pairs are verified in batches of at most `partition_rows`: memory
    is one band partition and one batch, whatever the two stores' sizes."""
    total = int(store.part_rows(parts).sum())
    index_total = int(store.part_rows(index_parts).sum())
    matched = np.zeros(total, dtype=bool)

    def pairs() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for band in bands:
            column = band_column(band)
            keys = itertools.chain(store.read_column(parts, column), store.read_column(index_parts, column))
            for left, right in uf.group_equal_keys(((k, None) for k in keys), total + index_total, partition_rows):
                # a group's edges run from its first document (the smallest id: a corpus document, if the group
                # has any) to each other member in id order: its first edge into the index names the first index
                # document with the key
                into_index = (left < total) & (right >= total)  # groups of index documents only: no match
                firsts, first_edge = np.unique(left[into_index], return_index=True)
                first_index = right[into_index][first_edge] - total
                within = right < total
                at = np.minimum(np.searchsorted(firsts, left[within]), max(len(firsts) - 1, 0))
                hit = (firsts[at] == left[within]) if len(firsts) else np.zeros(int(within.sum()), bool)
                yield np.concatenate([firsts, right[within][hit]]), np.concatenate([first_index, first_index[at[hit]]])

    for corpus, index in uf.distinct_edges(pairs(), max(index_total, 1), partition_rows):
        ok = verified(parts, corpus, index, threshold, index_parts) if verify else slice(None)
        matched[corpus[ok]] = True
    return matched


def union_verified(parent: np.ndarray, edges: Iterable[tuple[np.ndarray, np.ndarray]],
                   verify: Callable[[np.ndarray, np.ndarray], np.ndarray], batch_edges: int) -> None:
    """Union the candidate edges that `verify` confirms, checking only edges that would join two clusters.

    An edge between documents that confirmed edges have already joined cannot change the clusters, so it is
    skipped unchecked; the others are checked in batches of about `batch_edges` distinct edges. The clusters
    are those of checking every candidate edge, and memory is one batch whatever the corpus (edges are
    filtered as they are read, so each batch sees the clusters its predecessors confirmed).
    """
    def joining(left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        joins = uf.joins_clusters(parent, left.astype(parent.dtype), right.astype(parent.dtype))
        return left[joins], right[joins]

    for left, right in uf.distinct_edges((joining(*edge) for edge in edges), len(parent), batch_edges):
        ok = verify(left, right)
        uf.union_pairs(parent, left[ok].astype(parent.dtype), right[ok].astype(parent.dtype))


def _write_clusters(out: OutputDir, plan: dict, parts: list[Path], total: int, count: int) -> dict:
    parent = uf.new_parent(total)
    matched = []
    for i in range(count):
        with np.load(out.path / _edges_name(plan, i, count)) as edges:
            uf.union_pairs(parent, edges["child"].astype(parent.dtype), edges["root"].astype(parent.dtype))
            matched.append(edges["matched"])
    uf.flatten(parent)
    keep_rule = store.read_header(parts[0].parent, SIGNATURES)["signature_parameters"]["keep"]
    return write_clusters(out, plan, parts, parent, keep_rule, np.unique(np.concatenate(matched)))


def write_clusters(
    out: OutputDir, plan: dict, parts: list[Path], parent: np.ndarray, keep_rule: str,
    matched: np.ndarray | None = None,
) -> dict:
    """Write the clusters table and finish `out`: one part per unit of the signatures store, holding that
    unit's documents in clusters of ≥ 2 and those matching an index, sorted by id hash.

    `parent` is the flat union-find array; a cluster's id is the id hash of its first document (its root, which
    comes first in compact-id order, so the parts are written in one read of the store). Memory: the parent
    array, one byte per document, about 40 bytes per cluster, and one part.
    """
    total = len(parent)
    matched = np.zeros(0, np.int64) if matched is None else matched
    roots = uf.cluster_roots(parent, matched)
    sizes = np.zeros(len(roots), np.int64)
    in_index = np.zeros(len(roots), dtype=bool)  # clusters touching the index: none of their documents is kept
    in_index[np.searchsorted(roots, parent[matched])] = True
    starts = np.concatenate([[0], np.cumsum(store.part_rows(parts))])
    for start, stop in itertools.pairwise(starts):
        _, ranks = uf.cluster_ranks(roots, parent[start:stop])
        sizes += np.bincount(ranks, minlength=len(roots))
    kept_id = roots.astype(np.int64)  # `first`: the root
    if keep_rule != "first":
        kept_id = np.full(len(roots), -1, np.int64)
        best = np.zeros(len(roots))
        for start, values in zip(starts, store.read_column(parts, "keep_value"), strict=False):
            found, ranks = uf.cluster_ranks(roots, parent[start : start + len(values)])
            uf.best_members(ranks, found + start, values[found], kept_id, best)
        del best
    stats = {
        "documents": total,
        "documents_in_clusters": int(sizes[sizes > 1].sum()),
        "clusters": int(np.count_nonzero(sizes > 1)),
        "duplicates_removed": int(sizes.sum() - np.count_nonzero(~in_index)),
        "matched_index": len(matched),
    }
    root_hi = np.zeros(len(roots), np.uint64)
    records = []
    start = 0
    for unit, unit_parts in _parts_by_unit(parts).items():
        ids = pa.concat_tables(pq.read_table(p, columns=["id_hi", "id_lo"]) for p in unit_parts)
        id_hi = ids.column("id_hi").to_numpy()
        found, ranks = uf.cluster_ranks(roots, parent[start : start + len(id_hi)])
        doc = found + start
        is_root = roots[ranks] == doc
        root_hi[ranks[is_root]] = id_hi[found[is_root]]  # roots come before their members
        rows = pa.table([id_hi[found], ids.column("id_lo").to_numpy()[found], root_hi[ranks].view(np.int64),
                         sizes[ranks], (kept_id[ranks] == doc) & ~in_index[ranks]], schema=CLUSTER_SCHEMA)
        rows = rows.sort_by([("id_hi", "ascending"), ("id_lo", "ascending")])
        writer = ShardWriter(out, unit, 1 << 62)
        for row_group in range(0, max(rows.num_rows, 1), ROW_GROUP_ROWS):  # the writer copies what it holds
            writer.write(rows.slice(row_group, ROW_GROUP_ROWS))
        record = UnitRecord(unit, writer.commit(), {"docs_in": len(id_hi)})
        out.mark_finished(record)
        records.append(record)
        start += len(id_hi)
    out.finalize(plan, records, [], 0.0)
    store.write_header(out.path, {"kind": CLUSTERS, **stats, "layout": "units",
                                  "units": _unit_sources(parts[0].parent)}, plan)
    return {**stats, "complete": True}


def _parts_by_unit(parts: list[Path]) -> dict[int, list[Path]]:
    """The store's parts grouped by input unit (part-NNNNN.parquet and its overflow part-NNNNN_MMMM.parquet)."""
    units: dict[int, list[Path]] = {}
    for part in parts:
        units.setdefault(store.part_unit(part), []).append(part)
    return units


def _unit_sources(store_dir: Path) -> list[dict] | None:
    """Each unit of the signatures store as the file rows it read (index, path, size, row_start, row_stop), so
    that a filter task can load only the clusters parts of its own units; None when the store has no plan."""
    plan_file = store_dir / PLAN
    if not plan_file.is_file():
        return None
    plan = json.loads(plan_file.read_text())
    sizes = {entry["path"]: entry["size"] for entry in plan["inputs"]}
    return [{**unit, "size": sizes.get(unit["path"])} for unit in plan["units"]]


class ClusterLookup:
    """Rows of the clusters table (only documents in clusters), searched by 128-bit id hash.

    `parts` picks some of the table's parts (a filter task's own units); default: all of them."""

    def __init__(self, path: str | Path, parts: list[Path] | None = None):
        store.read_header(path, CLUSTERS)
        # parts are each sorted by id hash: searched as one table, read one column at a time so that loading
        # holds the lookup plus one column (33 bytes per row in all)
        parts = store.part_files(path) if parts is None else parts
        self.keys = np.empty(int(store.part_rows(parts).sum()), [("h", np.uint64), ("l", np.uint64)])
        self.keys["h"] = _column(parts, "id_hi")
        self.keys["l"] = _column(parts, "id_lo")
        order = np.argsort(self.keys, kind="stable") if len(parts) > 1 else slice(None)
        self.keys = self.keys[order]
        self.hi, self.lo = self.keys["h"], self.keys["l"]  # views: the ids are held once
        self.cluster_id = _column(parts, "cluster_id")[order]
        self.size = _column(parts, "cluster_size")[order]
        self.keep = _column(parts, "keep")[order]

    def find(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """Row of each (hi, lo) in the table, or -1."""
        if not len(self.keys):
            return np.full(len(hi), -1)
        pos = np.minimum(np.searchsorted(self.keys, _pairs(hi, lo)), len(self.keys) - 1)
        found = (self.hi[pos] == hi) & (self.lo[pos] == lo)
        return np.where(found, pos, -1)


class UnitParts:
    """Which parts of a clusters table written by unit can hold a filter unit's documents: those of the
    signatures units that read overlapping rows of the same file (same path and size)."""

    def __init__(self, clusters: str | Path, header: dict):
        self.parts = _parts_by_unit(store.part_files(clusters))
        self.units_of_file: dict[tuple[str, int], list[dict]] = {}
        by_unit = header.get("layout") == "units" and header.get("units")
        for unit in by_unit or []:
            self.units_of_file.setdefault((unit["path"], unit["size"]), []).append(unit)

    def __call__(self, unit: Unit) -> list[Path] | None:
        """The parts, or None when no signatures unit read this file (another spelling of the path, other
        files, a table not written by unit): then only the whole table is certain to hold its documents."""
        stop = np.inf if unit.row_stop is None else unit.row_stop
        picked = [u["index"] for u in self.units_of_file.get((unit.file.path, unit.file.size), [])
                  if u["row_start"] < stop and unit.row_start < (np.inf if u["row_stop"] is None else u["row_stop"])]
        return [p for index in picked for p in self.parts.get(index, [])] or None


def _column(parts: list[Path], name: str) -> np.ndarray:
    values = np.concatenate([pq.read_table(p, columns=[name]).column(0).to_numpy(zero_copy_only=False) for p in parts])
    pa.default_memory_pool().release_unused()  # Arrow's allocator keeps freed pages otherwise
    return values


def _pairs(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """(hi, lo) as one structured array that sorts and searches lexicographically."""
    return np.stack([hi, lo], axis=1).view([("h", np.uint64), ("l", np.uint64)]).ravel()


class ClusterFilterStage(MapStage):
    """Keeps one document per cluster (or annotates all) using a clusters table.

    `minhash` adds dup_cluster_id and dup_cluster_size (and dup_keep when annotating); `exact` adds dup_count.
    """

    name = "dedup filter"

    def __init__(self, params: FilterParams, clusters: str | Path, kind: str = "minhash"):
        super().__init__(params)
        self.kind = kind
        self.name = f"dedup {kind}"
        self.clusters = str(clusters)
        self.header = store.read_header(self.clusters, CLUSTERS)
        self.lookup: ClusterLookup | None = None
        self.whole_table = False  # whether `lookup` is the whole table (kept for the next unit)
        self.unit_parts: UnitParts | None = None  # built on the first unit

    def identity(self) -> dict:
        return {"clusters": self.clusters, "clusters_manifest": self.header}

    def run_unit(self, unit: Unit, context: UnitContext) -> tuple[list[ShardInfo], dict]:
        """Look documents up in the unit's own clusters parts when the table was written by unit (memory: one
        unit's rows, whatever the corpus), else in the whole table."""
        if self.unit_parts is None:
            self.unit_parts = UnitParts(self.clusters, self.header)
        parts = self.unit_parts(unit)
        if parts is not None:
            self.lookup, self.whole_table = ClusterLookup(self.clusters, parts), False
        elif not self.whole_table:
            self.lookup = None
        return super().run_unit(unit, context)

    def process(self, batch: pa.RecordBatch, columns: Columns) -> StageOutput:
        if self.lookup is None:
            self.lookup, self.whole_table = ClusterLookup(self.clusters), True
        hi, lo = store.document_ids(batch, columns, "input")
        row = self.lookup.find(hi, lo)
        hit = row >= 0
        cluster_id = hi.view(np.int64).copy()
        size = np.ones(len(hi), np.int64)
        keep = np.ones(len(hi), bool)
        cluster_id[hit] = self.lookup.cluster_id[row[hit]]
        size[hit] = self.lookup.size[row[hit]]
        keep[hit] = self.lookup.keep[row[hit]]
        reason = "near_duplicate" if self.kind == "minhash" else "duplicate"
        if self.kind == "minhash":
            out = _replace(batch, "dup_cluster_id", pa.array(cluster_id))
            out = _replace(out, "dup_cluster_size", pa.array(size))
        else:
            out = _replace(batch, "dup_count", pa.array(size))
        removed = int(np.count_nonzero(~keep))
        counters = {"removed": {reason: removed} if removed else {},
                    "clusters": int(np.count_nonzero(hit & keep & (size > 1)))}
        if getattr(self.params, "mode", "filter") == "annotate":
            return StageOutput(_replace(out, "dup_keep", pa.array(keep)), None, counters)
        mask = pa.array(keep)
        rejected = out.filter(pc.invert(mask))
        rejected = rejected.append_column("reason", pa.array([reason] * rejected.num_rows, pa.string()))
        return StageOutput(out.filter(mask), rejected, counters)


def _replace(batch: pa.RecordBatch, name: str, values: pa.Array) -> pa.RecordBatch:
    if name in batch.schema.names:
        batch = batch.drop_columns([name])
    return batch.append_column(name, values)
