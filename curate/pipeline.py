"""Pipelines at scale: task markers, `curate status` (what is complete, missing, failed) and Slurm scripts.

Every task of every pass leaves ``WORK/_tasks/NN-stage[.pass]/task-IIIII-of-NNNNN.json``: written with
``state: running`` (host, pid, Slurm job) before it starts, rewritten ``ok`` or ``failed`` (with the error)
when it ends. A task killed outright (SIGKILL, out of memory, node failure, time limit) leaves ``running``
behind. A unit with no ``_progress`` record is then

* **failed** when its task's marker says ``failed``, or ``running`` from a process that no longer exists
  on this host (or from another host when ``--assume-dead`` / Slurm says the job is gone);
* **running** when its task's marker says ``running`` and that cannot be ruled out;
* **missing** when no task for it has started yet.

Unit ``i`` of an array pass belongs to task ``i % N`` (the runner's stable assignment), so resubmitting
the tasks ``{i % N}`` of the failed and missing units redoes exactly what is not finished.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

from curate.io.errors import UsageError
from curate.io.output import MANIFEST, PLAN, PROGRESS_DIR, pid_alive, write_json_atomic
from curate.recipes import (
    PIPELINE_FILE,
    TASKS_DIR,
    PlannedStage,
    PlannedTool,
    Recipe,
    Step,
    holds_no_documents,
    load_recipe,
)


def _marker_state(marker: dict, assume_dead: bool) -> str:
    if marker["state"] != "running":
        return marker["state"]
    if assume_dead or (marker.get("host") == socket.gethostname() and not pid_alive(int(marker["pid"]))):
        return "failed"
    return "running"


# -- the pipeline record in the work dir --------------------------------------------------------------------
def record_pipeline(recipe: Recipe, inputs: list[str] | None, slurm: dict | None = None) -> None:
    """``WORK/_pipeline.json``: which recipe (and --input) made this work dir, for `curate status`."""
    path = recipe.work_dir / PIPELINE_FILE
    existing = json.loads(path.read_text()) if path.exists() else {}
    record = {**existing, "recipe": _absolute(recipe.path), "inputs": inputs}
    if slurm is not None:
        record["slurm"] = slurm
    if record != existing:
        write_json_atomic(path, record)


def load_pipeline(work_dir: str | Path) -> tuple[Recipe, dict]:
    path = Path(work_dir) / PIPELINE_FILE
    if not path.exists():
        raise UsageError(f"{work_dir}: no {PIPELINE_FILE} (not a work dir of `curate run`, or nothing ran yet)")
    record = json.loads(path.read_text())
    return load_recipe(record["recipe"], str(work_dir), {"quiet": True}, inputs=record.get("inputs")), record


def _absolute(path: Path) -> str:
    """An absolute path that keeps symbolic links (``recipes/demo.yaml`` links into the package): a recipe's
    relative inputs and ``${recipe_dir}`` are read from the folder it was named in."""
    return os.path.abspath(path)


# -- status -------------------------------------------------------------------------------------------------
@dataclass
class PieceStatus:
    """One pass of a stage (or a tool): units and where each stands."""

    key: str  # NN-stage or NN-stage.pass: names the markers and the sbatch script
    step: int
    pass_name: str
    array: bool
    output: str
    units: int | None = None
    complete: list[int] = field(default_factory=list)
    running: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)
    tasks: int | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def state(self) -> str:
        if self.units is None:
            return "waiting"
        if len(self.complete) == self.units:
            return "complete"
        return "failed" if self.failed else "running" if self.running else "incomplete"

    def rerun_tasks(self) -> list[int]:
        """Array task indices that own the failed and missing units."""
        count = self.tasks or 1
        return sorted({u % count for u in self.failed + self.missing})

    def to_json(self) -> dict:
        return {"key": self.key, "state": self.state, "units": self.units, "complete": len(self.complete),
                "running": self.running, "failed": self.failed, "missing": self.missing, "tasks": self.tasks,
                "rerun_tasks": self.rerun_tasks(), "errors": self.errors, "output": self.output}


def _pieces(step: Step) -> list[tuple[str, str, bool, Path]]:
    if isinstance(step, PlannedTool):
        return [(step.key, "", False, Path(step.arguments.get("output") or step.marker))]
    return [(step.key + (f".{p.name}" if p.name else ""), p.name, p.array, p.output) for p in step.passes()]


def pipeline_status(recipe: Recipe, tasks: int | None = None, assume_dead: bool = False) -> list[PieceStatus]:
    """Where every pass of every step stands (see the module docstring for failed/running/missing)."""
    rows = []
    outputs = {s.io.output for s in recipe.stages if isinstance(s, PlannedStage)}
    for step in recipe.stages:
        for position, (key, pass_name, array, output) in enumerate(_pieces(step)):
            row = PieceStatus(key, step.index + 1, pass_name, array, str(output))
            markers = _markers(recipe.work_dir, key)
            row.tasks = max((m["tasks"] for m in markers), default=None) or (tasks if array else 1)
            by_task = {m["task"]: m for m in markers if m["tasks"] == row.tasks}
            done = _finished_units(step, pass_name, output, row, outputs, first=position == 0)
            if row.units is not None:
                for unit in range(row.units):
                    marker = by_task.get(unit % (row.tasks or 1))
                    state = "complete" if unit in done else (
                        _marker_state(marker, assume_dead) if marker else "missing")
                    bucket = {"complete": row.complete, "running": row.running, "failed": row.failed}
                    bucket.get(state, row.missing).append(unit)  # a task that ended ok left it: missing
            row.errors = sorted({m["error"] for m in by_task.values() if m.get("error")})
            rows.append(row)
    return rows


def _markers(work_dir: Path, key: str) -> list[dict]:
    directory = Path(work_dir) / TASKS_DIR / key
    return [json.loads(p.read_text()) for p in sorted(directory.glob("task-*.json"))] if directory.exists() else []


def _finished_units(step: Step, pass_name: str, output: Path, row: PieceStatus, outputs: set[str],
                    first: bool) -> set[int]:
    """Set ``row.units`` (None while the pass has no plan yet) and return the finished unit indices. The
    first pass of a stage has the input units; a later pass's units are known once it has a plan."""
    if isinstance(step, PlannedTool):
        row.units = 1
        return {0} if step.done() or holds_no_documents(step) else set()
    if _passed_through_empty(step):  # every pass is complete: there was nothing to do
        row.units = 0
        return set()
    manifest, plan_path = output / MANIFEST, output / PLAN
    if pass_name == "cluster":  # its units are the tasks, each leaving an edges file
        if not plan_path.exists():
            return set()
        count = json.loads(plan_path.read_text())["units"][0]["tasks"]
        row.units, row.tasks = count, count
        if manifest.exists():
            return set(range(count))
        return {i for i in range(count) if any(output.glob(f"edges-*-{i:05d}-of-{count:05d}.npz"))}
    if not row.array:
        row.units = 1 if plan_path.exists() or manifest.exists() or _planned_units(step, outputs) is not None else None
        return {0} if manifest.exists() else set()
    if not plan_path.exists():
        row.units = _planned_units(step, outputs) if first else None
        return set()
    row.units = len(json.loads(plan_path.read_text())["units"])
    progress = output / PROGRESS_DIR
    return {int(p.stem.split("-")[1]) for p in progress.glob("unit-*.json")} if progress.exists() else set()


