"""fastText quality classifier: train on real reference text vs spam, then score with `classify`."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from curate.cli.main import app


@pytest.fixture(scope="module")
def corpora(shared_data: Path, tmp_path_factory) -> dict[str, Path]:
    """Positives: Wikipedia articles and movie reviews; negatives: spam e-mails. Train and test halves."""
    misc = pq.read_table(shared_data / "english" / "misc.parquet", columns=["id", "text", "source"])
    reference = misc.filter(
        pc.is_in(misc["source"], pa.array(["gensim-enwiki-wikitext", "nltk-movie_reviews"]))
    )
    spam = pq.read_table(shared_data / "spamassassin" / "emails.parquet", columns=["id", "text", "label"])
    spam = spam.filter(pc.equal(spam["label"], "spam"))
    root = tmp_path_factory.mktemp("classifier")
    paths = {}
    for name, table in (("pos", reference.select(["id", "text"])), ("neg", spam.select(["id", "text"]))):
        table = table.take(pa.array(range(0, min(table.num_rows, 1600), 2)))  # 800 docs, every other row
        half = table.num_rows // 2
        paths[f"{name}_train"] = root / f"{name}_train.parquet"
        paths[f"{name}_test"] = root / f"{name}_test.parquet"
        pq.write_table(table.slice(0, half), paths[f"{name}_train"])
        pq.write_table(table.slice(half), paths[f"{name}_test"])
    return paths


def test_train_then_classify(corpora: dict[str, Path], tmp_path: Path):
    runner = CliRunner()
    model = tmp_path / "model.bin"
    args = [
        "quality",
        "train",
        "--positive",
        str(corpora["pos_train"]),
        "--negative",
        str(corpora["neg_train"]),
    ]
    result = runner.invoke(app, [*args, "-o", str(model), "--dim", "32", "--seed", "3", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["holdout_docs"] == 80  # 10% of 400 + 400
    assert summary["precision"] >= 0.95 and summary["recall"] >= 0.95  # measured: 1.0 / 1.0
    # same seed, one thread: the same model bytes
    again = tmp_path / "again.bin"
    assert runner.invoke(app, [*args, "-o", str(again), "--dim", "32", "--seed", "3", "-q"]).exit_code == 0
    assert again.read_bytes() == model.read_bytes()

    scored = {}
    for name in ("pos", "neg"):
        out = tmp_path / f"scored_{name}"
        result = runner.invoke(
            app,
            [
                "quality",
                "classify",
                str(corpora[f"{name}_test"]),
                "-o",
                str(out),
                "--model",
                str(model),
                "-q",
            ],
        )
        assert result.exit_code == 0, result.output
        table = pq.read_table(out)
        assert table.schema.field("quality_score").type == pa.float32()
        scored[name] = table["quality_score"].to_numpy()
    # unseen documents: accuracy at 0.5 on the other halves
    accuracy = ((scored["pos"] >= 0.5).sum() + (scored["neg"] < 0.5).sum()) / (
        len(scored["pos"]) + len(scored["neg"])
    )
    assert accuracy >= 0.95  # measured: 1.0

    out, rejected = tmp_path / "kept", tmp_path / "low"
    result = runner.invoke(
        app,
        ["quality", "classify", str(corpora["neg_test"]), "-o", str(out), "--model", str(model),
         "--min-score", "0.5", "--rejected", str(rejected), "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert pq.read_table(out).num_rows + pq.read_table(rejected).num_rows == 400
    assert pq.read_table(rejected).num_rows >= 380


def test_classify_errors(corpora: dict[str, Path], tmp_path: Path):
    runner = CliRunner()
    result = runner.invoke(
        app,
        ["quality", "classify", str(corpora["pos_test"]), "-o", str(tmp_path / "o"), "--model", "nope.bin"],
    )
    assert result.exit_code == 2 and "nope.bin" in result.output
    result = runner.invoke(app, ["quality", "train", "--positive", str(corpora["pos_train"]), "-o", "m.bin"])
    assert result.exit_code == 2 and "--negative" in result.output
