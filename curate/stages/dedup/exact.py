"""Exact dedup: documents whose key (text, url or any column; optionally normalised) is equal form a group;
the first in input order stays and gets dup_count, the group's size.

Three array passes (:func:`exact_passes`), each resumable unit by unit and shared by any number of workers,
array tasks or Ray tasks:

keys: per input unit, each document's id hash and key hash, both 128 bits (XXH64 with seeds 0 and 1; both
  halves must match); the row order of the parts gives the compact ids (position in plan order).
groups: per hash partition of the keys (``Partition(p, P)``, P = documents / --partition-rows, at least 1),
  the rows whose key hash falls in p are read from every part (one part's columns at a time) and grouped;
  members of groups of two or more are written as part ``p`` of the clusters table. Ids are checked unique
  the same way, partitioned by id hash. Whoever finishes the last partition writes the `_dedup.json` header.
filter: the clusters filter shared with MinHash dedup removes every member but the first.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.io.errors import InputError, UsageError
from curate.io.inputs import Columns
from curate.io.options import IOOptions
from curate.io.output import PLAN, OutputDir, ShardInfo, ShardWriter, UnitRecord
from curate.runner import run_map_stage, run_units
from curate.stages.base import Partition, Pass, UnitContext, UnitStage
from curate.stages.dedup import cluster as uf
from curate.stages.dedup import store
from curate.stages.dedup.minhash_dedup import CLUSTER_SCHEMA, CLUSTERS, ClusterFilterStage
from curate.stages.dedup.params import ExactParams
from curate.stages.dedup.shingles import normalize

KEYS = "keys"
GROUP_COUNTERS = ("documents", "documents_in_clusters", "clusters", "duplicates_removed")


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


def partition_count(documents: int, partition_rows: int) -> int:
    """Hash partitions of the groups pass: about `partition_rows` keys each, at least one."""
    return max(1, -(-documents // max(partition_rows, 1)))


def rows_in_partition(parts: list[Path], partition: Partition, columns: tuple[str, ...],
                      skip: np.uint64 | None = None) -> dict[str, np.ndarray]:
    """The rows of every part whose hash in `columns[0]` falls in `partition` (hash mod count) and is not
    `skip`: those columns and `row`, the rows' compact ids. Reads one part's columns at a time."""
    count, index = np.uint64(partition.count), np.uint64(partition.index)
    picked: dict[str, list[np.ndarray]] = {name: [] for name in (*columns, "row")}
    start = 0
    for part in parts:
        table = pq.read_table(part, columns=list(columns))
        hashes = table.column(columns[0]).to_numpy()
        wanted = hashes % count == index
        if skip is not None:
            wanted &= hashes != skip
        mine = np.nonzero(wanted)[0]
        for name in columns:
            picked[name].append(table.column(name).to_numpy()[mine])
        picked["row"].append(mine + start)
        start += table.num_rows
    return {name: np.concatenate(chunks) for name, chunks in picked.items()}


class GroupStage(UnitStage):
    """One hash partition of the keys store: refuse shared ids, then write the partition's groups."""

    name = "dedup exact groups"

    def __init__(self, params: ExactParams, keys_dir: str | Path):
        super().__init__(params)
        self.keys_dir = str(keys_dir)

    def identity(self) -> dict:
        return {"keys": store.read_header(self.keys_dir, KEYS)["plan_digest"]}

    def run_unit(self, unit: Partition, context: UnitContext) -> tuple[list[ShardInfo], dict]:
        keys_dir = Path(self.keys_dir)
        parts = store.part_files(keys_dir)
        ids = rows_in_partition(parts, unit, ("id_hi", "id_lo"))
        if context.report is not None:
            context.report(len(ids["row"]), 0)
        rows, firsts, _ = uf.equal_key_groups(ids["id_hi"], ids["id_lo"])
        later = rows != firsts
        if later.any():  # name the partition's earliest document whose id an earlier document has
            second = int(np.argmin(rows[later]))
            store.refuse_shared_id(keys_dir, parts, int(ids["row"][firsts[later][second]]),
                                   int(ids["row"][rows[later][second]]))
        documents = len(ids["row"])
        del ids, rows, firsts
        # documents without a key are never duplicates: left out as the parts are read (not all in partition 0)
        keys = rows_in_partition(parts, unit, ("key_hi", "key_lo", "id_hi", "id_lo"), skip=uf.NO_KEY)
        members, firsts, sizes = uf.equal_key_groups(keys["key_hi"], keys["key_lo"])
        kept = members == firsts
        table = pa.table([keys["id_hi"][members], keys["id_lo"][members], keys["id_hi"][firsts].view(np.int64),
                          sizes, kept], schema=CLUSTER_SCHEMA)
        writer = ShardWriter(context.out, unit.index, 1 << 62)
        try:
            writer.write(table.sort_by([("id_hi", "ascending"), ("id_lo", "ascending")]))
            shards = writer.commit()
        except BaseException:
            writer.abort()
            raise
        return shards, {"documents": documents, "documents_in_clusters": len(members),
                        "clusters": int(np.count_nonzero(kept)),
                        "duplicates_removed": int(len(members) - np.count_nonzero(kept))}

    def finish(self, out: OutputDir, records: list[UnitRecord]) -> dict:
        """The `_dedup.json` header the filter pass asks for (the same counts whatever the partitions)."""
        counts = {name: sum(r.stats.get(name, 0) for r in records) for name in GROUP_COUNTERS}
        plan_text = out.files.read_text(PLAN)
        assert plan_text is not None  # recorded before any unit ran
        plan = json.loads(plan_text)
        store.write_header(out.path, {"kind": CLUSTERS, **counts, "matched_index": 0, "partitions": len(records)},
                           plan)
        return {"partitions": len(records)}


