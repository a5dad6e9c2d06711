"""Recipes: a pipeline of stages in YAML, validated against each stage's own params dataclass.

    inputs: [data/crawl]            # files, directories, globs (relative to the recipe file)
    work_dir: out/run               # each stage writes work_dir/NN-stage (overridable: --work-dir)
    io: {workers: 2}                # IOOptions for every stage (--text-column, --max-rows-per-shard, ...)
    stages:
      - langid: {keep: [en], min_score: 0.65}
      - quality: {mode: filter, io: {batch_size: 2000}}   # per-stage io overrides
      - mix-propose: {domain_column: source, output: "${work_dir}/mixtures.csv"}   # a tool step

Two kinds of step. A *stage* (langid, quality, dedup-*, mix-apply, pack, …) reads the current data and
writes ``work_dir/NN-stage``, which becomes the current data. A *tool* (``langid-calibrate`` and the
``mix-*`` search commands) reads the current data (when it takes inputs) and writes the file(s) named in
its section, for later steps to use; the current data stays as it was. ``${work_dir}`` and ``${recipe_dir}``
in string values name the work directory and the recipe's folder.

Every stage is cut into *passes* (``dedup-minhash``: signatures, cluster, filter; every other stage: one),
the pieces a cluster schedules: an array pass splits its units over tasks (unit i → task i % N), a single
pass runs as one task. Every pass resumes on its own (finished units are skipped), so a rerun continues at
the first unfinished shard of the first unfinished stage.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

import curate
from curate.io.errors import UsageError
from curate.io.options import IOOptions
from curate.io.output import write_json_atomic
from curate.io.storage import is_remote, require_local
from curate.params import StrictLoader, digest, fingerprint, from_mapping, key_of, leaf_fields, load_mapping
from curate.registry import STAGES, TOOLS, StageSpec, ToolSpec
from curate.stages.base import Pass

_TOP_KEYS = {"inputs", "work_dir", "io", "stages", "name", "description"}
PIPELINE_FILE = "_pipeline.json"
STEPS_DIR = "_steps"
TASKS_DIR = "_tasks"  # WORK/_tasks/NN-stage[.pass]/task-IIIII-of-NNNNN.json: see curate.pipeline


# -- task markers ------------------------------------------------------------------------------------------
def marker_path(work_dir: Path, piece: str, index: int, count: int) -> Path:
    return Path(work_dir) / TASKS_DIR / piece / f"task-{index:05d}-of-{count:05d}.json"


@contextlib.contextmanager
def task_marker(work_dir: Path, piece: str, index: int, count: int) -> Iterator[None]:
    """Record that task ``index`` of ``count`` of ``piece`` started, and how it ended."""
    path = marker_path(work_dir, piece, index, count)
    record: dict[str, Any] = {
        "task": index, "tasks": count, "state": "running", "host": socket.gethostname(), "pid": os.getpid(),
        "slurm_job": os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID"),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_json_atomic(path, record)
    try:
        yield
    except BaseException as exc:
        write_json_atomic(path, {**record, "state": "failed", "error": f"{type(exc).__name__}: {exc}"})
        raise
    write_json_atomic(path, {**record, "state": "ok"})




class _LineLoader(StrictLoader):
    """Safe loader (no aliases) that remembers the line of every mapping, so errors can name it."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict:
    mapping = _Located(loader.construct_mapping(node, deep=True))
    mapping.line = node.start_mark.line + 1
    mapping.key_lines = {
        k.value: k.start_mark.line + 1 for k, _ in node.value if isinstance(k, yaml.ScalarNode)
    }
    return mapping


class _Located(dict):
    line = 0
    key_lines: dict[str, int]


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


@dataclass
class PlannedStage:
    index: int
    stage: StageSpec
    params: Any
    io: IOOptions
    extra: dict[str, Any] = field(default_factory=dict)  # the stage's options (--rejected DIR)

    @property
    def name(self) -> str:
        return self.stage.name

    @property
    def key(self) -> str:
        return f"{self.index + 1:02d}-{self.name}"

    def passes(self) -> list[Pass]:
        return self.stage.build_passes(self.params, self.io, **self.extra)