def _passed_through_empty(step: PlannedStage) -> bool:
    manifest = Path(step.io.output) / MANIFEST
    return manifest.exists() and bool(json.loads(manifest.read_text()).get("empty_input"))


def _planned_units(step: Step, outputs: set[str]) -> int | None:
    """Units of a stage not started yet; None while it waits for an earlier stage of the recipe."""
    from curate.io.inputs import Columns, plan_units, resolve_inputs

    if not isinstance(step, PlannedStage):
        return None
    if any(path in outputs and not (Path(path) / MANIFEST).exists() for path in step.io.inputs):
        return None
    try:
        files = resolve_inputs(step.io.inputs)
        return len(plan_units(files, step.io.max_rows_per_shard, Columns(step.io.text_column, step.io.id_column)))
    except Exception:  # inputs absent or unreadable: the run itself will say why
        return None


def resubmit_commands(recipe: Recipe, rows: list[PieceStatus], slurm: dict | None,
                      inputs: list[str] | None) -> list[str]:
    """Shell lines that redo only what is not finished: the first unfinished pass's missing tasks, then the
    passes after it (whole), chained with afterok; or the local `curate run` when no Slurm scripts exist."""
    pending = [r for r in rows if r.state != "complete"]
    if not pending:
        return []
    if slurm is None:
        return [shlex.join(curate_command(recipe, inputs))]
    directory = Path(slurm["dir"])
    lines, dependency = [], ""
    for position, row in enumerate(pending):
        script = directory / f"{row.key}.sbatch"
        array = ""
        if row.array:
            indices = row.rerun_tasks() if position == 0 and row.units is not None else range(slurm["tasks"])
            array = f" --array={array_ranges(list(indices))}"
        lines.append(f"jid=$(sbatch --parsable{array}{dependency} {shlex.quote(str(script))})")
        dependency = " --dependency=afterok:${jid%%;*}"
    return lines


def array_ranges(indices: list[int]) -> str:
    """[0, 1, 2, 5, 7, 8] → 0-2,5,7-8 (Slurm's --array syntax)."""
    parts, start = [], None
    for i, value in enumerate(indices):
        if start is None:
            start = value
        if i + 1 == len(indices) or indices[i + 1] != value + 1:
            parts.append(str(start) if start == value else f"{start}-{value}")
            start = None
    return ",".join(parts)


