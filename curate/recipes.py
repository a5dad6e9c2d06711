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

import dataclasses
import inspect
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

import curate
from curate.cli.common import RECIPE_STAGES, RecipeStage
from curate.io.errors import UsageError
from curate.io.options import IOOptions
from curate.io.storage import is_remote, require_local, work_dir_beside
from curate.params import StrictLoader, digest, fingerprint, from_mapping, load_mapping

_TOP_KEYS = {"inputs", "work_dir", "io", "stages", "name", "description"}
# stages that are one run of the shared map runner: any number of array tasks may share them
ARRAY_STAGES = {"langid", "quality", "quality-classify", "dedup-rehydrate", "pii"}
MINHASH_PASSES = ("signatures", "cluster", "filter")
PIPELINE_FILE = "_pipeline.json"
STEPS_DIR = "_steps"
REQUIRED = inspect.Parameter.empty


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
class Pass:
    """A schedulable piece of a stage: its own output directory; ``array`` passes split units over tasks."""

    name: str  # "" when the stage is one pass
    output: Path
    array: bool
    run: Callable[[IOOptions], dict]


@dataclass
class PlannedStage:
    index: int
    stage: RecipeStage
    params: Any
    io: IOOptions
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.stage.name

    @property
    def key(self) -> str:
        return f"{self.index + 1:02d}-{self.name}"

    def passes(self) -> list[Pass]:
        if self.name == "dedup-minhash":
            return _minhash_passes(self)
        run = self.stage.run

        def whole(io: IOOptions) -> dict:
            return run(self.params, io, **self.extra)

        return [Pass("", Path(self.io.output), self.name in ARRAY_STAGES, whole)]


@dataclass(frozen=True)
class RecipeTool:
    """A command used as a recipe step: reads the current data (``takes_inputs``), writes named files."""

    name: str
    params_classes: tuple[type, ...]
    arguments: dict[str, Any]  # argument → default (REQUIRED when it has none)
    takes_inputs: bool
    call: Callable[[list[Any], dict[str, Any]], dict]


@dataclass
class PlannedTool:
    index: int
    tool: RecipeTool
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
        if self.tool.takes_inputs:
            arguments["inputs"] = self.inputs
        summary = self.tool.call(self.params, arguments)
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
    from curate.cli.main import load_all

    load_all()  # every stage registers its recipe entry when its command module loads

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
    tools = recipe_tools()
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
        if name in tools:
            steps.append(_plan_tool(index, tools[name], section, current, root, shared_io, where))
            continue
        entry = RECIPE_STAGES.get(name)
        if entry is None:
            known = ", ".join(sorted([*RECIPE_STAGES, *tools]))
            raise UsageError(f"{where}: unknown stage '{name}' (known: {known})")
        stage_io = {**shared_io, **(section.pop("io", None) or {})}
        extra = {k: section.pop(k) for k in entry.extra if k in section}
        params = from_mapping(entry.params_cls, section, f"{where}: {name}")
        io = from_mapping(
            IOOptions, {k: v for k, v in stage_io.items() if k not in ("inputs", "output")}, f"{where}: io"
        )
        io.output = str(root / f"{index + 1:02d}-{name}")
        io.inputs = list(current)
        steps.append(PlannedStage(index, entry, params, io, extra))
        current = [io.output]
    return Recipe(path, root, inputs, steps)


def _plan_tool(index: int, tool: RecipeTool, section: dict, inputs: list[str], root: Path, shared_io: dict,
               where: str) -> PlannedTool:
    """Split a tool's section over its params dataclasses and its other arguments; unknown keys are errors."""
    section = {k.replace("-", "_"): v for k, v in section.items()}
    params = []
    for cls in tool.params_classes:
        names = {f.name for f in dataclasses.fields(cls)}
        params.append(from_mapping(cls, {k: section.pop(k) for k in list(section) if k in names},
                                   f"{where}: {tool.name}"))
    unknown = sorted(set(section) - set(tool.arguments))
    if unknown:
        expected = sorted({f.name for c in tool.params_classes for f in dataclasses.fields(c)} | set(tool.arguments))
        raise UsageError(f"{where}: {tool.name}: unknown key(s) {', '.join(unknown)}; "
                         f"expected some of {', '.join(expected)}")
    arguments = {}
    for name, default in tool.arguments.items():
        value = section.get(name, shared_io.get(name, default))
        if value is REQUIRED:
            raise UsageError(f"{where}: {tool.name}: '{name}' is required")
        arguments[name] = value
    return PlannedTool(index, tool, params, arguments, list(inputs), root)


