"""The one runner every stage goes through: plan, resume, split across workers and array tasks, write, account.

Every unit is processed independently into its own shard(s), so the output does not depend on --workers,
on how many array tasks share the work, or on the order in which units finish: unit ``i`` is done by task
``i % num_shards`` and lands in ``part-{i:05d}``. A unit is finished when its record is in ``_progress/``;
reruns skip finished units, and whoever finishes the last unit runs the stage's ``finish`` and writes the
manifest and stats. A stage of several passes runs them in order (:func:`run_passes`); a task stops at a
pass that other tasks have not finished yet.
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
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from typing import Any, Protocol

import curate
from curate.io.errors import UsageError
from curate.io.inputs import BadRows, Columns, Unit, check_apart, plan_units, read_unit, resolve_inputs
from curate.io.options import IOOptions
from curate.io.output import JsonlStdoutWriter, OutputDir, UnitRecord, input_descriptions, merge_counters
from curate.io.progress import Progress
from curate.io.storage import configure
from curate.params import fingerprint
from curate.stages.base import MapStage, Pass, UnitContext, UnitStage, WorkUnit, account


@dataclass
class _Job:
    """Everything a worker needs besides the unit (picklable, sent once per worker)."""

    stage: UnitStage
    io: IOOptions
    out: OutputDir | None
    rejected: OutputDir | None


def _process_unit(job: _Job, unit: WorkUnit, report: Callable[[int, int], None] | None = None) -> UnitRecord:
    assert job.out is not None
    context = UnitContext(job.io, job.out, job.rejected, report, BadRows(skip=job.io.on_error == "skip"))
    started = time.perf_counter()
    file = getattr(unit, "file", None)
    job.stage.source = file.path if file is not None else ""
    shards, stats = job.stage.run_unit(unit, context)
    record = UnitRecord(unit.index, shards, stats, context.bad.records)
    record.stats["seconds"] = round(time.perf_counter() - started, 3)
    record.stats["units"] = 1
    job.out.mark_finished(record)
    return record


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


def _run_parallel(job: _Job, units: Sequence[WorkUnit], progress: Progress) -> list[UnitRecord]:
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

    def run(self, job: _Job, units: Sequence[WorkUnit], progress: Progress) -> None: ...


class LocalExecutor:
    """This process (``--workers 1``) or a pool of ``--workers`` spawned processes on this machine."""

    def run(self, job: _Job, units: Sequence[WorkUnit], progress: Progress) -> None:
        if job.io.workers > 1 and len(units) > 1:
            _run_parallel(job, units, progress)
        elif units:
            job.stage.setup()
            for unit in units:
                _process_unit(job, unit, progress.update)
                progress.update(units=1)


def executor_for(io: IOOptions) -> Executor:
    """``--executor``: this machine's processes, or Ray (started once per process, shared by every stage)."""
    if io.executor == "ray":
        from curate.executors import ray_executor

        return ray_executor(io.ray_address, io.workers if io.ray_address is None else None)
    return LocalExecutor()


# -- entry points -----------------------------------------------------------------------------------------
def make_plan(stage: UnitStage, io: IOOptions, inputs: list, units: Sequence[WorkUnit]) -> dict:
    return {
        "curate_version": curate.__version__,
        "stage": stage.name,
        "parameters": {**fingerprint(stage.params), **stage.identity(), "io": fingerprint(io)},
        "inputs": inputs,
        "units": [u.describe() for u in units],
    }


def run_map_stage(stage: UnitStage, io: IOOptions, *, rejected_dir: str | None = None) -> dict:
    """Run ``stage`` over the units of ``io.inputs`` into ``io.output``; returns the run summary (--json)."""
    io.check()
    started = time.perf_counter()
    columns = Columns(io.text_column, io.id_column)
    bad = BadRows(skip=io.on_error == "skip")
    files = resolve_inputs(io.inputs, bad)
    check_apart(io.inputs, files, io.output)
    units = plan_units(files, io.max_rows_per_shard, columns, bad, io.columns, io.drop_columns, io.batch_size)
    if io.output == "-":
        if not isinstance(stage, MapStage):
            raise UsageError(f"{stage.name} writes a directory: give -o DIR, not -")
        return _run_to_stdout(stage, io, units, bad, started)
    return run_units(stage, io, units, input_descriptions(files), rejected_dir=rejected_dir, bad=bad,
                     started=started)


