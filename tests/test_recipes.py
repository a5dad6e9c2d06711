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