@dataclass
class PlannedTool:
    index: int
    tool: ToolSpec
    params: list[Any]
    arguments: dict[str, Any]
    inputs: list[str]
    work_dir: Path

    @property
    def name(self) -> str:
        return self.tool.name

    @property
    def key(self) -> str:
        return f"{self.index + 1:02d}-{self.name}"

    @property
    def marker(self) -> Path:
        """Written when the tool finished: its fingerprint (a rerun with the same one skips it) and summary."""
        return self.work_dir / STEPS_DIR / f"{self.key}.json"

    def fingerprint(self) -> str:
        return digest({"params": [fingerprint(p) for p in self.params], "arguments": self.arguments,
                       "inputs": self.inputs if self.tool.takes_inputs else []})

    def done(self) -> bool:
        if not self.marker.exists():
            return False
        output = self.arguments.get("output")
        return json.loads(self.marker.read_text()).get("fingerprint") == self.fingerprint() and (
            output is None or Path(output).exists()
        )

    def run(self) -> dict:
        from curate.io.output import write_json_atomic

        if self.done():
            return {**json.loads(self.marker.read_text())["summary"], "skipped": "done before"}
        arguments = dict(self.arguments)
        if self.tool.io:
            io = from_mapping(IOOptions, arguments.pop("io"), f"{self.key}: io")
            io.inputs, io.output, io.quiet = list(self.inputs), arguments.pop("output"), True
            arguments = {"io": io}
        elif self.tool.takes_inputs:
            arguments["inputs"] = self.inputs
        summary, _lines = self.tool.call(self.params, arguments)
        write_json_atomic(self.marker, {"fingerprint": self.fingerprint(), "summary": summary})
        return summary


Step = PlannedStage | PlannedTool


@dataclass
class Recipe:
    path: Path
    work_dir: Path
    inputs: list[str]
    stages: list[Step]

    def find(self, selector: str) -> Step:
        """A step by 1-based index, name (when unique) or key (``02-quality``)."""
        for step in self.stages:
            if selector in (str(step.index + 1), step.key):
                return step
        named = [s for s in self.stages if s.name == selector]
        if len(named) == 1:
            return named[0]
        known = ", ".join(s.key for s in self.stages)
        reason = "is ambiguous" if named else "is not a step of this recipe"
        raise UsageError(f"--stage {selector} {reason} (steps: {known}; give the number or NN-name)")


def _where(path: Path, mapping: Any, key: str | None = None) -> str:
    line = getattr(mapping, "key_lines", {}).get(key) if key else getattr(mapping, "line", None)
    return f"{path}, line {line}" if line else str(path)


def load_recipe(
    path: str | Path,
    work_dir: str | None = None,
    io_overrides: dict | None = None,
    inputs: list[str] | None = None,
) -> Recipe:
    """Parse and validate a recipe; errors name the key and its line."""
    path = Path(path)
    data = load_mapping(path, "recipe", loader=_LineLoader)
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise UsageError(
            f"{_where(path, data, unknown[0])}: unknown key '{unknown[0]}' (expected {sorted(_TOP_KEYS)})"
        )
    if inputs:
        data["inputs"] = inputs
    for key in ("inputs", "stages"):
        if not data.get(key):
            raise UsageError(f"{path}: missing '{key}'")
    base = path.parent
    inputs = inputs or [
        i if i == "-" or is_remote(i) or Path(i).is_absolute() else str(base / i) for i in _as_list(data["inputs"])
    ]
    # the work dir holds the pipeline's state (task markers, status) as well as each stage's output
    root = Path(require_local(work_dir, "--work-dir")) if work_dir else base / require_local(
        str(data.get("work_dir", "work")), f"{path}: work_dir")
    shared_io = dict(data.get("io") or {})
    shared_io.update(io_overrides or {})
    stages = {name: spec for name, spec in STAGES.items() if spec.recipe}
    steps: list[Step] = []
    current = inputs
    for index, item in enumerate(data["stages"]):
        if not isinstance(item, dict) or len(item) != 1:
            raise UsageError(
                f"{_where(path, item)}: each stage is a one-key mapping, e.g. '- langid: {{keep: [en]}}'"
            )
        ((name, section),) = item.items()
        where = _where(path, item, name)
        section = {k: _substitute(v, root, base) for k, v in dict(section or {}).items()}
        if name in TOOLS:
            steps.append(_plan_tool(index, TOOLS[name], section, current, root, shared_io, where))
            continue
        entry = stages.get(name)
        if entry is None:
            known = ", ".join(sorted([*stages, *TOOLS]))
            raise UsageError(f"{where}: unknown stage '{name}' (known: {known})")
        stage_io = {**shared_io, **(section.pop("io", None) or {})}
        extra = {a.name: section.pop(a.name) for a in entry.options if a.name in section}
        params = from_mapping(entry.params_class(), section, f"{where}: {name}")
        io = from_mapping(
            IOOptions, {k: v for k, v in stage_io.items() if k not in ("inputs", "output")}, f"{where}: io"
        )
        io.output = str(root / f"{index + 1:02d}-{name}")
        io.inputs = list(current)
        steps.append(PlannedStage(index, entry, params, io, extra))
        current = [io.output]
    return Recipe(path, root, inputs, steps)


