"""`curate dedup …` end to end through the CLI: outputs, determinism across workers and array tasks, --keep,
--mode annotate, --against, exact dedup (hash partitions, array tasks, Ray, SIGKILL and resume), rehydration,
and clear errors."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from conftest import write_parquet
from test_pipeline import (
    kill_after_units,
    progress_records,
    ray_session,  # noqa: F401  (one Ray instance for the whole test session)
    visible_shards,
)
from typer.testing import CliRunner

from curate.cli.main import app
from curate.io.output import file_checksum

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


def test_filter_reads_only_the_clusters_parts_of_its_own_units(emails, tmp_path, monkeypatch):
    """The clusters table is written per signatures unit; a filter unit loads the parts of the units that read
    its rows (bounded memory), and input the table was not made from (a copy elsewhere) uses the whole table."""
    from curate.stages.dedup import minhash_dedup

    work = tmp_path / "work"
    run("dedup", "minhash", "signatures", emails, "-o", work / "sigs", "-q", "--max-rows-per-shard", "300")
    run("dedup", "minhash", "cluster", work / "sigs", "-o", work / "clusters", "-q")
    parts = sorted(p.name for p in (work / "clusters").glob("part-*.parquet"))
    assert parts == [f"part-{i:05d}.parquet" for i in range(6)]  # 700 + 800 rows in units of 300
    loaded: list[list[str] | None] = []
    original = minhash_dedup.ClusterLookup.__init__

    def recording(self, path, parts=None):
        loaded.append(None if parts is None else [p.name for p in parts])
        original(self, path, parts)

    monkeypatch.setattr(minhash_dedup.ClusterLookup, "__init__", recording)
    run("dedup", "minhash", "filter", emails, "--clusters", work / "clusters", "-o", tmp_path / "own", "-q",
        "--max-rows-per-shard", "200")
    # a.parquet (700 rows) in units of 200: rows 0-200 → part 0 (rows 0-300), 200-400 → parts 0 and 1, …
    assert loaded[:5] == [["part-00000.parquet"], ["part-00000.parquet", "part-00001.parquet"],
                          ["part-00001.parquet"], ["part-00002.parquet"], ["part-00003.parquet"]]
    assert len(loaded) == 8 and None not in loaded

    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("a.parquet", "b.parquet"):
        (copy / name).write_bytes((emails / name).read_bytes())
    loaded.clear()
    run("dedup", "minhash", "filter", copy, "--clusters", work / "clusters", "-o", tmp_path / "elsewhere", "-q",
        "--max-rows-per-shard", "200")
    assert loaded == [None]  # the whole table, loaded once for every unit
    expected = read(tmp_path / "own")
    assert expected.height < 1500 and read(tmp_path / "elsewhere").equals(expected)
    run("dedup", "minhash", emails, "-o", tmp_path / "command", "-q")
    assert read(tmp_path / "command").equals(expected)


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
    # the corpus's and the index's band keys grouped on disk, partition by partition: the same matches
    work = tmp_path / "partitioned"
    run("dedup", "minhash", "signatures", new, "-o", work / "sigs", "-q")
    on_disk = run("dedup", "minhash", "cluster", work / "sigs", "-o", work / "clusters", "--against",
                  tmp_path / "index", "--partition-rows", 64, "--json", "-q")
    assert on_disk["matched_index"] == summary["cluster"]["matched_index"]
    run("dedup", "minhash", "filter", new, "--clusters", work / "clusters", "-o", work / "out", "-q")
    assert read(work / "out").equals(kept)


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


def exact(*args, code: int = 0) -> dict:
    return run("dedup", "exact", *args, "-q", "--json", code=code)


def shard_sums(out: Path) -> dict[str, str]:
    return {p.name: file_checksum(p) for p in sorted(out.glob("part-*.parquet"))}


EXACT_SPLIT = ("--max-rows-per-shard", 200, "--partition-rows", 300)  # 1,500 e-mails: 8 units, 5 partitions


def test_exact_hash_partitions_group_as_one_grouping_of_all_keys(emails, tmp_path):
    """Real e-mail bodies (126 groups of identical bodies): the first of each group in input order stays,
    with dup_count = the group's size, whether the groups pass has one hash partition or eight."""
    source = pl.read_parquet(sorted(emails.glob("*.parquet"))).with_row_index("order")
    expected = source.group_by("text").agg(pl.col("id").sort_by("order").first(),
                                           pl.len().cast(pl.Int64).alias("dup_count")).select("id", "dup_count")
    one = exact(emails, "-o", tmp_path / "one", "--max-rows-per-shard", 300)
    eight = exact(emails, "-o", tmp_path / "eight", "--max-rows-per-shard", 300, "--partition-rows", 200)
    assert read(tmp_path / "one").select("id", "dup_count").equals(expected.sort("id"))
    assert one["removed"]["duplicate"] == 1500 - expected.height > 100
    assert one["groups"]["units"] == 1 and eight["groups"]["units"] == 8
    assert shard_sums(tmp_path / "one") == shard_sums(tmp_path / "eight")
    clusters = tmp_path / "eight.exact-work" / "clusters"
    assert len(shard_sums(clusters)) == 8
    assert [u["of"] for u in json.loads((clusters / "_plan.json").read_text())["units"]] == [8] * 8
    header = json.loads((clusters / "_dedup.json").read_text())
    assert header["duplicates_removed"] == one["removed"]["duplicate"] and header["partitions"] == 8
    # a started run keeps its partitions: another --partition-rows is refused, or regroups with --overwrite
    result = runner.invoke(app, [str(a) for a in ("dedup", "exact", emails, "-o", tmp_path / "one",
                                                  "--max-rows-per-shard", 300, "--partition-rows", 200)])
    assert result.exit_code == 2 and "grouped in 1 hash partitions; --partition-rows 200 makes 8" in result.output
    regrouped = exact(emails, "-o", tmp_path / "one", "--max-rows-per-shard", 300, "--partition-rows", 200,
                      "--overwrite")
    assert regrouped["keys"]["units_already_done"] == 6 and regrouped["groups"]["units_processed"] == 8
    assert shard_sums(tmp_path / "one") == shard_sums(tmp_path / "eight")


