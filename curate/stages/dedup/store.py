"""On-disk intermediate files of dedup (docs/dedup-format.md): per-unit Parquet parts written through the
shared OutputDir/ShardWriter (atomic shards, plan check, resume, manifest), plus a `_dedup.json` header.

Documents get compact integer ids: their position in plan order (units in order, rows in order), so the
ids, and everything derived from them, do not depend on --workers or on how many array tasks ran.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.hashing import hash_strings
from curate.io.errors import CurateError, InputError, UsageError
from curate.io.inputs import STDIN, BadRows, Columns, Unit, read_unit, resolve_inputs
from curate.io.options import IOOptions
from curate.io.output import PLAN, write_json_atomic
from curate.params import digest
from curate.runner import run_map_stage
from curate.stages.base import MapStage, StageOutput
from curate.stages.dedup.cluster import group_equal_keys

HEADER = "_dedup.json"
FORMAT_VERSION = 2  # 2: shingle sets as large_binary (uint32 bytes) instead of large_list<uint32>


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
    parts = sorted(Path(path).glob("part-*.parquet"), key=lambda p: (part_unit(p), p.name))  # 100000 after 99999
    if not parts:
        raise UsageError(f"{path}: no part-*.parquet files")
    return parts


def read_column(parts: list[Path], column: str) -> Iterator[np.ndarray]:
    """One column of every part, part by part (bounded memory), as numpy arrays."""
    for part in parts:
        yield pq.read_table(part, columns=[column]).column(0).to_numpy()


def part_unit(part: Path) -> int:
    """The input unit a part holds: part-NNNNN.parquet and its overflow parts part-NNNNN_MMMM.parquet."""
    return int(part.name[len("part-") :].split(".")[0].split("_")[0])


def part_rows(parts: list[Path]) -> np.ndarray:
    return np.array([pq.ParquetFile(p).metadata.num_rows for p in parts], dtype=np.int64)


@dataclass(frozen=True)
class Location:
    """Where a document of a store came from: its input file, row (or line) and id."""

    path: str
    row: int
    row_label: str = "row"
    id: object = None

    def describe(self) -> str:
        return f"{self.path}, {self.row_label} {self.row}"


def locate(store_dir: Path, parts: list[Path], doc: int) -> Location:
    """Input file, row and id of the document with compact id `doc`, found by rereading its unit.

    Stores keep only id hashes; rereading the one unit (as the pass read it, skipping the same bad rows)
    gives the row number and the id itself for an error message. Without the input (stdin, moved files),
    the row is counted from the unit's first row.
    """
    plan = json.loads((store_dir / PLAN).read_text())
    io = plan["parameters"]["io"]
    unit_of_part = np.array([part_unit(p) for p in parts])
    starts = np.concatenate([[0], np.cumsum(part_rows(parts))])
    unit_index = int(unit_of_part[np.searchsorted(starts, doc, side="right") - 1])
    offset = doc - int(starts[np.argmax(unit_of_part == unit_index)])
    described = plan["units"][unit_index]
    located = Location(described["path"], described["row_start"] + offset)
    if described["path"] == STDIN:
        return dataclasses.replace(located, row=offset + 1, row_label="line")
    try:
        unit = Unit(unit_index, resolve_inputs([described["path"]])[0], described["row_start"],
                    described["row_stop"])
        columns = Columns(io["text_column"], io["id_column"])
        for batch, rows in read_unit(unit, columns, 8192, BadRows(skip=io["on_error"] == "skip")):
            if offset < batch.num_rows:
                return Location(unit.file.path, int(rows[offset]), "line" if unit.file.format == "jsonl" else "row",
                                batch.column(columns.id)[offset].as_py())
            offset -= batch.num_rows
    except (CurateError, OSError):
        pass
    return located


def io_id_column(store_dir: Path) -> str:
    return json.loads((store_dir / PLAN).read_text())["parameters"]["io"]["id_column"]


def check_unique_ids(store_dir: Path, parts: list[Path], partition_rows: int) -> None:
    """Refuse documents that share an id (exit 3, naming both): the filter pass finds documents again by id,
    so a shared id would let a unique document go with a removed duplicate, or keep both copies."""
    total = int(part_rows(parts).sum())
    chunks = zip(read_column(parts, "id_hi"), read_column(parts, "id_lo"), strict=True)
    for left, right in group_equal_keys(chunks, total, partition_rows):
        if len(left):
            first = int(np.argmin(right))
            refuse_shared_id(store_dir, parts, int(left[first]), int(right[first]))


def refuse_shared_id(store_dir: Path, parts: list[Path], first: int, second: int) -> NoReturn:
    """Exit 3 naming the document `second` (compact id) and the earlier document `first` that has its id."""
    later, other = locate(store_dir, parts, second), locate(store_dir, parts, first)
    named = "this id" if later.id is None else f"id {later.id!r}"
    raise InputError(later.path, f"{named} is also the id of {other.describe()}; dedup finds "
                     "documents by --id-column, so ids must be unique (give each document its own id)",
                     row=later.row, column=io_id_column(store_dir), row_label=later.row_label)


class UnitPass(MapStage):
    """A pass that turns each input unit's documents into rows of a dedup store (signatures, keys)."""

    def __init__(self, kind: str, params, per_batch: Callable[[pa.RecordBatch, Columns, str], pa.RecordBatch]):
        super().__init__(params)
        self.name = f"dedup {kind}"  # type: ignore[misc]
        self.per_batch = per_batch

    def process(self, batch: pa.RecordBatch, columns: Columns) -> StageOutput:
        return StageOutput(self.per_batch(batch, columns, self.source))


def run_unit_pass(
    kind: str,
    io: IOOptions,
    params,
    header: dict,
    out_path: str | Path,
    per_batch: Callable[[pa.RecordBatch, Columns, str], pa.RecordBatch],
) -> dict:
    """Write the store's parts through the shared runner (one part per input unit: plan order = compact-id
    order; resume, workers and array tasks as for every stage); the run that completes it writes `_dedup.json`.
    """
    summary = run_map_stage(UnitPass(kind, params, per_batch), dataclasses.replace(io, output=str(out_path)))
    if summary["complete"]:
        plan = json.loads((Path(out_path) / PLAN).read_text())
        write_header(Path(out_path), {"kind": kind, **header, "documents": summary["docs_in"]}, plan)
    return summary
