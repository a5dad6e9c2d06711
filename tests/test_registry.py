"""The command table is the one place a stage is added: a toy map stage given one registry line runs through
the CLI (flags and help generated), a recipe, the emitted Slurm scripts and Ray, with the same output.
Also: the layering rules the table makes possible (no import cycles, nothing below the CLI imports it)."""

from __future__ import annotations

import ast
import json
import shlex
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from test_pipeline import checksums, ray_session  # noqa: F401 - the shared Ray instance
from typer.testing import CliRunner

from curate import registry
from curate.cli.main import app
from curate.io.inputs import Columns
from curate.params import nested, option
from curate.stages.base import MapStage, StageOutput

CURATE = Path(__file__).resolve().parent.parent / "curate"


@dataclass
class ShoutParams:
    suffix: str = option("!", "Appended to every shouted text.")
    min_chars: int = option(0, "Drop documents shorter than this.", required=True)


class ShoutStage(MapStage):
    """Upper-cases the text and drops short documents: a whole map stage in a few lines."""

    name = "shout"

    def process(self, batch: pa.RecordBatch, columns: Columns) -> StageOutput:
        text = batch.column(columns.text)
        keep = pc.greater_equal(pc.utf8_length(text), self.params.min_chars)
        shouted = pc.binary_join_element_wise(pc.utf8_upper(text), self.params.suffix, "")
        out = batch.set_column(batch.schema.get_field_index(columns.text), columns.text, shouted).filter(keep)
        removed = batch.num_rows - out.num_rows
        return StageOutput(out, counters={"removed": {"too_short": removed} if removed else {}})


@dataclass
class Inner:
    ngram: int = option(5, "n-gram size.")
    workers_hint: int = option(1, "Does not change the output.", fingerprint=False)


@dataclass
class Outer:
    inner: Inner = nested(Inner, "The first pass.")
    mode: str = option("filter", "What to do.")
    tags: list[str] = option([], "Labels.")


SHOUT = registry.StageSpec(
    "shout", ("shout",), f"{__name__}:ShoutParams", stage=f"{__name__}:ShoutStage",
    help="Upper-case every document.", examples="Examples:\n\n\b\n  curate shout data/ -o out --min-chars 5\n",
)


@pytest.fixture
def shout(monkeypatch):
    monkeypatch.setitem(registry.STAGES, "shout", SHOUT)


@pytest.fixture
def corpus(tmp_path):
    texts = [f"document number {i} " * (i % 7) for i in range(1, 401)]
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": [f"d{i}" for i in range(len(texts))], "text": texts}), path)
    return path


def invoke(*args: str, env: dict | None = None):
    return CliRunner().invoke(app, list(args), env=env)


def shards(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.glob("part-*.parquet"))}


@pytest.mark.usefixtures("shout")
def test_a_registered_stage_gets_its_command_recipe_key_slurm_scripts_and_ray(corpus, tmp_path, ray_session):  # noqa: F811
    helped = invoke("shout", "--help")
    assert helped.exit_code == 0 and "--suffix" in helped.output and "--min-chars" in helped.output
    assert "required" in helped.output.split("--min-chars", 1)[1].split("--", 1)[0]
    assert "curate shout data/" in helped.output and "--workers" in helped.output
    assert invoke("shout", str(corpus), "-o", str(tmp_path / "x")).exit_code == 2  # --min-chars missing

    cli = invoke("shout", str(corpus), "-o", str(tmp_path / "cli"), "--min-chars", "40", "--max-rows-per-shard",
                 "100", "-q", "--json")
    assert cli.exit_code == 0, cli.output
    summary = json.loads(cli.output)
    assert summary["units"] == 4 and summary["removed"]["too_short"] > 0
    texts = pq.read_table(tmp_path / "cli").column("text").to_pylist()
    assert texts and all(t.endswith("!") and t == t.upper() for t in texts)

    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"inputs: [{corpus}]\nio: {{max_rows_per_shard: 100}}\n"
                      "stages:\n  - shout: {min_chars: 40}\n")
    assert invoke("run", str(recipe), "--work-dir", str(tmp_path / "w"), "-q").exit_code == 0
    assert shards(tmp_path / "w" / "01-shout") == shards(tmp_path / "cli")

    written = invoke("run", str(recipe), "--work-dir", str(tmp_path / "s"), "--emit-slurm", str(tmp_path / "sl"),
                     "--tasks", "3")
    assert written.exit_code == 0, written.output
    script = (tmp_path / "sl" / "01-shout.sbatch").read_text()
    assert "#SBATCH --array=0-2" in script
    command = shlex.split(script.split("exec ", 1)[1].splitlines()[0].replace(' --shard-index "$SLURM_ARRAY_TASK_ID"', ""))
    arguments = command[command.index("curate") + 1:]
    for task in (2, 0, 1):  # what each array task runs, in any order
        assert invoke(*arguments, "--shard-index", str(task)).exit_code == 0
    assert shards(tmp_path / "s" / "01-shout") == shards(tmp_path / "cli")

    ray_session.cloudpickle.register_pickle_by_value(__import__(__name__))  # Ray workers need not find tests/
    ray = invoke("shout", str(corpus), "-o", str(tmp_path / "ray"), "--min-chars", "40", "--max-rows-per-shard",
                 "100", "-q", "--executor", "ray")
    assert ray.exit_code == 0, ray.output
    assert shards(tmp_path / "ray") == shards(tmp_path / "cli")


