"""`curate dedup …` end to end through the CLI: outputs, determinism across workers and array tasks, --keep,
--mode annotate, --against, exact dedup, rehydration, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from conftest import write_parquet
from typer.testing import CliRunner

from curate.cli.main import app

runner = CliRunner()


def run(*args: str, code: int = 0) -> dict:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return json.loads(result.stdout.strip().splitlines()[-1]) if code == 0 and "--json" in args else {}


def read(path: Path) -> pl.DataFrame:
    return pl.read_parquet(sorted(path.glob("part-*.parquet"))).sort("id")


@pytest.fixture(scope="module")
def emails(shared_data, tmp_path_factory) -> Path:
    """1,500 spamassassin e-mails in two files (bodies only, so identical bodies are duplicates), plus score:
    every e-mail of the 126 groups of identical bodies, and others to fill."""
    frame = pl.read_parquet(shared_data / "spamassassin" / "emails.parquet")
    in_group = pl.col("body_md5").is_in(frame.filter(pl.col("body_md5").is_duplicated())["body_md5"].implode())
    frame = pl.concat([frame.filter(in_group), frame.filter(~in_group)]).head(1500).sort("id")
    frame = frame.with_columns(
        pl.col("text").str.splitn("\n\n", 2).struct.field("field_1").fill_null("").alias("text"),
        pl.col("text").str.len_chars().alias("score"),
    )
    directory = tmp_path_factory.mktemp("emails")
    write_parquet(directory / "a.parquet", frame.head(700).to_arrow(), row_group_size=200)
    write_parquet(directory / "b.parquet", frame.slice(700).to_arrow(), row_group_size=200)
    return directory


def test_minhash_removes_identical_bodies_and_adds_cluster_columns(emails, tmp_path):
    summary = run("dedup", "minhash", emails, "-o", tmp_path / "out", "--json", "-q")
    kept = read(tmp_path / "out")
    assert summary["docs_in"] == 1500 and summary["docs_out"] == kept.height < 1500
    assert {"dup_cluster_id", "dup_cluster_size"} <= set(kept.columns)
    manifest = json.loads((tmp_path / "out" / "_manifest.json").read_text())
    assert manifest["rows"] == kept.height

    run("dedup", "minhash", emails, "-o", tmp_path / "ann", "-q", "--mode", "annotate")
    source = pl.read_parquet(sorted(emails.glob("*.parquet"))).with_row_index("order")
    annotated = source.join(read(tmp_path / "ann").select("id", "dup_cluster_id", "dup_cluster_size", "dup_keep"),
                            on="id")
    # each group of identical (non-trivial) bodies lies in one cluster, of which exactly one document stays
    groups = annotated.filter(pl.col("text").str.len_chars() > 200, pl.col("body_md5").is_duplicated())
    per_group = groups.group_by("body_md5").agg(pl.col("dup_cluster_id").n_unique(), pl.len(),
                                                pl.col("dup_cluster_size").min())
    assert per_group.height > 100
    assert (per_group["dup_cluster_id"] == 1).all() and (per_group["dup_cluster_size"] >= per_group["len"]).all()
    clusters = annotated.filter(pl.col("dup_cluster_size") > 1).group_by("dup_cluster_id").agg(
        pl.col("dup_keep").sum(), pl.col("id").sort_by("order").first().alias("first"),
        pl.col("id").filter("dup_keep").first().alias("kept"), pl.len(), pl.col("dup_cluster_size").max())
    assert (clusters["dup_keep"] == 1).all() and (clusters["first"] == clusters["kept"]).all()
    assert (clusters["len"] == clusters["dup_cluster_size"]).all()
    assert set(kept["id"]) == set(annotated.filter("dup_keep")["id"])


def test_same_clusters_whatever_workers_or_array_tasks(emails, tmp_path):
    run("dedup", "minhash", emails, "-o", tmp_path / "one", "-q", "--max-rows-per-shard", "300")
    work = tmp_path / "work"
    for task in range(3):
        run("dedup", "minhash", "signatures", emails, "-o", work / "sigs", "-q", "--max-rows-per-shard", "300",
            "--num-shards", 3, "--shard-index", task)
    for task in range(2):
        run("dedup", "minhash", "cluster", work / "sigs", "-o", work / "clusters", "-q",
            "--num-shards", 2, "--shard-index", task, "--partition-rows", 100)  # bands partitioned on disk
    run("dedup", "minhash", "filter", emails, "--clusters", work / "clusters", "-o", tmp_path / "tasks", "-q",
        "--max-rows-per-shard", "300", "--workers", 2)
    assert read(tmp_path / "one").equals(read(tmp_path / "tasks"))


def test_annotate_keeps_everything_and_keep_rules(emails, tmp_path):
    run("dedup", "minhash", emails, "-o", tmp_path / "ann", "-q", "--mode", "annotate", "--keep", "longest")
    annotated = read(tmp_path / "ann")
    assert annotated.height == 1500 and annotated.schema["dup_keep"] == pl.Boolean
    clusters = annotated.filter(pl.col("dup_cluster_size") > 1)
    per_cluster = clusters.group_by("dup_cluster_id").agg(pl.col("dup_keep").sum(), pl.len())
    assert (per_cluster["dup_keep"] == 1).all()
    lengths = clusters.with_columns(pl.col("text").str.len_chars().alias("n"))
    best = lengths.group_by("dup_cluster_id").agg(pl.col("n").max().alias("longest"))
    chosen = lengths.filter("dup_keep").join(best, on="dup_cluster_id")
    assert chosen.height == best.height and (chosen["n"] == chosen["longest"]).all()
    run("dedup", "minhash", emails, "-o", tmp_path / "max", "-q", "--mode", "annotate", "--keep", "max:score")
    by_score = read(tmp_path / "max").filter(pl.col("dup_cluster_size") > 1)
    best = by_score.group_by("dup_cluster_id").agg(pl.col("score").max().alias("best"))
    chosen = by_score.filter("dup_keep").join(best, on="dup_cluster_id")
    assert (chosen["score"] == chosen["best"]).all()


def test_against_an_index_removes_documents_seen_before(emails, tmp_path):
    source = pl.read_parquet(sorted(emails.glob("*.parquet")))
    old = write_parquet(tmp_path / "old.parquet", source.head(400).to_arrow())
    new = write_parquet(tmp_path / "new.parquet", source.head(600).with_columns(
        ("new-" + pl.col("id")).alias("id")).to_arrow())
    run("dedup", "minhash", "signatures", old, "-o", tmp_path / "index", "-q")
    summary = run("dedup", "minhash", new, "-o", tmp_path / "out", "--against", tmp_path / "index", "--json", "-q")
    kept = read(tmp_path / "out")
    assert summary["cluster"]["matched_index"] >= 400
    assert set(kept["id"]) <= {f"new-{i}" for i in source["id"][400:600]}
    run("dedup", "minhash", new, "-o", tmp_path / "bad", "--against", tmp_path / "index", "--num-perm", 64, "-q",
        code=2)


def test_exact_dedup_by_text_url_and_normalized(tmp_path):
    table = pa.table({
        "id": ["a", "b", "c", "d", "e"],
        "text": ["Hello world", "hello, WORLD!", "Hello world", "other", "Hello world"],
        "url": ["u1", "u2", "u1", "u3", "u2"],
    })
    data = write_parquet(tmp_path / "in.parquet", table)
    run("dedup", "exact", data, "-o", tmp_path / "text", "-q")
    out = read(tmp_path / "text")
    assert out["id"].to_list() == ["a", "b", "d"] and out["dup_count"].to_list() == [3, 1, 1]
    run("dedup", "exact", data, "-o", tmp_path / "norm", "--normalize", "-q")
    assert read(tmp_path / "norm")["dup_count"].to_list() == [4, 1]
    run("dedup", "exact", data, "-o", tmp_path / "url", "--key", "url", "-q", "--partition-rows", 2)
    assert read(tmp_path / "url")["id"].to_list() == ["a", "b", "d"]


def test_rehydrate_repeat_column_and_materialize(tmp_path):
    table = pa.table({"id": ["a", "b", "c", "d"], "text": ["x", "y", "z", "w"],
                      "dup_cluster_size": [1, 4, 150, 5000]})
    data = write_parquet(tmp_path / "in.parquet", table)
    run("dedup", "rehydrate", data, "-o", tmp_path / "rep", "-q")
    assert read(tmp_path / "rep")["repeat"].to_list() == [1, 3, 8, 1]
    run("dedup", "rehydrate", data, "-o", tmp_path / "mat", "-q", "--materialize")
    assert read(tmp_path / "mat")["id"].to_list() == ["a", *["b"] * 3, *["c"] * 8, "d"]


def test_clear_errors(tmp_path):
    no_id = write_parquet(tmp_path / "noid.parquet", pa.table({"text": ["a b c", "a b c"]}))
    result = runner.invoke(app, ["dedup", "minhash", str(no_id), "-o", str(tmp_path / "o1")])
    assert result.exit_code == 3 and "missing id column 'id'" in result.output
    dup_ids = write_parquet(tmp_path / "dup.parquet", pa.table({"id": ["x", "x"], "text": ["a b c", "a b c"]}))
    result = runner.invoke(app, ["dedup", "exact", str(dup_ids), "-o", str(tmp_path / "o2")])
    assert result.exit_code == 3 and "ids must be unique" in result.output
    result = runner.invoke(app, ["dedup", "minhash", str(no_id), "-o", str(tmp_path / "o3"), "--keep", "best"])
    assert result.exit_code == 2 and "--keep" in result.output


def test_no_verify_and_char_shingles(emails, tmp_path):
    verified = run("dedup", "minhash", emails, "-o", tmp_path / "v", "-q", "--json")
    unverified = run("dedup", "minhash", emails, "-o", tmp_path / "nv", "-q", "--json", "--no-verify")
    assert "shingles" not in pl.read_parquet_schema(next((tmp_path / "nv.minhash-work" / "signatures").glob("part-*")))
    assert unverified["docs_out"] <= verified["docs_out"]  # unverified band matches only add edges
    chars = run("dedup", "minhash", emails, "-o", tmp_path / "c", "-q", "--json", "--shingle", "chars", "--ngram", 24)
    assert "12 bands x 9 rows" in verified["signatures"]["lsh"]
    assert abs(chars["docs_out"] - verified["docs_out"]) < 0.05 * verified["docs_out"]


def test_overwrite_with_other_parameters_recomputes_everything(tmp_path):
    words = ["the", "cat", "sat", "on", "the", "mat", "and", "looked", "at", "the", "dog", "in", "the", "garden", "while", "it", "rained", "outside", "all", "day"]
    texts = [" ".join(words[i:] + words[:i]) for i in range(12)] + [" ".join(words)] * 3
    data = write_parquet(tmp_path / "in.parquet", pa.table({"id": [f"d{i:02d}" for i in range(15)], "text": texts}))
    run("dedup", "minhash", data, "-o", tmp_path / "out", "-q", "--threshold", 0.95)
    strict = read(tmp_path / "out").height
    run("dedup", "minhash", data, "-o", tmp_path / "out", "-q", "--threshold", 0.5, "--overwrite")
    run("dedup", "minhash", data, "-o", tmp_path / "fresh", "-q", "--threshold", 0.5)
    assert read(tmp_path / "out").equals(read(tmp_path / "fresh"))
    assert read(tmp_path / "fresh").height < strict


def test_bands_and_rows_set_the_lsh_geometry(emails, tmp_path):
    fineweb = run("dedup", "minhash", emails, "-o", tmp_path / "fw", "-q", "--json", "--bands", 14, "--rows", 8)
    assert "14 bands x 8 rows (112 of 112 hashes)" in fineweb["signatures"]["lsh"]
    for bad in (["--bands", "14"], ["--bands", "15", "--rows", "8"]):
        result = runner.invoke(app, ["dedup", "minhash", str(emails), "-o", str(tmp_path / "x"), *bad])
        assert result.exit_code == 2 and "--rows" in result.output, result.output
