"""`curate pack --order related`: In-Context Pretraining's order (Shi et al., 2023) as passes of the runner.

Related documents are put next to each other before packing, so a context holds related documents. The order
is sharded by cluster, as in ICP: what is global is one k-means on a sample of the document vectors (and the
sample mean, subtracted from every vector); everything else is per input unit or per cluster, so no pass holds
more than one unit or one cluster. Four passes write into ``OUT.pack-work/`` and the last one packs:

- ``embed`` (array, per input unit): each document's vector (see :mod:`curate.stages.pack.related`).
- ``centroids`` (single): a seeded sample of about ``--kmeans-sample`` vectors, centred, and spherical k-means
  into ceil(documents / ``--cluster-docs``) clusters.
- ``assign`` (array, per input unit): each document's cluster; the unit's rows (all its columns, its vector,
  its cluster and its number) are written sorted by cluster, so a cluster's rows are a few row groups.
- ``order`` (array, per cluster): the cluster's rows from every assigned unit (in unit order), their ``--neighbors``
  nearest neighbours (hnswlib), and the greedy traversal; the rows are written in visiting order, one part per
  cluster (``ordered/part-{cluster:05d}``), with the input's columns only.
- ``pack`` (array): the usual pack over the ordered parts, in cluster order.

Each pass's plan names the plan of the pass it reads, so a changed input or parameter is never resumed on
stale intermediates. The order depends on the seed and the input's units only, not on workers or tasks.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.hashing import mix64
from curate.io.errors import UsageError
from curate.io.inputs import STDIN, Unit
from curate.io.options import IOOptions
from curate.io.output import (
    MANIFEST,
    PLAN,
    OutputDir,
    ShardInfo,
    ShardWriter,
    UnitRecord,
    merge_counters,
    shard_name,
)
from curate.io.storage import require_local, work_dir_beside
from curate.params import digest
from curate.runner import run_map_stage, run_units
from curate.stages.base import Partition, Pass, UnitContext, UnitStage
from curate.stages.pack.packers import document_number
from curate.stages.pack.related import (
    EMBED_DIMS,
    adjacent_similarity,
    embed,
    greedy_path,
    nearest_centroid,
    neighbours,
    normalise,
    spherical_kmeans,
)

VECTOR = "_icp_vector"
CLUSTER = "_icp_cluster"
NUMBER = "_icp_document"
_VECTOR_TYPE = pa.list_(pa.float32(), EMBED_DIMS)
_MEAN_ROW = -1  # the centroids table's row holding the sample mean
_ONE_SHARD = 1 << 62


def _vectors(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    return column.values.to_numpy().reshape(len(column), EMBED_DIMS)


def _vector_column(vectors: np.ndarray) -> pa.Array:
    return pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), EMBED_DIMS)


def _plan_digest(directory: Path) -> str:
    """The digest of a finished pass's plan: what the next pass's plan names as its source."""
    if not (directory / MANIFEST).is_file():
        raise UsageError(f"{directory}: the `{directory.name}` pass of --order related has not finished: "
                         "run it (or the whole command) first")
    return digest(json.loads((directory / PLAN).read_text()))


def _write(out: OutputDir, index: int, table: pa.Table | pa.RecordBatch, max_rows: int = _ONE_SHARD) -> list[ShardInfo]:
    writer = ShardWriter(out, index, max_rows)
    try:
        writer.write(table)
        return writer.commit()
    except BaseException:
        writer.abort()
        raise


class _OrderPass(UnitStage):
    """A pass of the related order: the pack parameters, plus the plan of the pass it reads (if any)."""

    def __init__(self, params: Any, source: Path | None = None):
        super().__init__(params)
        self.source_dir = str(source) if source is not None else ""

    def identity(self) -> dict:
        return {"source_plan": _plan_digest(Path(self.source_dir))} if self.source_dir else {}


class EmbedStage(_OrderPass):
    """One input unit's document vectors, in input order: ``_icp_vector`` (float32 × EMBED_DIMS)."""

    name = "pack embed"

    def run_unit(self, unit: Unit, context: UnitContext) -> tuple[list[ShardInfo], dict]:
        text = context.columns.text
        batches = [pa.RecordBatch.from_arrays([_vector_column(embed(b.column(text), self.params.seed))], [VECTOR])
                   for b in context.batches(unit)]
        table = pa.Table.from_batches(batches, pa.schema([(VECTOR, _VECTOR_TYPE)]))
        return _write(context.out, unit.index, table), {"documents": table.num_rows}