def _plan_tool(index: int, tool: ToolSpec, section: dict, inputs: list[str], root: Path, shared_io: dict,
               where: str) -> PlannedTool:
    """Split a tool's section over its params dataclasses and its arguments; unknown keys are errors."""
    section = {k.replace("-", "_"): v for k, v in section.items()}
    classes = tool.params_classes()
    params = []
    for cls in classes:
        keys = {k for f in leaf_fields(cls) for k in (f.name, key_of(f))}
        params.append(from_mapping(cls, {k: section.pop(k) for k in list(section) if k in keys},
                                   f"{where}: {tool.name}"))
    names = [a.name for a in tool.arguments if a.name != "inputs"] + (["output"] if tool.io else [])
    unknown = sorted(set(section) - set(names) - ({"io"} if tool.io else set()))
    if unknown:
        expected = sorted({key_of(f) for c in classes for f in leaf_fields(c)} | set(names))
        raise UsageError(f"{where}: {tool.name}: unknown key(s) {', '.join(unknown)}; "
                         f"expected some of {', '.join(expected)}")
    arguments: dict[str, Any] = {}
    for argument in tool.arguments:
        if argument.name == "inputs":
            continue
        value = section.get(argument.name, shared_io.get(argument.name, argument.default))
        if value is inspect.Parameter.empty:
            raise UsageError(f"{where}: {tool.name}: '{argument.name}' is required")
        arguments[argument.name] = value
    if tool.io:
        if not section.get("output"):
            raise UsageError(f"{where}: {tool.name}: 'output' is required")
        arguments["output"] = section["output"]
        io = {**shared_io, **(section.get("io") or {})}
        arguments["io"] = {k: v for k, v in io.items() if k in tool.io}
    return PlannedTool(index, tool, params, arguments, list(inputs), root)


def _substitute(value: Any, work_dir: Path, recipe_dir: Path) -> Any:
    """``${work_dir}`` / ``${recipe_dir}`` in a step's string values (a tokenizer made there, shipped weights)."""
    if isinstance(value, str):
        return value.replace("${work_dir}", str(work_dir)).replace("${recipe_dir}", str(recipe_dir))
    if isinstance(value, list):
        return [_substitute(v, work_dir, recipe_dir) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, work_dir, recipe_dir) for k, v in value.items()}
    return value


