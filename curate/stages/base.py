"""What a stage is, for the one runner every stage goes through.

A stage is one or more *passes* (:class:`Pass`). A pass is either an **array** pass, whose units (slices of
the input files, or partitions of an intermediate store) are processed independently, so any number of
worker processes, array tasks or Ray tasks may share them, or a **single** pass that runs as one task.
Global steps are short reductions: :meth:`UnitStage.finish` runs once, in whichever task finishes a pass's
last unit, and what it writes (bucket tables, quotas) is read by the next pass.

Most stages are a :class:`MapStage`: a function over Arrow record batches, testable without files or the CLI.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import pyarrow as pa
import pyarrow.compute as pc

from curate.io.inputs import BadRows, Columns, Unit, read_unit
from curate.io.output import OutputDir, ShardInfo, ShardWriter, UnitRecord, merge_counters
from curate.io.prefetch import prefetch
from curate.io.warc import DEFAULT_MAX_PAYLOAD

if TYPE_CHECKING:
    from curate.io.options import IOOptions


@dataclass
class StageOutput:
    kept: pa.RecordBatch  # rows that stay, with the stage's added columns (fixed types)
    rejected: pa.RecordBatch | None = None  # removed rows, for --rejected DIR
    counters: dict = field(default_factory=dict)  # nested counts, summed across batches, units and tasks


class WorkUnit(Protocol):
    """A piece of a pass that one task does alone: an input slice (:class:`Unit`) or a partition."""

    index: int

    @property
    def rows(self) -> int | None: ...

    def describe(self) -> dict: ...


@dataclass(frozen=True)
class Partition:
    """Partition ``index`` of ``count`` of an intermediate store (hash-partitioned keys, say)."""

    index: int
    count: int

    @property
    def rows(self) -> int | None:
        return None

    def describe(self) -> dict:
        return {"index": self.index, "partition": self.index, "of": self.count}


@dataclass
class UnitContext:
    """What one unit's work gets from the runner: options, where to write, and how to say how far it got."""

    io: IOOptions
    out: OutputDir
    rejected: OutputDir | None = None
    report: Callable[[int, int], None] | None = None  # (documents, bytes) read so far, for progress
    bad: BadRows = field(default_factory=BadRows)

    @property
    def columns(self) -> Columns:
        return Columns(self.io.text_column, self.io.id_column)

    def batches(self, unit: Unit) -> Iterator[pa.RecordBatch]:
        """The unit's record batches, read a thread ahead (pyarrow decodes without the GIL)."""
        for batch, _rows in prefetch(read_unit(unit, self.columns, self.io.batch_size, self.bad)):
            if self.report is not None:
                self.report(batch.num_rows, batch.column(self.columns.text).nbytes)
            yield batch


class UnitStage(ABC):
    """A pass whose units are processed independently into their own shards; the runner plans, splits
    the units over workers and tasks, resumes, and writes the manifest and stats."""

    name: ClassVar[str]
    source: str = ""  # the input file of the unit being processed, set by the runner (for error messages)
    max_payload: int = DEFAULT_MAX_PAYLOAD  # WARC inputs: payload bytes of a record that reading keeps
    input_text: str | None = None  # the column read as the input's text, when not --text-column's
    output_text: str | None = None  # the column holding the output's text, when not the input's text column

    def __init__(self, params: Any):
        self.params = params

    def setup(self) -> None:  # noqa: B027 - optional hook
        """Load models and other heavy state; runs once in each worker process, before the first unit."""

    def identity(self) -> dict:
        """What beyond ``params`` decides the output (e.g. a model file's checksum); recorded in the plan."""
        return {}

    @abstractmethod
    def run_unit(self, unit: Any, context: UnitContext) -> tuple[list[ShardInfo], dict]:
        """Write the unit's shards (committed: renamed into place) and return them with the unit's counters."""

    def notices(self) -> list[str]:
        """What the run should tell the user before it starts (e.g. how a flag was understood)."""
        return []

    empty_hint: ClassVar[str] = ""  # the flags to check when a filter kept no document

    def warnings(self, summary: dict) -> list[str]:
        """Warnings about a finished output; by default, that a filter kept no document at all."""
        if not summary.get("docs_in") or summary.get("docs_out") != 0:
            return []
        removed = ", ".join(f"{reason} {count:,}" for reason, count in sorted(summary.get("removed", {}).items()))
        hint = f"; check {self.empty_hint}" if self.empty_hint else ""
        return [f"no document kept of {summary['docs_in']:,} (removed: {removed or 'none'}){hint}"]

    def finish(self, out: OutputDir, records: list[UnitRecord]) -> dict:
        """Runs once all units are finished, before the manifest: a short reduction over the unit records
        (e.g. a table of buckets). It may run again after a crash, so it must be idempotent. Returns
        counters added to ``_stats.json``."""
        return {}


