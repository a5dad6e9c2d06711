"""Recipes: validation against each stage's params (errors name key and line), chaining, resume."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from curate.io.errors import UsageError
from curate.recipes import describe_stage, load_recipe, run_recipe


def test_recipe_runs_and_reruns_as_a_resume(small_corpus, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"inputs: [{small_corpus}]\nwork_dir: work\nio: {{max_rows_per_shard: 300}}\n"
                      "stages:\n  - langid: {keep: [en, de]}\n  - langid: {min_score: 0.9, io: {batch_size: 50}}\n")
    loaded = load_recipe(recipe, io_overrides={"quiet": True})
    assert [s.io.output for s in loaded.stages] == [str(tmp_path / "work" / "01-langid"), str(tmp_path / "work" / "02-langid")]
    assert loaded.stages[1].io.inputs == [loaded.stages[0].io.output] and loaded.stages[1].io.batch_size == 50
    first, second = run_recipe(loaded)
    assert second["docs_in"] == first["docs_out"] and second["docs_out"] <= second["docs_in"]
    assert set(pq.read_table(tmp_path / "work" / "02-langid")["lang"].to_pylist()) <= {"en", "de"}
    again = run_recipe(load_recipe(recipe, io_overrides={"quiet": True}))
    assert [s["units_processed"] for s in again] == [0, 0]
    assert describe_stage(loaded.stages[1])["status"] == "done"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("inputs: [x]\nstages:\n  - langid: {min_scor: 0.5}\n", r"line 3: langid: unknown key\(s\) min_scor"),
        ("inputs: [x]\nstages:\n  - langid:\n      min_score: high\n", r"line 3: langid: min_score: expected float"),
        ("inputs: [x]\nstages:\n  - nosuch: {}\n", r"line 3: unknown stage 'nosuch'"),
        ("inputs: [x]\nwrk_dir: y\nstages: []\n", r"line 2: unknown key 'wrk_dir'"),
        ("inputs: [x]\nstages:\n  - langid: {io: {workers: two}}\n", r"line 3: io: workers: expected int"),
    ],
)
def test_recipe_errors_name_key_and_line(tmp_path, body, message):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(body)
    with pytest.raises(UsageError, match=message):
        load_recipe(recipe)


def _alias_bomb(levels: int = 9) -> str:
    """A flow list whose every level repeats the previous one 9 times: 9**levels strings once expanded."""
    items = ["&a0 [" + ", ".join(["lol"] * 9) + "]"]
    for level in range(1, levels):
        items.append(f"&a{level} [" + ", ".join([f"*a{level - 1}"] * 9) + "]")
    return "[" + ", ".join(items) + "]"


@pytest.mark.parametrize("where", ["stage", "io", "top"])
def test_yaml_alias_bomb_is_refused_fast_with_bounded_memory(tmp_path, where):
    import subprocess
    import sys

    bomb = _alias_bomb()
    body = {
        "stage": f"inputs: [x]\nstages:\n  - langid:\n      keep: {bomb}\n",
        "io": f"inputs: [x]\nio: {{text_column: {bomb}}}\nstages:\n  - langid: {{}}\n",
        "top": f"inputs: {bomb}\nstages:\n  - langid: {{}}\n",
    }[where]
    recipe = tmp_path / "bomb.yaml"
    recipe.write_text(body)
    # a wrapper runs curate with a deadline and an address-space cap (so today's unbounded growth cannot hurt
    # the machine) and reports that child's peak memory, unaffected by other tests' subprocesses
    wrapper = (
        "import resource, subprocess, sys\n"
        "cap = lambda: resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))\n"
        "try:\n    code = subprocess.run(sys.argv[1:], preexec_fn=cap, timeout=30).returncode\n"
        "except subprocess.TimeoutExpired:\n    code = 'timeout'\n"
        "print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    result = subprocess.run([sys.executable, "-c", wrapper, sys.executable, "-m", "curate", "run", str(recipe),
                             "--dry-run", "--work-dir", str(tmp_path / "w")],
                            capture_output=True, text=True, timeout=90)
    code, peak_kib = result.stdout.split()
    assert code == "2", result.stderr
    assert "alias" in result.stderr and "bomb.yaml" in result.stderr
    assert int(peak_kib) < 1_000_000


def test_mapping_files_share_blocks_but_refuse_alias_bombs(tmp_path):
    from curate.params import load_mapping

    path = tmp_path / "t.yaml"
    path.write_text("zh: &cjk {c4: {min_words: null}}\nja: *cjk\n")  # sharing a block is fine
    assert load_mapping(path, "--config") == {"zh": {"c4": {"min_words": None}}, "ja": {"c4": {"min_words": None}}}
    path.write_text(f"en: 0.5\nbomb: {_alias_bomb()}\n")
    with pytest.raises(UsageError, match=r"--thresholds .*t.yaml, line 1, column 1: not valid YAML \(aliases "
                                         r"expand to more than 100,000 values"):
        load_mapping(path, "--thresholds")
    path.write_text("a: &loop [1, *loop]\n")
    with pytest.raises(UsageError, match=r"recursive alias"):
        load_mapping(path, "--thresholds")