@pytest.fixture(scope="module")
def exact_one(emails, tmp_path_factory) -> Path:
    """`curate dedup exact` over the e-mails split into 8 units and 5 partitions, in one run."""
    out = tmp_path_factory.mktemp("exact-one") / "one"
    exact(emails, "-o", out, *EXACT_SPLIT)
    return out


def same_shards(out: Path, expected: Path) -> bool:
    """The same output and intermediate shards (keys, clusters) as the run into `expected`."""
    return all(shard_sums(Path(f"{out}{d}")) == shard_sums(Path(f"{expected}{d}"))
               for d in ("", ".exact-work/clusters", ".exact-work/keys"))


def test_exact_array_tasks_in_shuffled_order_give_one_run(emails, exact_one, tmp_path):
    rng = random.Random(4)
    groups = []
    clusters = tmp_path / "tasks.exact-work" / "clusters"
    for round_ in range(3):  # a task stops at a pass others still work on: each round completes one more pass
        tasks = list(range(4))
        rng.shuffle(tasks)
        for task in tasks:
            summary = exact(emails, "-o", tmp_path / "tasks", *EXACT_SPLIT, "--num-shards", 4, "--shard-index", task)
            groups += [summary["groups"]] if "groups" in summary else []
        if round_ == 0:  # what `curate status` counts: the plan's units (partitions) and their _progress records
            assert len(json.loads((clusters / "_plan.json").read_text())["units"]) == 5
            finished = len(list((clusters / "_progress").glob("unit-*.json")))
            assert finished == sum(g["units_processed"] for g in groups) < 5
    assert summary["complete"] and (tmp_path / "tasks" / "_manifest.json").exists()
    assert sum(g["units_processed"] for g in groups) == 5 and max(g["units_this_task"] for g in groups) == 2
    assert same_shards(tmp_path / "tasks", exact_one)


def test_exact_with_two_workers_gives_one_worker_output(emails, tmp_path):
    """Two worker processes share the 5 hash partitions (the e-mails in one file: one input unit, no pool
    for the other passes)."""
    source = write_parquet(tmp_path / "in" / "emails.parquet", pl.read_parquet(sorted(emails.glob("*"))).to_arrow())
    exact(source, "-o", tmp_path / "one", "--partition-rows", 300)
    summary = exact(source, "-o", tmp_path / "two", "--partition-rows", 300, "--workers", 2)
    assert summary["groups"]["units_processed"] == 5 and same_shards(tmp_path / "two", tmp_path / "one")


