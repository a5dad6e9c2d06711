"""On-disk intermediate files of dedup (docs/dedup-format.md): per-unit Parquet parts written through the
shared OutputDir/ShardWriter (atomic shards, plan check, resume, manifest), plus a `_dedup.json` header.

Documents get compact integer ids: their position in plan order (units in order, rows in order), so the
ids, and everything derived from them, do not depend on --workers or on how many array tasks ran.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numba as nb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import curate
from curate.io.errors import InputError, UsageError
from curate.io.inputs import BadRows, Columns, plan_units, read_unit, resolve_inputs
from curate.io.options import IOOptions
from curate.io.output import OutputDir, ShardWriter, UnitRecord, input_descriptions, write_json_atomic
from curate.io.progress import Progress
from curate.params import digest, fingerprint
from curate.stages.dedup.hashing import xxh64
from curate.stages.dedup.shingles import string_buffers

HEADER = "_dedup.json"
FORMAT_VERSION = 1


@nb.njit(parallel=True, cache=True)
def _hash_strings(data, offsets, seed, out):
    for i in nb.prange(len(offsets) - 1):
        out[i] = xxh64(data, offsets[i], offsets[i + 1], seed)


def hash_strings(values: pa.Array, seed: int) -> np.ndarray:
    """XXH64 of each string's UTF-8 bytes (nulls hash as the empty string)."""
    data, offsets = string_buffers(values)
    out = np.empty(len(offsets) - 1, dtype=np.uint64)
    _hash_strings(data, offsets, np.uint64(seed), out)
    return out


def hash128(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A 128-bit hash of each string as (high, low) uint64 halves: XXH64 with seeds 0 and 1."""
    return hash_strings(values, 0), hash_strings(values, 1)


def document_ids(batch: pa.RecordBatch, columns: Columns, where: str) -> tuple[np.ndarray, np.ndarray]:
    """128-bit hashes of the id column: how the filter pass finds each document again."""
    if columns.id not in batch.schema.names:
        raise InputError(where, f"missing id column '{columns.id}': dedup needs a unique id per document "
                                "(see --id-column)")
    ids = batch.column(columns.id)
    if ids.null_count:
        raise InputError(where, "null document id (dedup needs a unique id per document)", column=columns.id)
    if not pa.types.is_string(ids.type) and not pa.types.is_large_string(ids.type):
        ids = pc.cast(ids, pa.string())
    return hash128(ids)


def write_header(path: Path, header: dict, plan: dict) -> None:
    """Mark a store complete; the plan's digest ties the header to the run that wrote it."""
    write_json_atomic(path / HEADER, {"format_version": FORMAT_VERSION, "plan_digest": digest(plan), **header})


def drop_stale_header(path: Path, plan: dict) -> None:
    """Remove the header of a previous, different run (--overwrite) before anything is rewritten."""
    file = path / HEADER
    if file.is_file() and json.loads(file.read_text()).get("plan_digest") != digest(plan):
        file.unlink()


def read_header(path: str | Path, kind: str) -> dict:
    file = Path(path) / HEADER
    if not file.is_file():
        raise UsageError(f"{path}: not a curate dedup {kind} directory (no {HEADER}); is the run finished?")
    header = json.loads(file.read_text())
    if header.get("kind") != kind:
        raise UsageError(f"{path}: holds dedup {header.get('kind')}, expected {kind}")
    if header.get("format_version") != FORMAT_VERSION:
        raise UsageError(f"{path}: format version {header.get('format_version')}, this curate reads {FORMAT_VERSION}")
    return header


def part_files(path: str | Path) -> list[Path]:
    """The parts of a finished store, in compact-id order."""
    parts = sorted(Path(path).glob("part-*.parquet"))
    if not parts:
        raise UsageError(f"{path}: no part-*.parquet files")
    return parts


def read_column(parts: list[Path], column: str) -> Iterator[np.ndarray]:
    """One column of every part, part by part (bounded memory), as numpy arrays."""
    for part in parts:
        yield pq.read_table(part, columns=[column]).column(0).to_numpy()


def part_rows(parts: list[Path]) -> np.ndarray:
    return np.array([pq.ParquetFile(p).metadata.num_rows for p in parts], dtype=np.int64)


def run_unit_pass(
    kind: str,
    io: IOOptions,
    params,
    header: dict,
    out_path: str | Path,
    per_batch: Callable[[pa.RecordBatch, Columns, str], pa.RecordBatch],
) -> dict:
    """Write one Parquet part per input unit of this task (`per_batch` turns documents into rows), resumably.

    The last task to finish writes the manifest and the `_dedup.json` header that marks the store complete.
    """
    io.check()
    started = time.perf_counter()
    columns = Columns(io.text_column, io.id_column)
    bad = BadRows(skip=io.on_error == "skip")
    files = resolve_inputs(io.inputs, bad)
    units = plan_units(files, io.max_rows_per_shard, columns, bad)
    plan = {
        "curate_version": curate.__version__,
        "stage": f"dedup {kind}",
        "parameters": {**fingerprint(params), "io": fingerprint(io)},
        "inputs": input_descriptions(files),
        "units": [u.describe() for u in units],
    }
    out = OutputDir(out_path)
    out.prepare(plan, io.overwrite)
    drop_stale_header(out.path, plan)
    index, count = io.task()
    mine = [u for u in units if u.index % count == index]
    todo = [u for u in mine if out.finished(u.index) is None]
    progress = Progress(f"dedup {kind}", len(todo), None, enabled=not io.quiet)
    for unit in todo:
        out.discard_unit(unit.index)
        writer = ShardWriter(out, unit.index, 1 << 62)
        docs = 0
        try:
            for batch, _rows in read_unit(unit, columns, io.batch_size, bad):
                writer.write(per_batch(batch, columns, unit.file.path))
                docs += batch.num_rows
                progress.update(batch.num_rows, batch.column(columns.text).nbytes)
            out.mark_finished(UnitRecord(unit.index, writer.commit(), {"docs_in": docs}, []))
        except BaseException:
            writer.abort()
            raise
        progress.update(units=1)
    progress.close()
    records = out.all_records(len(units))
    summary = {"stage": f"dedup {kind}", "output": str(out.path), "units": len(units),
               "units_processed": len(todo), "complete": records is not None}
    if records is not None:
        summary.update(out.finalize(plan, records, sys.argv, time.perf_counter() - started))
        write_header(out.path, {"kind": kind, **header, "documents": sum(r.stats["docs_in"] for r in records)}, plan)
    summary["wall_seconds"] = round(time.perf_counter() - started, 3)
    return summary