def recipe_tools() -> dict[str, RecipeTool]:
    """Tool steps: the `curate mix` search commands (``mix-propose`` …) and ``langid-calibrate``."""
    from curate.cli.langid import CalibrateParams, calibrate_command
    from curate.cli.mix import COMMANDS

    tools = {
        "langid-calibrate": RecipeTool(
            "langid-calibrate", (CalibrateParams,), {"output": REQUIRED}, True,
            lambda params, args: calibrate_command(
                params[0], IOOptions(inputs=args["inputs"], output=args["output"], quiet=True)),
        )
    }
    for name, (function, classes, parameters) in COMMANDS.items():
        defaults = {p.name: _typer_default(p) for p in parameters if p.name != "inputs"}
        takes_inputs = any(p.name == "inputs" for p in parameters)
        tools[f"mix-{name}"] = RecipeTool(
            f"mix-{name}", tuple(classes), defaults, takes_inputs,
            lambda params, args, function=function: function(*params, **args)[0],
        )
    return tools


def _typer_default(parameter: inspect.Parameter) -> Any:
    default = getattr(parameter.default, "default", parameter.default)
    return REQUIRED if default is ... else default


def _minhash_passes(planned: PlannedStage) -> list[Pass]:
    """signatures → cluster → filter, as `curate dedup minhash` runs them, each an array pass."""
    from curate.cli.dedup import _sub
    from curate.runner import run_map_stage
    from curate.stages.dedup.minhash_dedup import ClusterFilterStage, cluster_signatures, compute_signatures
    from curate.stages.dedup.params import ClusterParams, FilterParams, SignatureParams

    params = planned.params
    work = Path(params.work_dir or work_dir_beside(planned.io.output, "minhash-work"))
    signatures, clusters = work / "signatures", work / "clusters"
    return [
        Pass("signatures", signatures, True,
             lambda io: compute_signatures(_sub(params, SignatureParams), io, signatures)),
        Pass("cluster", clusters, True,
             lambda io: cluster_signatures(_sub(params, ClusterParams), signatures, clusters, io)),
        Pass("filter", Path(planned.io.output), True,
             lambda io: run_map_stage(ClusterFilterStage(_sub(params, FilterParams), clusters), io,
                                      rejected_dir=planned.extra.get("rejected"))),
    ]


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
    from curate.pipeline import task_marker

    started = time.perf_counter()
    if holds_no_documents(step):
        return _pass_through_empty(step, task, started)
    if isinstance(step, PlannedTool):
        if task[0] != 0:
            return {"stage": step.name, "complete": True, "skipped": "a tool runs in task 0 only"}
        with task_marker(step.work_dir, step.key, 0, 1):
            return {**step.run(), "stage": step.name, "wall_seconds": round(time.perf_counter() - started, 3)}
    passes = step.passes()
    if only_pass is not None:
        names = [p.name for p in passes if p.name]
        if only_pass not in names:
            raise UsageError(f"--pass {only_pass}: {step.key} has " + (
                f"the passes {', '.join(names)}" if names else "no passes (omit --pass)"))
        passes = [p for p in passes if p.name == only_pass]
    summary: dict = {}
    for piece in passes:
        index, count = task if piece.array else (0, 1)
        if not piece.array and task[0] != 0:
            return {"stage": step.name, "complete": True, "skipped": "a single-task pass runs in task 0 only"}
        io = dataclasses.replace(step.io, shard_index=index, num_shards=count)
        work_dir = Path(step.io.output).parent
        with task_marker(work_dir, step.key + (f".{piece.name}" if piece.name else ""), index, count):
            result = piece.run(io)
        if piece.name and piece.name != passes[-1].name:
            summary[piece.name] = result
        else:
            summary.update(result)
        if not result.get("complete", True):
            summary["complete"] = False
            break
    summary["stage"] = step.name
    summary["wall_seconds"] = round(time.perf_counter() - started, 3)
    return summary


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