@pytest.mark.usefixtures("ray_session")
def test_exact_on_ray_gives_the_local_output(emails, exact_one, tmp_path):
    summary = exact(emails, "-o", tmp_path / "ray", *EXACT_SPLIT, "--executor", "ray", "--workers", 2)
    assert summary["groups"]["units_processed"] == 5 and summary["complete"]
    assert same_shards(tmp_path / "ray", exact_one)


def exact_command(emails: Path, out: Path) -> list[str]:
    """1,500 e-mails (two files) in 11 units of at most 150 rows, and 10 hash partitions: 32 units in all."""
    return [sys.executable, "-m", "curate", "dedup", "exact", str(emails), "-o", str(out), "-q",
            "--max-rows-per-shard", "150", "--partition-rows", "150"]


@pytest.fixture(scope="module")
def exact_reference(emails, tmp_path_factory) -> tuple[dict[str, str], int]:
    root = tmp_path_factory.mktemp("exact-reference")
    subprocess.run(exact_command(emails, root / "out"), check=True, timeout=120)
    return {name: file_checksum(path) for name, path in visible_shards(root).items()}, len(progress_records(root))


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc (Linux)")
@pytest.mark.parametrize("units", [4, 16, 27])  # killed in the keys, groups or filter pass
def test_exact_killed_mid_run_then_rerun_gives_identical_shards(emails, exact_reference, tmp_path, units):
    expected, total = exact_reference
    assert total == 32
    command = exact_command(emails, tmp_path / "out")
    status, orphans = kill_after_units(command, tmp_path, units)
    assert status == -signal.SIGKILL and not orphans
    for plan in tmp_path.glob("**/_plan.json"):
        if len(list((plan.parent / "_progress").glob("unit-*.json"))) < len(json.loads(plan.read_text())["units"]):
            assert not (plan.parent / "_manifest.json").exists() and not (plan.parent / "_dedup.json").exists()
    for name, path in visible_shards(tmp_path).items():
        assert file_checksum(path) == expected[name], name
    subprocess.run(command, check=True, timeout=120)
    assert {name: file_checksum(path) for name, path in visible_shards(tmp_path).items()} == expected


def test_exact_refuses_shared_ids_naming_both_rows_in_any_partition(tmp_path):
    first = write_parquet(tmp_path / "in" / "a.parquet", pa.table({"id": ["a", "b", "c"], "text": ["x", "y", "z"]}))
    second = write_parquet(tmp_path / "in" / "b.parquet", pa.table({"id": ["d", "b"], "text": ["x", "w"]}))
    for name, extra in (("one", ()), ("five", ("--partition-rows", 1))):
        result = runner.invoke(app, [str(a) for a in ("dedup", "exact", tmp_path / "in", "-o", tmp_path / name, *extra)])
        assert result.exit_code == 3, result.output
        assert f"{second}, row 1" in result.output and f"of {first}, row 1" in result.output
        assert "ids must be unique" in result.output


def test_minhash_passes_as_array_tasks_give_the_command_output(emails, tmp_path):
    from curate.io.options import IOOptions
    from curate.runner import run_passes
    from curate.stages.dedup.minhash_dedup import minhash_passes
    from curate.stages.dedup.params import MinhashParams

    source = write_parquet(tmp_path / "in" / "emails.parquet", pl.read_parquet(emails / "a.parquet").head(400).to_arrow())
    run("dedup", "minhash", source, "-o", tmp_path / "command", "-q", "--max-rows-per-shard", 100)
    params = MinhashParams()
    for _ in range(3):  # each round of the two tasks completes one more pass
        for task in (1, 0):
            io = IOOptions(inputs=[str(source)], output=str(tmp_path / "passes"), quiet=True, max_rows_per_shard=100,
                           shard_index=task, num_shards=2)
            passes = minhash_passes(params, io)
            summary = run_passes("dedup minhash", passes, io)
    assert [p.name for p in passes] == ["signatures", "cluster", "filter"] and all(p.array for p in passes)
    assert summary["complete"] and shard_sums(tmp_path / "passes") == shard_sums(tmp_path / "command")


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
