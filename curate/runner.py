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
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import curate
from curate.executors import Job, executor_for
from curate.io.errors import UsageError
from curate.io.inputs import BadRows, Columns, Unit, check_apart, plan_units, read_unit, resolve_inputs
from curate.io.options import IOOptions
from curate.io.output import JsonlStdoutWriter, OutputDir, input_descriptions, merge_counters
from curate.io.progress import Progress
from curate.params import fingerprint
from curate.stages.base import MapStage, Pass, UnitStage, WorkUnit, account


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
    if stage.input_text is not None:  # a stage whose input text is another column (extract reads the HTML)
        io = replace(io, text_column=stage.input_text)
    started = time.perf_counter()
    columns = Columns(io.text_column, io.id_column)
    bad = BadRows(skip=io.on_error == "skip")
    files = resolve_inputs(io.inputs, bad)
    check_apart(io.inputs, files, io.output)
    units = plan_units(files, io.max_rows_per_shard, columns, bad, io.columns, io.drop_columns, io.batch_size,
                       stage.max_payload)
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
    executor_for(io).run(Job(stage, io, out, rejected), todo, progress)
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
        for warning in stage.warnings(summary):
            print(f"curate {stage.name}: warning: {warning}", file=sys.stderr)
    summary["wall_seconds"] = round(time.perf_counter() - started, 3)
    if summary.get("docs_in") and summary["wall_seconds"]:
        summary["docs_per_s"] = round(summary["docs_in"] / summary["wall_seconds"], 1)
    return summary


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
            account(stats, batch, result.kept, columns, stage.output_text)
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
