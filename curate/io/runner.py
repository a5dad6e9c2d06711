"""Runs a MapStage over its inputs: plan, resume, split across workers and array tasks, write, account.

Every unit is processed independently into its own shard(s), so the output does not depend on --workers,
on how many array tasks share the work, or on the order in which units finish: unit ``i`` is done by task
``i % num_shards`` and lands in ``part-{i:05d}``. A unit is finished when its record is in ``_progress/``;
reruns skip finished units, and whoever finishes the last unit writes the manifest and stats.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Protocol, TypeVar

import pyarrow as pa
import pyarrow.compute as pc

import curate
from curate.io.errors import UsageError
from curate.io.inputs import BadRows, Columns, Unit, check_apart, plan_units, read_unit, resolve_inputs
from curate.io.options import IOOptions
from curate.io.output import (
    JsonlStdoutWriter,
    OutputDir,
    ShardWriter,
    UnitRecord,
    input_descriptions,
    merge_counters,
)
from curate.io.progress import Progress
from curate.io.storage import configure
from curate.params import fingerprint
from curate.stages.base import MapStage

T = TypeVar("T")


def text_stats(batch: pa.RecordBatch, column: str) -> tuple[int, int]:
    """(documents, characters) of a batch."""
    if batch.num_rows == 0:
        return 0, 0
    chars = pc.sum(pc.utf8_length(batch.column(column))).as_py() or 0
    return batch.num_rows, chars


@dataclass
class _Job:
    """Everything a worker needs besides the unit (picklable, sent once per worker)."""

    stage: MapStage
    io: IOOptions
    out: OutputDir | None
    rejected: OutputDir | None


def _process_unit(job: _Job, unit: Unit, report=None) -> UnitRecord:
    columns = Columns(job.io.text_column, job.io.id_column)
    bad = BadRows(skip=job.io.on_error == "skip")
    assert job.out is not None
    writer = ShardWriter(job.out, unit.index, job.io.max_rows_per_shard)
    rejected = ShardWriter(job.rejected, unit.index, job.io.max_rows_per_shard) if job.rejected else None
    stats: dict = dict.fromkeys(("docs_in", "chars_in", "docs_out", "chars_out"), 0)  # a unit may read nothing
    started = time.perf_counter()
    job.stage.source = unit.file.path
    try:
        # Reading (a thread ahead) and writing (a thread behind) overlap with the stage's work: pyarrow
        # releases the GIL while it decodes and compresses. One writer thread keeps the batches in order.
        with ThreadPoolExecutor(1, thread_name_prefix="curate-write") as write_thread:
            writes: list[Future] = []
            for batch, _rows in prefetch(read_unit(unit, columns, job.io.batch_size, bad)):
                result = job.stage.process(batch, columns)
                _account(stats, batch, result.kept, columns)
                writes.append(write_thread.submit(writer.write, result.kept))
                if rejected is not None and result.rejected is not None:
                    writes.append(write_thread.submit(rejected.write, result.rejected))
                merge_counters(stats, result.counters)
                if report is not None:
                    report(batch.num_rows, batch.column(columns.text).nbytes)
                while len(writes) > _WRITES_IN_FLIGHT:
                    writes.pop(0).result()
            for write in writes:
                write.result()
        record = UnitRecord(unit.index, writer.commit(), stats, bad.records)
        if rejected is not None:
            job.rejected.mark_finished(UnitRecord(unit.index, rejected.commit()))  # type: ignore[union-attr]
    except BaseException:
        writer.abort()
        if rejected is not None:
            rejected.abort()
        raise
    record.stats["seconds"] = round(time.perf_counter() - started, 3)
    record.stats["units"] = 1
    job.out.mark_finished(record)
    return record


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


_END = object()
_PREFETCH_DEPTH = 2
_WRITES_IN_FLIGHT = 2


def prefetch(items: Iterator[T], depth: int = _PREFETCH_DEPTH) -> Iterator[T]:
    """Produce ``items`` in a background thread, up to ``depth`` ahead of the consumer (errors re-raised)."""
    buffer: queue.Queue = queue.Queue(maxsize=depth)

    def fill() -> None:
        try:
            for item in items:
                buffer.put(item)
            buffer.put(_END)
        except BaseException as exc:  # handed to the consumer, raised there
            buffer.put(_Failure(exc))

    threading.Thread(target=fill, daemon=True, name="curate-read").start()
    while (item := buffer.get()) is not _END:
        if isinstance(item, _Failure):
            raise item.error
        yield item


def _account(stats: dict, batch: pa.RecordBatch, kept: pa.RecordBatch, columns: Columns) -> None:
    docs_in, chars_in = text_stats(batch, columns.text)
    # stages whose rows are not documents (signatures, keys) count rows out and no characters
    docs_out, chars_out = text_stats(kept, columns.text) if columns.text in kept.schema.names else (kept.num_rows, 0)
    merge_counters(
        stats, {"docs_in": docs_in, "chars_in": chars_in, "docs_out": docs_out, "chars_out": chars_out}
    )


# -- worker processes -------------------------------------------------------------------------------------
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_WORKER_JOB: _Job | None = None
_WORKER_QUEUE = None


def _die_with_parent(parent: int) -> None:
    """End this worker when the run that started it dies (even by kill -9), instead of finishing its units.

    Linux delivers SIGKILL on the parent's death (prctl PR_SET_PDEATHSIG: strictly, the death of the thread
    that started the worker, which is the one that submits units and outlives the pool); elsewhere a thread
    watches the parent.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # it died before the request took effect
            os._exit(1)
        return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="curate-parent-watch").start()


