"""Recipes: a pipeline of stages in YAML, validated against each stage's own params dataclass.

    inputs: [data/crawl]            # files, directories, globs (relative to the recipe file)
    work_dir: out/run               # each stage writes work_dir/NN-stage (overridable: --work-dir)
    io: {workers: 2}                # IOOptions for every stage (--text-column, --max-rows-per-shard, ...)
    stages:
      - langid: {keep: [en], min_score: 0.65}
      - quality: {mode: filter, io: {batch_size: 2000}}   # per-stage io overrides

Stage ``k`` reads the output of stage ``k-1``. ``${work_dir}`` in a stage's values is replaced by the work
directory. Every stage resumes on its own (finished units are skipped),
so a rerun continues at the first unfinished shard of the first unfinished stage.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from curate.cli.common import RECIPE_STAGES, RecipeStage
from curate.io.errors import UsageError
from curate.io.options import IOOptions
from curate.params import from_mapping

_TOP_KEYS = {"inputs", "work_dir", "io", "stages", "name", "description"}


class _LineLoader(yaml.SafeLoader):
    """Safe loader that remembers the line of every mapping, so errors can name it."""


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
    stage: RecipeStage
    params: Any
    io: IOOptions
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.stage.name


@dataclass
class Recipe:
    path: Path
    work_dir: Path
    inputs: list[str]
    stages: list[PlannedStage]


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
    try:
        data = yaml.load(path.read_text(), Loader=_LineLoader)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read recipe ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: a recipe is a mapping with inputs, work_dir, stages")
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
        i if i == "-" or Path(i).is_absolute() else str(base / i) for i in _as_list(data["inputs"])
    ]
    root = Path(work_dir) if work_dir else base / str(data.get("work_dir", "work"))
    shared_io = dict(data.get("io") or {})
    shared_io.update(io_overrides or {})
    stages = []
    for index, item in enumerate(data["stages"]):
        if not isinstance(item, dict) or len(item) != 1:
            raise UsageError(
                f"{_where(path, item)}: each stage is a one-key mapping, e.g. '- langid: {{keep: [en]}}'"
            )
        ((name, section),) = item.items()
        entry = RECIPE_STAGES.get(name)
        if entry is None:
            raise UsageError(
                f"{_where(path, item, name)}: unknown stage '{name}' (known: {', '.join(sorted(RECIPE_STAGES))})"
            )
        section = {k: _substitute(v, root) for k, v in dict(section or {}).items()}
        stage_io = {**shared_io, **(section.pop("io", None) or {})}
        extra = {k: section.pop(k) for k in entry.extra if k in section}
        where = _where(path, item, name)
        params = from_mapping(entry.params_cls, section, f"{where}: {name}")
        io = from_mapping(
            IOOptions, {k: v for k, v in stage_io.items() if k not in ("inputs", "output")}, f"{where}: io"
        )
        io.output = str(root / f"{index + 1:02d}-{name}")
        io.inputs = inputs if not stages else [stages[-1].io.output]
        stages.append(PlannedStage(index, entry, params, io, extra))
    return Recipe(path, root, inputs, stages)


def _substitute(value: Any, work_dir: Path) -> Any:
    """``${work_dir}`` in a stage's string values names the run's work directory (e.g. a tokenizer made there)."""
    if isinstance(value, str):
        return value.replace("${work_dir}", str(work_dir))
    if isinstance(value, list):
        return [_substitute(v, work_dir) for v in value]
    return value


def _as_list(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def describe_stage(planned: PlannedStage) -> dict:
    """What --dry-run prints for a stage: inputs, output, units and how many are finished."""
    from curate.io.inputs import Columns, plan_units, resolve_inputs
    from curate.io.output import OutputDir

    row: dict[str, Any] = {
        "stage": planned.name,
        "inputs": planned.io.inputs,
        "output": planned.io.output,
        "params": dataclasses.asdict(planned.params),
    }
    try:
        units = plan_units(
            resolve_inputs(planned.io.inputs),
            planned.io.max_rows_per_shard,
            Columns(planned.io.text_column, planned.io.id_column),
        )
    except Exception:
        row.update(units=None, finished=0, status="waits for the previous stage")
        return row
    out = OutputDir(planned.io.output)
    finished = sum(1 for u in units if out.path.exists() and out.finished(u.index) is not None)
    complete = (out.path / "_manifest.json").exists()
    row.update(units=len(units), finished=finished, status="done" if complete else "to do")
    return row


def run_recipe(recipe: Recipe) -> list[dict]:
    """Run every stage in order; stop after a stage that this array task could not finish alone."""
    summaries = []
    for planned in recipe.stages:
        summary = planned.stage.run(planned.params, planned.io, **planned.extra)
        summaries.append(summary)
        if not summary.get("complete", True):
            break
    return summaries