def group_keys(params: ExactParams, keys_dir: Path, clusters_dir: Path, io: IOOptions) -> dict:
    """This task's share of the hash partitions of a finished keys store. The partition count is recorded in
    the plan's units, so every task and rerun groups the same partitions."""
    stage = GroupStage(params, keys_dir)
    count = partition_count(store.read_header(keys_dir, KEYS)["documents"], params.partition_rows)
    recorded = _recorded_partitions(clusters_dir, stage.identity()["keys"])
    if recorded not in (None, count) and not io.overwrite:
        raise UsageError(f"{clusters_dir}: grouped in {recorded} hash partitions; --partition-rows "
                         f"{params.partition_rows} makes {count}: pass the --partition-rows of the first run to "
                         "resume it, or --overwrite to group again")
    units = [Partition(i, count) for i in range(count)]
    return run_units(stage, dataclasses.replace(io, output=str(clusters_dir)), units, [str(keys_dir)])


def _recorded_partitions(clusters_dir: Path, keys_digest: str) -> int | None:
    """Partitions in the plan of an earlier groups pass over the same keys (None: no such plan)."""
    plan = clusters_dir / PLAN
    if not plan.is_file():
        return None
    recorded = json.loads(plan.read_text())
    if recorded.get("parameters", {}).get("keys") != keys_digest:
        return None
    return len(recorded.get("units", []))


def exact_passes(params: ExactParams, io: IOOptions, work_dir: str | Path) -> list[Pass]:
    """keys → groups → filter, all array passes; `work_dir` holds keys/ and clusters/."""
    work = Path(work_dir)
    keys_dir, clusters_dir = work / KEYS, work / CLUSTERS
    return [
        Pass("keys", keys_dir, True, lambda task: store.run_unit_pass(
            KEYS, task, params, {"key": params.key}, keys_dir, KeyHasher(params))),
        Pass("groups", clusters_dir, True, lambda task: group_keys(params, keys_dir, clusters_dir, task)),
        Pass("filter", Path(io.output), True, lambda task: run_map_stage(
            ClusterFilterStage(params, clusters_dir, kind="exact"), task)),
    ]