def test_recipe_keys_are_the_flag_names(tmp_path, corpus):
    """`--format` is `format:` in a recipe (the field's own name stays accepted)."""
    from curate.recipes import load_recipe

    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"inputs: [{corpus}]\nstages:\n  - pack: {{tokenizer: t.json, format: npy}}\n")
    assert load_recipe(recipe, str(tmp_path / "w")).stages[0].params.output_format == "npy"
    recipe.write_text(f"inputs: [{corpus}]\nstages:\n  - pack: {{tokenizer: t.json, output_format: npy}}\n")
    assert load_recipe(recipe, str(tmp_path / "w")).stages[0].params.output_format == "npy"


def test_every_stage_and_tool_command_exists_with_its_help():
    for spec in (*registry.STAGES.values(), *registry.TOOLS.values()):
        result = invoke(*spec.command, "--help")
        assert result.exit_code == 0, (spec.name, result.output)
        assert "Examples" in result.output, spec.name
    assert "--min-score" in invoke("langid", "--help").output  # the stage's own flags, no hidden `run`


# -- layering -------------------------------------------------------------------------------------------------
def _imports(path: Path) -> set[str]:
    """Modules of curate that a file imports (at module level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("curate")}


def _module_of(path: Path) -> str:
    parts = path.relative_to(CURATE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_nothing_below_the_command_line_imports_it_and_io_knows_no_stage():
    for path in CURATE.rglob("*.py"):
        module = _module_of(path)
        imported = _imports(path)
        if not module.startswith(("curate.cli", "curate.__main__")):
            assert not any(name.startswith("curate.cli") for name in imported), module
        if module.startswith("curate.io"):
            assert not any(name.startswith(("curate.stages", "curate.runner", "curate.recipes", "curate.registry"))
                           for name in imported), module


def test_no_import_cycles():
    """Imports between curate's modules form no cycle, counting the ones inside functions (lazy loading)."""
    modules = {_module_of(p): p for p in CURATE.rglob("*.py")}
    graph = {module: {name for name in _imports(path) if name in modules and name != module}
             for module, path in modules.items()}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " → ".join([*trail[trail.index(nxt):], nxt]))
            if nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_nested_params_are_flat_flags_and_recipe_keys_or_a_section():
    """A stage's params may hold one dataclass per pass: flags stay flat, a recipe gives either spelling."""
    from curate.io.errors import UsageError
    from curate.params import cli_parameters, fingerprint, from_mapping

    assert [p.name for p in cli_parameters(Outer)] == ["ngram", "workers_hint", "mode", "tags"]
    flat = from_mapping(Outer, {"ngram": 7, "mode": "annotate"})
    sectioned = from_mapping(Outer, {"inner": {"ngram": 7}, "mode": "annotate"})
    assert flat == sectioned and flat.inner.ngram == 7
    assert fingerprint(flat) == {"inner": {"ngram": 7}, "mode": "annotate", "tags": []}
    with pytest.raises(UsageError, match=r"unknown key.*ngrams.*expected some of.*ngram"):
        from_mapping(Outer, {"ngrams": 7})


def test_a_stage_of_several_passes_runs_one_pass_with_pass(corpus, tmp_path):
    """`--pass P` on the stage's own command: an array job may schedule the passes itself."""
    out = str(tmp_path / "exact")
    keys = invoke("dedup", "exact", str(corpus), "-o", out, "--pass", "keys", "-q", "--json")
    assert keys.exit_code == 0, keys.output
    assert (tmp_path / "exact.exact-work" / "keys" / "_manifest.json").exists() and not (tmp_path / "exact").exists()
    unknown = invoke("dedup", "exact", str(corpus), "-o", out, "--pass", "cluster")
    assert unknown.exit_code == 2 and "has the passes keys, groups, filter" in unknown.output
    whole = invoke("dedup", "exact", str(corpus), "-o", out, "-q", "--json")
    assert whole.exit_code == 0 and json.loads(whole.output)["keys"]["units_already_done"] == 1
    assert "--pass" not in invoke("langid", "--help").output  # one pass: nothing to choose


def test_errors_name_the_command_whichever_way_curate_was_started(tmp_path):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "curate", "dedup", "exact", str(tmp_path / "none"), "-o",
                           str(tmp_path / "out")], capture_output=True, text=True)
    assert done.returncode == 3 and done.stderr.startswith("curate dedup exact: error:"), done.stderr