def _as_list(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def describe_stage(planned: Step) -> dict:
    """What --dry-run prints for a step: inputs, output, units and how many are finished."""
    if isinstance(planned, PlannedTool):
        return {
            "stage": planned.name, "kind": "tool",
            "inputs": planned.inputs if planned.tool.takes_inputs else [],
            "output": planned.arguments.get("output") or "-",
            "params": {**{k: v for p in planned.params for k, v in dataclasses.asdict(p).items()},
                       **planned.arguments},
            "units": None, "finished": 0, "status": "done" if planned.done() else "to do",
        }
    from curate.io.inputs import Columns, plan_units, resolve_inputs
    from curate.io.output import OutputDir

    row: dict[str, Any] = {
        "stage": planned.name,
        "kind": "stage",
        "inputs": planned.io.inputs,
        "output": planned.io.output,
        "passes": [p.name for p in planned.passes() if p.name],
        "params": dataclasses.asdict(planned.params),
    }
    if holds_no_documents(planned):
        done = (Path(planned.io.output) / "_manifest.json").exists()
        row.update(units=0, finished=0, status=("done" if done else "to do") + " (its input holds no documents)")
        return row
    try:
        units = plan_units(
            resolve_inputs(planned.io.inputs),
            planned.io.max_rows_per_shard,
            Columns(planned.io.text_column, planned.io.id_column),
        )
    except Exception as exc:  # not there yet: an earlier stage makes it, or the recipe's inputs are missing
        row.update(units=None, finished=0, status=f"inputs not ready ({exc})")
        return row
    out = OutputDir(planned.io.output)
    finished = len(out.finished_units(u.index for u in units)) if out.path.exists() else 0
    complete = (out.path / "_manifest.json").exists()
    row.update(units=len(units), finished=finished, status="done" if complete else "to do")
    return row


def run_step(step: Step, task: tuple[int, int] = (0, 1), only_pass: str | None = None) -> dict:
    """Run a step's passes in order as array task ``task`` = (index, count); stop at an unfinished pass.

    Single passes run only in task 0 (as task 0 of 1). Every pass leaves a task marker (``curate status``).
    """
    from curate.runner import run_passes

    started = time.perf_counter()
    if holds_no_documents(step):
        return _pass_through_empty(step, task, started)
    if isinstance(step, PlannedTool):
        if task[0] != 0:
            return {"stage": step.name, "complete": True, "skipped": "a tool runs in task 0 only"}
        with task_marker(step.work_dir, step.key, 0, 1):
            return {**step.run(), "stage": step.name, "wall_seconds": round(time.perf_counter() - started, 3)}
    io = dataclasses.replace(step.io, shard_index=task[0], num_shards=task[1])
    work_dir = Path(step.io.output).parent

    def marker(piece: Pass, task_io: IOOptions) -> Any:
        index, count = task_io.task()
        return task_marker(work_dir, step.key + (f".{piece.name}" if piece.name else ""), index, count)

    return run_passes(step.name, step.passes(), io, only_pass, marker)


def holds_no_documents(step: Step) -> bool:
    """True when the step reads only finished outputs of earlier steps of its recipe and they hold no rows
    (a filter kept nothing). Such a step passes the empty data through rather than failing on empty input;
    a recipe's own inputs are never judged so (empty inputs stay an error)."""
    from curate.io.output import MANIFEST

    if isinstance(step, PlannedTool):
        inputs, work_dir = (step.inputs if step.tool.takes_inputs else []), step.work_dir
    else:
        inputs, work_dir = step.io.inputs, Path(step.io.output).parent
    if not inputs or any(Path(path).parent != work_dir for path in inputs):
        return False
    manifests = [Path(path) / MANIFEST for path in inputs]
    return all(m.exists() and json.loads(m.read_text()).get("rows") == 0 for m in manifests)


def _pass_through_empty(step: Step, task: tuple[int, int], started: float) -> dict:
    """Warn, and leave a finished, empty output (plan, manifest and stats with no shards) that the next steps,
    `curate status` and `curate report` read like any other; a tool is skipped and writes nothing."""
    import sys

    from curate.io.output import MANIFEST, STATS, OutputDir, json_text

    summary: dict[str, Any] = {"stage": step.name, "complete": True, "empty_input": True}
    if task[0] == 0:
        action = "skipping this tool" if isinstance(step, PlannedTool) else "writing an empty output"
        print(f"curate run: warning: {step.key}: its input holds no documents; {action}", file=sys.stderr)
    if isinstance(step, PlannedTool):
        return {**summary, "skipped": "its input holds no documents"}
    summary.update(docs_in=0, docs_out=0, chars_in=0, chars_out=0, output=step.io.output)
    if task[0] != 0:  # one task writes it
        return summary
    plan = {"curate_version": curate.__version__, "stage": step.name, "parameters": fingerprint(step.params),
            "inputs": step.io.inputs, "units": [], "empty_input": True}
    out = OutputDir(step.io.output)
    out.prepare(plan, step.io.overwrite)
    stats = {"stage": step.name, "docs_in": 0, "docs_out": 0, "chars_in": 0, "chars_out": 0,
             "wall_seconds": round(time.perf_counter() - started, 3)}
    out.files.write_text(STATS, json_text(stats))
    out.files.write_text(MANIFEST, json_text({
        "curate_version": curate.__version__, "stage": step.name, "command": sys.argv,
        "parameters": plan["parameters"], "inputs": plan["inputs"], "shards": [], "rows": 0,
        "empty_input": True, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }))
    return {**summary, "wall_seconds": stats["wall_seconds"]}


def run_recipe(recipe: Recipe, task: tuple[int, int] = (0, 1)) -> list[dict]:
    """Run every step in order; stop after a step that this array task could not finish alone."""
    summaries = []
    for step in recipe.stages:
        summary = run_step(step, task)
        summaries.append(summary)
        if not summary.get("complete", True):
            break
    return summaries