def _init_worker(job: _Job, progress_queue, parent: int) -> None:
    global _WORKER_JOB, _WORKER_QUEUE
    _die_with_parent(parent)
    _WORKER_JOB, _WORKER_QUEUE = job, progress_queue
    configure(job.io.storage_options, job.io.retries)  # a spawned process starts with default settings
    job.stage.setup()


def _worker_report(docs: int, nbytes: int) -> None:
    if _WORKER_QUEUE is not None:
        _WORKER_QUEUE.put((docs, nbytes))


def _worker_unit(unit: Unit) -> UnitRecord:
    assert _WORKER_JOB is not None
    return _process_unit(_WORKER_JOB, unit, _worker_report)


def _run_parallel(job: _Job, units: list[Unit], progress: Progress) -> list[UnitRecord]:
    context = multiprocessing.get_context("spawn")
    progress_queue = context.Queue()
    records = []
    with ProcessPoolExecutor(
        job.io.workers, context, initializer=_init_worker, initargs=(job, progress_queue, os.getpid())
    ) as pool:
        pending: set[Future] = {pool.submit(_worker_unit, unit) for unit in units}
        while pending:
            done, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
            _drain(progress_queue, progress)
            for future in done:
                records.append(future.result())
                progress.update(units=1)
    _drain(progress_queue, progress)
    return records


def _drain(progress_queue, progress: Progress) -> None:
    while True:
        try:
            docs, nbytes = progress_queue.get_nowait()
        except queue.Empty:
            return
        progress.update(docs, nbytes)


# -- executors: who runs a stage's units -------------------------------------------------------------------
class Executor(Protocol):
    """Runs ``units`` of ``job`` (each through ``_process_unit``); output never depends on the executor."""

    def run(self, job: _Job, units: list[Unit], progress: Progress) -> None: ...


class LocalExecutor:
    """This process (``--workers 1``) or a pool of ``--workers`` spawned processes on this machine."""

    def run(self, job: _Job, units: list[Unit], progress: Progress) -> None:
        if job.io.workers > 1 and len(units) > 1:
            _run_parallel(job, units, progress)
        elif units:
            job.stage.setup()
            for unit in units:
                _process_unit(job, unit, progress.update)
                progress.update(units=1)


_EXECUTORS: list[Executor] = [LocalExecutor()]


@contextlib.contextmanager
def use_executor(executor: Executor) -> Iterator[Executor]:
    """Run the map stages started inside the block on ``executor`` (e.g. Ray for ``curate run --executor ray``)."""
    _EXECUTORS.append(executor)
    try:
        yield executor
    finally:
        _EXECUTORS.remove(executor)


