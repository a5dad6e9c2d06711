"""Exact dedup: documents whose key (text, url or any column; optionally normalised) is equal form a group;
the first in input order stays and gets dup_count, the group's size.

Keys are hashed to 128 bits (XXH64 with seeds 0 and 1, both halves must match), grouped out of core like
MinHash bands, and the same filter pass removes the rest.
"""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from curate.io.errors import InputError
from curate.io.inputs import Columns
from curate.io.options import IOOptions
from curate.io.output import OutputDir
from curate.params import fingerprint
from curate.runner import run_map_stage
from curate.stages.dedup import cluster as uf
from curate.stages.dedup import store
from curate.stages.dedup.minhash_dedup import CLUSTERS, ClusterFilterStage, write_clusters
from curate.stages.dedup.params import ExactParams
from curate.stages.dedup.shingles import normalize

KEYS = "keys"


class KeyHasher:
    """Turns a batch into (id hash, key hash) rows."""

    def __init__(self, params: ExactParams):
        self.params = params

    def key_column(self, columns: Columns) -> str:
        return columns.text if self.params.key == "text" else self.params.key

    def __call__(self, batch: pa.RecordBatch, columns: Columns, where: str) -> pa.RecordBatch:
        name = self.key_column(columns)
        if name not in batch.schema.names:
            raise InputError(where, f"--key {self.params.key}: no column '{name}' "
                                    f"(columns: {', '.join(batch.schema.names)})")
        keys = batch.column(name)
        if not (pa.types.is_string(keys.type) or pa.types.is_large_string(keys.type)):
            keys = pc.cast(keys, pa.string())
        if self.params.normalize:
            keys = normalize(keys, self.params.normalization())
        key_hi, key_lo = store.hash128(keys)
        null = keys.is_null().to_numpy(zero_copy_only=False)
        key_hi[null] = uf.NO_KEY  # documents without a key are never duplicates
        id_hi, id_lo = store.document_ids(batch, columns, where)
        return pa.RecordBatch.from_arrays([pa.array(a) for a in (id_hi, id_lo, key_hi, key_lo)],
                                          ["id_hi", "id_lo", "key_hi", "key_lo"])


def exact_dedup(params: ExactParams, io: IOOptions, work_dir: str | Path) -> dict:
    """Hash keys (resumable per unit), group equal keys, then filter through the shared runner."""
    started = time.perf_counter()
    work = Path(work_dir)
    keys_summary = store.run_unit_pass(KEYS, io, params, {"key": params.key}, work / KEYS,
                                       KeyHasher(params))
    if not keys_summary["complete"]:
        return keys_summary
    clusters_dir = work / CLUSTERS
    plan = {"stage": "dedup exact groups", "parameters": fingerprint(params), "inputs": [str(work / KEYS)],
            "units": [], "keys": store.read_header(work / KEYS, KEYS)["plan_digest"]}
    store.drop_stale_header(clusters_dir, plan)
    if not (clusters_dir / store.HEADER).exists():
        parts = store.part_files(work / KEYS)
        store.check_unique_ids(work / KEYS, parts, params.partition_rows)
        total = int(store.part_rows(parts).sum())
        parent = uf.new_parent(total)
        chunks = zip(store.read_column(parts, "key_hi"), store.read_column(parts, "key_lo"), strict=True)
        uf.union_edges(parent, uf.group_equal_keys(chunks, total, params.partition_rows))
        uf.flatten(parent)
        out = OutputDir(clusters_dir)
        out.prepare(plan, io.overwrite)
        write_clusters(out, plan, parts, parent, "first")
    summary = run_map_stage(ClusterFilterStage(params, clusters_dir, kind="exact"), io)
    summary["wall_seconds"] = round(time.perf_counter() - started, 3)
    return summary