def curate_command(recipe: Recipe, inputs: list[str] | None, *extra: str) -> list[str]:
    """The `curate run` invocation of this recipe and work dir (absolute paths: it runs anywhere)."""
    command = [sys.executable, "-m", "curate", "run", _absolute(recipe.path),
               "--work-dir", str(recipe.work_dir.resolve())]
    for path in inputs or []:
        command += ["--input", str(Path(path).resolve())]
    return [*command, *extra]


# -- Slurm --------------------------------------------------------------------------------------------------
def emit_slurm(recipe: Recipe, directory: str | Path, tasks: int, inputs: list[str] | None,
               sbatch_options: list[str]) -> list[Path]:
    """One sbatch script per pass (array passes: ``--array=0-(tasks-1)``) and ``submit.sh`` chaining them
    with ``--dependency=afterok``. Each array task runs ``curate run --stage K [--pass P] --shard-index
    $SLURM_ARRAY_TASK_ID --num-shards N``: N is fixed in the script, so resubmitting a subset of indices
    (``sbatch --array=3,7``) still gives each task its own units."""
    if tasks < 1:
        raise UsageError("--tasks must be ≥ 1")
    for option in sbatch_options:
        if "\n" in option or "\r" in option:
            raise UsageError(f"--sbatch-option {option!r}: one option per flag, without line breaks")
    directory = Path(directory).resolve()
    (directory / "logs").mkdir(parents=True, exist_ok=True)
    recipe_name = _one_line(recipe.path.name)
    scripts = []
    for step in recipe.stages:
        for key, pass_name, array, _output in _pieces(step):
            extra = ["--stage", str(step.index + 1), "--quiet"]
            if pass_name:
                extra += ["--pass", pass_name]
            log = _sbatch_value(f"{directory}/logs/{key}-%A_%a.log")
            header = [f"#SBATCH --job-name=curate-{key}", f"#SBATCH --output={log}"]
            if array:
                header.append(f"#SBATCH --array=0-{tasks - 1}")
                extra += ["--num-shards", str(tasks)]
            header += [f"#SBATCH {option}" for option in sbatch_options]
            command = shlex.join(curate_command(recipe, inputs, *extra))
            if array:
                command += ' --shard-index "$SLURM_ARRAY_TASK_ID"'
            what = f"array pass: unit i is done by task i % {tasks}" if array else "one task"
            body = [
                "#!/bin/bash", *header,
                f"# curate recipe {recipe_name}, step {step.index + 1} ({step.name}"
                + (f", pass {pass_name}" if pass_name else "") + f"): {what}.",
                "# Rerunning a task resumes it; `curate status WORK_DIR` lists what is missing.",
                "set -euo pipefail", f"cd {shlex.quote(os.getcwd())}", f"exec {command}", "",
            ]
            path = directory / f"{key}.sbatch"
            write_text(path, "\n".join(body))
            scripts.append(path)
    # every path and name is shell-quoted: a directory called `w$(cmd)` stays a name, never a command
    follow = shlex.join(["curate", "status", str(recipe.work_dir.resolve())])
    submit = ["#!/bin/bash", f"# Submits the {len(scripts)} jobs of {recipe_name}, each after the previous "
              "one succeeded.", "set -euo pipefail", 'dir="$(cd "$(dirname "$0")" && pwd)"', 'dependency=""']
    for path in scripts:
        submit += [f'jid=$(sbatch --parsable $dependency "$dir"/{shlex.quote(path.name)})', 'jid="${jid%%;*}"',
                   'dependency="--dependency=afterok:$jid"', f'echo {shlex.quote(path.stem + ": job")} "$jid"']
    submit += [f"echo {shlex.quote('follow with: ' + follow)}", ""]
    write_text(directory / "submit.sh", "\n".join(submit))
    record_pipeline(recipe, inputs, {"dir": str(directory), "tasks": tasks})
    return [*scripts, directory / "submit.sh"]


def _sbatch_value(text: str) -> str:
    """A value for an ``#SBATCH`` line: sbatch splits on white space and strips quotes (it expands nothing)."""
    if not any(c.isspace() or c in "'\"" for c in text):
        return text
    if '"' in text or "\n" in text:
        raise UsageError(f"--emit-slurm {text}: a folder name with both spaces and quotes cannot be an #SBATCH value")
    return f'"{text}"'


def _one_line(text: str) -> str:
    """A name fit for a script comment: line breaks would end the comment."""
    return " ".join(text.splitlines())


def write_text(path: Path, text: str) -> None:
    from curate.io.output import write_text_atomic

    write_text_atomic(path, text)
    path.chmod(0o755)