_WRITES_IN_FLIGHT = 2


class MapStage(UnitStage):
    """A stage that maps each batch independently (``process``): documents in, documents out."""

    @abstractmethod
    def process(self, batch: pa.RecordBatch, columns: Columns) -> StageOutput: ...

    def run_unit(self, unit: Unit, context: UnitContext) -> tuple[list[ShardInfo], dict]:
        io, columns = context.io, context.columns
        writer = ShardWriter(context.out, unit.index, io.max_rows_per_shard)
        rejected = ShardWriter(context.rejected, unit.index, io.max_rows_per_shard) if context.rejected else None
        stats: dict = dict.fromkeys(("docs_in", "chars_in", "docs_out", "chars_out"), 0)  # a unit may read nothing
        try:
            # Writing (a thread behind) overlaps with the stage's work: pyarrow compresses without the GIL.
            # One writer thread keeps the batches in order.
            with ThreadPoolExecutor(1, thread_name_prefix="curate-write") as write_thread, \
                    contextlib.closing(context.batches(unit)) as batches:  # an error stops the reader now
                writes: list[Future] = []
                for batch in batches:
                    result = self.process(batch, columns)
                    account(stats, batch, result.kept, columns, self.output_text)
                    writes.append(write_thread.submit(writer.write, result.kept))
                    if rejected is not None and result.rejected is not None:
                        writes.append(write_thread.submit(rejected.write, result.rejected))
                    merge_counters(stats, result.counters)
                    while len(writes) > _WRITES_IN_FLIGHT:
                        writes.pop(0).result()
                for write in writes:
                    write.result()
            shards = writer.commit()
            if rejected is not None:
                assert context.rejected is not None
                context.rejected.mark_finished(UnitRecord(unit.index, rejected.commit()))
        except BaseException:
            writer.abort()
            if rejected is not None:
                rejected.abort()
            raise
        return shards, stats


def text_stats(batch: pa.RecordBatch, column: str) -> tuple[int, int]:
    """(documents, characters) of a batch."""
    if batch.num_rows == 0:
        return 0, 0
    chars = pc.sum(pc.utf8_length(batch.column(column))).as_py() or 0
    return batch.num_rows, chars


def account(stats: dict, batch: pa.RecordBatch, kept: pa.RecordBatch, columns: Columns,
            output_text: str | None = None) -> None:
    """Add a batch's documents and characters in and out to ``stats`` (out: of ``output_text`` if given)."""
    docs_in, chars_in = text_stats(batch, columns.text)
    out = output_text or columns.text
    # stages whose rows are not documents (signatures, keys) count rows out and no characters
    docs_out, chars_out = text_stats(kept, out) if out in kept.schema.names else (kept.num_rows, 0)
    merge_counters(
        stats, {"docs_in": docs_in, "chars_in": chars_in, "docs_out": docs_out, "chars_out": chars_out}
    )


@dataclass
class Pass:
    """A schedulable piece of a stage, with its own output directory: an ``array`` pass splits its units
    over tasks (unit i → task i % N); a single pass runs in task 0."""

    name: str  # "" when the stage is one pass
    output: Path
    array: bool
    run: Callable[[IOOptions], dict]