class CentroidsStage(_OrderPass):
    """The sample mean (row ``-1``) and the k-means centroids (rows 0…k-1) of the embedded documents."""

    name = "pack centroids"

    def run_unit(self, unit: Partition, context: UnitContext) -> tuple[list[ShardInfo], dict]:
        params = self.params
        parts = sorted(Path(self.source_dir).glob("part-*.parquet"))
        documents = sum(pq.ParquetFile(p).metadata.num_rows for p in parts)
        rate = min(1.0, params.kmeans_sample / max(documents, 1))
        threshold = np.uint64(min(int(rate * 2.0**64), 2**64 - 1))
        seed = np.uint64(params.seed & 0xFFFFFFFFFFFFFFFF)
        picked, start = [], 0
        for part in parts:
            vectors = _vectors(pq.read_table(part, columns=[VECTOR]).column(0))
            draws = _draws(np.arange(start, start + len(vectors), dtype=np.uint64), seed)
            picked.append(vectors if rate >= 1 else vectors[draws < threshold])
            start += len(vectors)
        sample = np.concatenate(picked) if picked else np.zeros((0, EMBED_DIMS), np.float32)
        if len(sample) == 0:
            raise UsageError("--order related: no document to order")
        mean = sample.mean(axis=0)
        clusters = -(-documents // params.cluster_docs)
        centroids = spherical_kmeans(normalise(sample - mean), clusters, params.seed)
        table = pa.table({"cluster": pa.array(np.arange(_MEAN_ROW, len(centroids), dtype=np.int32)),
                          "vector": _vector_column(np.vstack([mean[None, :], centroids]).astype(np.float32))})
        return _write(context.out, 0, table), {"documents": documents, "sample": len(sample),
                                                "clusters": len(centroids)}


def _draws(numbers: np.ndarray, seed: np.uint64) -> np.ndarray:
    """A uniform uint64 per document number and seed (the k-means sample takes the lowest)."""
    return mix64(numbers ^ mix64(np.array([seed], np.uint64))[0])


def read_centroids(directory: Path) -> tuple[np.ndarray, np.ndarray]:
    """(sample mean, centroids) written by the centroids pass."""
    table = pq.read_table(directory / shard_name(0)).sort_by("cluster")
    vectors = _vectors(table.column("vector"))
    return vectors[0], vectors[1:]


class AssignStage(_OrderPass):
    """One input unit's rows with their vector, cluster and document number, sorted by cluster."""

    name = "pack assign"

    def __init__(self, params: Any, embedded: Path, centroids: Path):
        super().__init__(params, centroids)
        self.embedded = str(embedded)

    def run_unit(self, unit: Unit, context: UnitContext) -> tuple[list[ShardInfo], dict]:
        mean, centroids = read_centroids(Path(self.source_dir))
        vectors = _vectors(pq.read_table(Path(self.embedded) / shard_name(unit.index), columns=[VECTOR]).column(0))
        id_column = context.columns.id
        batches, row = [], 0
        for batch in context.batches(unit):
            numbers = document_number(unit.index, row) + np.arange(batch.num_rows, dtype=np.int64)
            if id_column not in batch.schema.names:  # the document's number is its id, as pack's doc_id
                batch = batch.append_column(id_column, pa.array(numbers))
            mine = normalise(vectors[row:row + batch.num_rows] - mean)
            batches.append(batch.append_column(VECTOR, _vector_column(mine))
                           .append_column(CLUSTER, pa.array(nearest_centroid(mine, centroids)))
                           .append_column(NUMBER, pa.array(numbers)))
            row += batch.num_rows
        if row != len(vectors):
            raise UsageError(f"{unit.file.path}: the input changed since its documents were embedded "
                             f"({row} rows now, {len(vectors)} then); rerun with --overwrite")
        if not batches:
            return [], {"documents": 0}
        table = pa.Table.from_batches(batches).sort_by([(CLUSTER, "ascending"), (NUMBER, "ascending")])
        return _write(context.out, unit.index, table), {"documents": row}


def cluster_rows(parts: list[Path], cluster: int) -> pa.Table | None:
    """The rows of ``cluster`` in every assigned part, in part order: only the row groups whose cluster
    range holds it are read (parts are sorted by cluster)."""
    tables = []
    for part in parts:
        file = pq.ParquetFile(part)
        column = file.schema_arrow.get_field_index(CLUSTER)
        groups = []
        for g in range(file.metadata.num_row_groups):
            stats = file.metadata.row_group(g).column(column).statistics
            if stats is None or not stats.has_min_max or stats.min <= cluster <= stats.max:
                groups.append(g)
        if groups:
            table = file.read_row_groups(groups)
            tables.append(table.filter(pc.equal(table.column(CLUSTER), cluster)))
    tables = [t for t in tables if t.num_rows]
    return pa.concat_tables(tables, promote_options="default") if tables else None


class OrderStage(_OrderPass):
    """One cluster: neighbours and greedy traversal; its rows written in visiting order."""

    name = "pack order"

    def run_unit(self, unit: Partition, context: UnitContext) -> tuple[list[ShardInfo], dict]:
        params = self.params
        table = cluster_rows(sorted(Path(self.source_dir).glob("part-*.parquet")), unit.index)
        if table is None:
            return [], {"documents": 0, "clusters_empty": 1}
        if context.report is not None:
            context.report(table.num_rows, 0)
        vectors = _vectors(table.column(VECTOR))
        seed = params.seed + unit.index
        path, paths = greedy_path(neighbours(vectors, params.neighbors, seed), seed)
        similarity = adjacent_similarity(vectors, path)
        ordered = table.take(pa.array(path)).drop_columns([VECTOR, CLUSTER, NUMBER])
        shards = _write(context.out, unit.index, ordered, context.io.max_rows_per_shard)
        return shards, {"documents": table.num_rows, "paths": paths, "largest_cluster": table.num_rows,
                        "adjacent_similarity_sum": float(similarity.sum()), "adjacent_pairs": len(similarity)}

    def finish(self, out: OutputDir, records: list[UnitRecord]) -> dict:
        total: dict = {}
        for record in records:
            merge_counters(total, {k: v for k, v in record.stats.items() if k != "largest_cluster"})
        pairs = total.pop("adjacent_pairs", 0)
        similarity = total.pop("adjacent_similarity_sum", 0.0)
        total["largest_cluster"] = max((r.stats.get("largest_cluster", 0) for r in records), default=0)
        total["mean_adjacent_similarity"] = round(similarity / pairs, 4) if pairs else None
        return total


def related_passes(params: Any, io: IOOptions) -> tuple[list[Pass], str]:
    """The passes that order the input for ``--order related``, and the directory of ordered parts."""
    if not io.output or io.output == "-":
        raise UsageError("curate pack writes a directory of token files; give -o DIR")
    if STDIN in io.inputs:
        raise UsageError("--order related reads its input twice: give files, not - (stdin)")
    work = Path(require_local(work_dir_beside(io.output, "pack-work"), "--order related's work directory"))
    embedded, centroids, assigned, ordered = (work / name for name in ("embed", "centroids", "assign", "ordered"))

    def embed_pass(task: IOOptions) -> dict:
        return run_map_stage(EmbedStage(params), dataclasses.replace(task, output=str(embedded)))

    def centroids_pass(task: IOOptions) -> dict:
        return run_units(CentroidsStage(params, embedded), dataclasses.replace(task, output=str(centroids)),
                         [Partition(0, 1)], [str(embedded)])

    def assign_pass(task: IOOptions) -> dict:
        return run_map_stage(AssignStage(params, embedded, centroids), dataclasses.replace(task, output=str(assigned)))

    def order_pass(task: IOOptions) -> dict:
        _plan_digest(centroids)  # finished?
        clusters = len(read_centroids(centroids)[1])
        return run_units(OrderStage(params, assigned), dataclasses.replace(task, output=str(ordered)),
                         [Partition(c, clusters) for c in range(clusters)], [str(assigned)])

    passes = [Pass("embed", embedded, True, embed_pass), Pass("centroids", centroids, False, centroids_pass),
              Pass("assign", assigned, True, assign_pass), Pass("order", ordered, True, order_pass)]
    return passes, str(ordered)
