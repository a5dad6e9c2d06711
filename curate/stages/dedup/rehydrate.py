"""FineWeb2 rehydration: repeat each kept document by its duplicate-cluster size, through a lookup table
(size → copies, the largest key ≤ size wins; default {1:1, 2:2, 3:3, 5:5, 100:8, 1000:1}, so size 4 → 3)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.io.errors import InputError, UsageError
from curate.io.inputs import Columns
from curate.stages.base import MapStage, StageOutput
from curate.stages.dedup.params import RehydrateParams


def parse_table(text: str) -> tuple[np.ndarray, np.ndarray]:
    """'1:1,2:2,100:8' → (sorted sizes, copies); braces and spaces are allowed."""
    sizes, copies = [], []
    for item in text.strip().strip("{}").split(","):
        if not item.strip():
            continue
        size, sep, count = item.partition(":")
        try:
            if not sep:
                raise ValueError
            sizes.append(int(size))
            copies.append(int(count))
        except ValueError:
            raise UsageError(f"--table: expected SIZE:COPIES pairs like 1:1,2:2,100:8, got {item.strip()!r}") from None
    if not sizes or min(sizes) < 1 or min(copies) < 0:
        raise UsageError(f"--table {text!r}: needs at least one entry, sizes ≥ 1 and copies ≥ 0")
    order = np.argsort(sizes)
    return np.asarray(sizes)[order], np.asarray(copies)[order]


def repeats(sizes: np.ndarray, table: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Copies for each cluster size: the entry with the largest key ≤ size (sizes below every key: the first)."""
    keys, copies = table
    return copies[np.maximum(np.searchsorted(keys, sizes, side="right") - 1, 0)].astype(np.int32)


class RehydrateStage(MapStage):
    name = "dedup rehydrate"

    def __init__(self, params: RehydrateParams):
        super().__init__(params)
        self.table = parse_table(params.table)

    def process(self, batch: pa.RecordBatch, columns: Columns) -> StageOutput:
        name = self.params.size_column
        if name not in batch.schema.names:
            raise InputError("input", f"no column '{name}': run `curate dedup minhash` first (or see --size-column)")
        sizes = pc.fill_null(pc.cast(batch.column(name), pa.int64()), 1).to_numpy(zero_copy_only=False)
        repeat = repeats(sizes, self.table)
        if "repeat" in batch.schema.names:
            batch = batch.drop_columns(["repeat"])
        out = batch.append_column("repeat", pa.array(repeat))
        counters = {"copies_added": int(repeat.sum()) - batch.num_rows}
        if self.params.materialize:
            out = out.take(pa.array(np.repeat(np.arange(batch.num_rows), repeat)))
        return StageOutput(out, None, counters)