# -- entry point ------------------------------------------------------------------------------------------
def make_plan(stage: MapStage, io: IOOptions, files, units: list[Unit]) -> dict:
    return {
        "curate_version": curate.__version__,
        "stage": stage.name,
        "parameters": {**fingerprint(stage.params), **stage.identity(), "io": fingerprint(io)},
        "inputs": input_descriptions(files),
        "units": [u.describe() for u in units],
    }


def run_map_stage(stage: MapStage, io: IOOptions, *, rejected_dir: str | None = None) -> dict:
    """Run ``stage`` over ``io.inputs`` into ``io.output``; returns the run summary (the --json output)."""
    io.check()
    started = time.perf_counter()
    columns = Columns(io.text_column, io.id_column)
    bad = BadRows(skip=io.on_error == "skip")
    files = resolve_inputs(io.inputs, bad)
    check_apart(io.inputs, files, io.output)
    units = plan_units(files, io.max_rows_per_shard, columns, bad, io.columns, io.drop_columns, io.batch_size)
    if io.output == "-":
        return _run_to_stdout(stage, io, units, bad, started)
    if not io.output:
        raise UsageError("missing -o/--output (a directory, or - for JSON lines on stdout)")

    plan = make_plan(stage, io, files, units)
    index, count = io.task()
    out = OutputDir(io.output)
    out.prepare(plan, io.overwrite, (index, count))
    rejected = None
    if rejected_dir:
        rejected = OutputDir(rejected_dir)
        rejected.prepare({**plan, "stage": f"{stage.name}:rejected"}, io.overwrite, (index, count))
    mine = [u for u in units if u.index % count == index]
    done = out.finished_units(u.index for u in mine)
    if rejected is not None:
        done_rejected = rejected.finished_units(done)
        done = {i: r for i, r in done.items() if i in done_rejected}
    todo = [u for u in mine if u.index not in done]
    for target in (out, rejected):  # leftovers of interrupted attempts, for all of this task's units at once
        if target is not None:
            target.discard_units(u.index for u in todo)
    total_rows = sum(u.rows or 0 for u in todo) if all(u.rows is not None for u in todo) else None
    progress = Progress(stage.name, len(todo), total_rows, enabled=not io.quiet)
    _EXECUTORS[-1].run(_Job(stage, io, out, rejected), todo, progress)
    progress.close()

    records = out.all_records(len(units))
    summary: dict = {
        "stage": stage.name,
        "output": out.location,
        "units": len(units),
        "units_this_task": len(mine),
        "units_processed": len(todo),
        "units_already_done": len(mine) - len(todo),
        "complete": records is not None,
    }
    if records is not None:
        records[0].errors = bad.records + records[0].errors  # bad files found while planning
        stats = out.finalize(plan, records, sys.argv, time.perf_counter() - started)
        if rejected is not None:
            rejected_records = rejected.all_records(len(units))
            if rejected_records is not None:
                rejected.finalize(
                    {**plan, "stage": f"{stage.name}:rejected"}, rejected_records, sys.argv, 0.0
                )
        summary.update(stats)
        summary["errors_skipped"] = sum(len(r.errors) for r in records)
    summary["wall_seconds"] = round(time.perf_counter() - started, 3)
    if summary.get("docs_in") and summary["wall_seconds"]:
        summary["docs_per_s"] = round(summary["docs_in"] / summary["wall_seconds"], 1)
    return summary


def _run_to_stdout(stage: MapStage, io: IOOptions, units: list[Unit], bad: BadRows, started: float) -> dict:
    columns = Columns(io.text_column, io.id_column)
    writer = JsonlStdoutWriter()
    stage.setup()
    stats: dict = {}
    for unit in units:
        for batch, _rows in read_unit(unit, columns, io.batch_size, bad):
            result = stage.process(batch, columns)
            _account(stats, batch, result.kept, columns)
            merge_counters(stats, result.counters)
            writer.write(result.kept)
    if bad.records:
        for record in bad.records:
            print(f"skipped: {record}", file=sys.stderr)
    return {
        "stage": stage.name,
        "output": "-",
        **stats,
        "errors_skipped": len(bad.records),
        "wall_seconds": round(time.perf_counter() - started, 3),
    }