def run_units(stage: UnitStage, io: IOOptions, units: Sequence[WorkUnit], inputs: list, *,
              rejected_dir: str | None = None, bad: BadRows | None = None, started: float | None = None) -> dict:
    """Run this task's share of ``units`` into ``io.output``: the plan is recorded (or checked, on a rerun),
    finished units are skipped, and whoever finishes the last unit finishes the output."""
    started = time.perf_counter() if started is None else started
    if not io.output or io.output == "-":
        raise UsageError(f"{stage.name}: missing -o/--output (a directory)")
    plan = make_plan(stage, io, inputs, units)
    index, count = io.task()
    for notice in stage.notices():
        print(f"curate {stage.name}: {notice}", file=sys.stderr)
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
    executor_for(io).run(_Job(stage, io, out, rejected), todo, progress)
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
        if bad is not None:
            records[0].errors = bad.records + records[0].errors  # bad files found while planning
        extra = stage.finish(out, records)
        stats = out.finalize(plan, records, sys.argv, time.perf_counter() - started, extra)
        if rejected is not None:
            rejected_records = rejected.all_records(len(units))
            if rejected_records is not None:
                rejected.finalize(
                    {**plan, "stage": f"{stage.name}:rejected"}, rejected_records, sys.argv, 0.0
                )
        summary.update(stats)
        summary["errors_skipped"] = sum(len(r.errors) for r in records)
        for warning in _warnings(stage, summary):
            print(f"curate {stage.name}: warning: {warning}", file=sys.stderr)
    summary["wall_seconds"] = round(time.perf_counter() - started, 3)
    if summary.get("docs_in") and summary["wall_seconds"]:
        summary["docs_per_s"] = round(summary["docs_in"] / summary["wall_seconds"], 1)
    return summary


def _warnings(stage: UnitStage, summary: dict) -> list[str]:
    """The stage's own warnings about its finished output, and that a filter kept no document at all."""
    warnings = stage.warnings(summary)
    if summary.get("docs_in") and summary.get("docs_out") == 0:
        removed = ", ".join(f"{reason} {count:,}" for reason, count in sorted(summary.get("removed", {}).items()))
        hint = f"; check {stage.empty_hint}" if stage.empty_hint else ""
        warnings.append(f"no document kept of {summary['docs_in']:,} (removed: {removed or 'none'}){hint}")
    return warnings


def run_passes(stage_name: str, passes: list[Pass], io: IOOptions, only: str | None = None,
               on_pass: Callable[[Pass, IOOptions], Any] | None = None) -> dict:
    """Run a stage's passes in order as this array task; stop after a pass other tasks still work on.

    A single pass runs only in task 0. ``only`` runs one pass by name; ``on_pass(pass, io)`` returns a context
    manager entered around each pass (task markers of `curate run`). The summary is the last pass's, with
    the earlier passes' summaries under their names.
    """
    started = time.perf_counter()
    index, count = io.task()
    if only is not None:
        names = [p.name for p in passes if p.name]
        if only not in names:
            raise UsageError(f"--pass {only}: {stage_name} has " + (
                f"the passes {', '.join(names)}" if names else "no passes (omit --pass)"))
        passes = [p for p in passes if p.name == only]
    summary: dict = {}
    for piece in passes:
        if not piece.array and index != 0:
            return {**summary, "stage": stage_name, "complete": True,
                    "skipped": "a single-task pass runs in task 0 only"}
        task_io = replace(io, shard_index=index if piece.array else 0, num_shards=count if piece.array else 1)
        with on_pass(piece, task_io) if on_pass else contextlib.nullcontext():
            result = piece.run(task_io)
        if piece.name and piece is not passes[-1]:
            summary[piece.name] = result
        else:
            summary.update(result)
        if not result.get("complete", True):
            summary["complete"] = False
            break
    summary["stage"] = stage_name
    summary["wall_seconds"] = round(time.perf_counter() - started, 3)
    return summary


def _run_to_stdout(stage: MapStage, io: IOOptions, units: list[Unit], bad: BadRows, started: float) -> dict:
    columns = Columns(io.text_column, io.id_column)
    writer = JsonlStdoutWriter()
    stage.setup()
    stats: dict = {}
    for unit in units:
        for batch, _rows in read_unit(unit, columns, io.batch_size, bad):
            result = stage.process(batch, columns)
            account(stats, batch, result.kept, columns)
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
