"""`curate pack` end to end on real English and web text with the GPT-2 tokenizer: exact token accounting,
decompose equal to an independent implementation of the reference, every output format read back; the output
of one run equals that of a run SIGKILLed and resumed, of array tasks in any order, of --workers 2 and of Ray."""

from __future__ import annotations

import json
import random
import signal
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from test_pack_core import read_megatron, reference_get_binary
from test_pipeline import kill_after_units, ray_session, visible_shards  # noqa: F401  (ray_session: a fixture)
from tokenizers import Tokenizer
from typer.testing import CliRunner

from curate.cli.main import app
from curate.io.output import file_checksum

try:
    import test_remote as remote
    from test_remote import s3_endpoint
except pytest.skip.Exception:  # moto or s3fs not installed

    @pytest.fixture
    def s3_endpoint():
        pytest.skip("needs moto[server] and s3fs (the dev extra installs them)")

GPT2_EOS = 50256


def run(*args: str) -> dict:
    result = CliRunner().invoke(app, [*map(str, args), "--json", "-q"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def english(shared_data: Path, tmp_path_factory) -> Path:
    """~0.5M tokens of english/misc: short forum lines, reviews, speeches, and Wikipedia articles > 16k tokens."""
    table = pq.read_table(shared_data / "english" / "misc.parquet", columns=["id", "text", "source"])
    source = table.column("source")
    length = pc.utf8_length(table.column("text"))
    parts = [
        table.filter(pc.equal(source, "nltk-webtext")).slice(0, 1500),
        table.filter(pc.equal(source, "nltk-movie_reviews")).slice(0, 150),
        table.filter(pc.equal(source, "allenai-cc-fixture")),
        table.filter(pc.and_(pc.equal(source, "gensim-enwiki-wikitext"), pc.greater(length, 90_000))).slice(0, 4),
    ]
    path = tmp_path_factory.mktemp("english") / "english.parquet"
    pq.write_table(pa.concat_tables(parts), path, row_group_size=700)
    return path


@pytest.fixture(scope="module")
def tokenizer_path(shared_data: Path) -> Path:
    return shared_data / "tokenizers" / "gpt2.json"


def reference_tokens(path: Path, tokenizer_path: Path) -> list[list[int]]:
    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    texts = pq.read_table(path, columns=["text"]).column("text").to_pylist()
    return [[*e.ids, GPT2_EOS] for e in tokenizer.encode_batch(texts)]


def read_buckets(out: Path) -> dict[int, pa.Table]:
    return {int(d.name.split("_")[1]): pq.read_table(d) for d in sorted(out.glob("bucket_*"))}


def assert_accounting(summary: dict, tokens_in: int) -> None:
    tokens = summary["tokens"]
    assert tokens["in"] == tokens_in
    assert tokens["in"] == tokens["out"] + sum(tokens["dropped"].values())
    assert tokens["dropped_total"] == sum(tokens["dropped"].values())


@pytest.mark.parametrize(("seed_args", "unit_rows"), [(["--no-randomize"], 100_000), (["--seed", "11"], 100_000),
                                                      (["--seed", "11"], 700)])
def test_decompose_equals_reference_token_for_token(english, tokenizer_path, tmp_path, seed_args, unit_rows):
    """Document n draws its piece sizes from (seed, n); n = unit × 2^32 + row within the unit (units of
    --max-rows-per-shard rows), so one unit numbers documents by row."""
    out = tmp_path / "dd"
    summary = run("pack", english, "-o", out, "--tokenizer", tokenizer_path, "--keep-columns", "source",
                  "--batch-size", "333", "--max-rows-per-shard", unit_rows, *seed_args)
    docs = reference_tokens(english, tokenizer_path)
    assert_accounting(summary, sum(map(len, docs)))
    ids = pq.read_table(english, columns=["id"]).column("id").to_pylist()
    expected: dict[int, list[list[int]]] = {}
    expected_ids: dict[int, list[str]] = {}
    for ordinal, doc in enumerate(docs):
        number = (ordinal // unit_rows << 32) + ordinal % unit_rows
        rng = None if seed_args == ["--no-randomize"] else np.random.default_rng([11, number])
        for k, piece in reference_get_binary(doc, 8, 13, rng):
            expected.setdefault(1 << k, []).append(piece)
            expected_ids.setdefault(1 << k, []).append(ids[ordinal])
    buckets = read_buckets(out)
    assert sorted(buckets) == sorted(expected)
    for size, table in buckets.items():
        assert table.schema.field("input_ids").type == pa.list_(pa.uint32())
        assert table.column("input_ids").to_pylist() == expected[size]
        assert table.column("doc_id").to_pylist() == expected_ids[size]
        assert set(pc.list_value_length(table.column("input_ids")).to_pylist()) == {size + 1}
        assert "source" in table.column_names
    meta = json.loads((out / "_buckets.json").read_text())
    for bucket in meta["buckets"]:
        n = len(expected.get(bucket["context_length"], []))
        assert bucket["sequences"] == n and bucket["tokens"] == n * bucket["sequence_length"]
    if seed_args == ["--no-randomize"]:
        assert max(expected) == 8192 and summary["documents"]["split"] > 0


def test_megatron_and_npy_hold_the_parquet_sequences(english, tokenizer_path, tmp_path):
    common = ["--tokenizer", tokenizer_path, "--seed", "3"]
    run("pack", english, "-o", tmp_path / "pq", *common)
    run("pack", english, "-o", tmp_path / "mg", *common, "--format", "megatron")
    run("pack", english, "-o", tmp_path / "np", *common, "--format", "npy")
    for size, table in read_buckets(tmp_path / "pq").items():
        rows = table.column("input_ids").to_pylist()
        name = f"bucket_{size:05d}"
        sequences, documents = read_megatron(tmp_path / "mg" / name / "part-00000")
        assert [s.tolist() for s in sequences] == rows
        assert documents.tolist() == list(range(len(rows) + 1))
        matrix = np.load(tmp_path / "np" / name / "part-00000.input_ids.npy")
        assert matrix.dtype == np.uint16 and matrix.shape == (len(rows), size + 1)
        assert matrix.tolist() == rows
    manifest = json.loads((tmp_path / "mg" / "_manifest.json").read_text())
    assert {s["name"] for s in manifest["shards"]} >= {"bucket_00256/part-00000.bin", "bucket_00256/part-00000.idx"}


def test_concat_and_bestfit_accounting_and_layout(english, tokenizer_path, tmp_path):
    docs = reference_tokens(english, tokenizer_path)
    tokens_in = sum(map(len, docs))
    width = 1025
    concat = run("pack", english, "-o", tmp_path / "cat", "--tokenizer", tokenizer_path, "--strategy", "concat",
                 "--seq-len", "1024", "--batch-size", "500")
    assert_accounting(concat, tokens_in)
    stream = np.concatenate([np.array(d) for d in docs])
    rows = pq.read_table(tmp_path / "cat").column("input_ids").to_pylist()
    assert np.array_equal(np.array(rows).ravel(), stream[: len(rows) * width])
    assert concat["tokens"]["dropped"] == {"final_partial_sequence": len(stream) - len(rows) * width}

    best = run("pack", english, "-o", tmp_path / "bf", "--tokenizer", tokenizer_path, "--strategy", "bestfit",
               "--seq-len", "1024", "--window", "900", "--format", "megatron")
    assert_accounting(best, tokens_in)
    assert best["tokens"]["dropped_total"] == 0 and best["tokens"]["padding"] > 0
    assert best["documents"]["split"] == sum(len(d) > width for d in docs)
    assert best["documents"]["split"] < concat["documents"]["split"]
    segments, documents = read_megatron(tmp_path / "bf" / "part-00000")
    assert len(documents) - 1 == best["sequences"] and sum(map(len, segments)) == tokens_in
    chunks = sorted(tuple(d[i : i + width]) for d in docs for i in range(0, len(d), width))
    assert sorted(tuple(s.tolist()) for s in segments) == chunks

    run("pack", english, "-o", tmp_path / "bfp", "--tokenizer", tokenizer_path, "--strategy", "bestfit",
        "--seq-len", "1024", "--window", "900")
    table = pq.read_table(tmp_path / "bfp")
    assert table.column_names == ["input_ids", "position_ids", "doc_boundaries"]
    first = table.slice(0, 1).to_pylist()[0]
    bounds = first["doc_boundaries"]
    assert len(first["input_ids"]) == width and first["position_ids"][bounds[-1]:] == [-1] * (width - bounds[-1])


def test_compare_on_web_pages(shared_data, tokenizer_path, tmp_path):
    web = tmp_path / "web.parquet"
    pq.write_table(pq.read_table(shared_data / "web" / "trafilatura_pages.parquet", columns=["id", "text"])
                   .slice(0, 150), web)
    result = CliRunner().invoke(app, ["pack", str(web), "-o", str(tmp_path / "cmp"), "--tokenizer",
                                      str(tokenizer_path), "--compare", "--seq-len", "2048", "--json"])
    assert result.exit_code == 0, result.output
    assert "decompose" in result.stderr and "fill rate" in result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    tokens_in = sum(map(len, reference_tokens(web, tokenizer_path)))
    for name in ("decompose", "concat", "bestfit"):
        assert_accounting(summary["compare"][name], tokens_in)
    assert summary["compare"]["bestfit"]["documents"]["split"] <= summary["compare"]["concat"]["documents"]["split"]
    assert not list((tmp_path / "cmp").glob("bucket_*")) and not list((tmp_path / "cmp").glob("part-*"))


def test_tokenizer_train_then_pack(english, tmp_path):
    tokenizer = tmp_path / "tok.json"
    trained = run("tokenizer", "train", english, "-o", tokenizer, "--vocab-size", "600")
    assert trained["vocab_size"] == 600
    loaded = Tokenizer.from_file(str(tokenizer))
    assert loaded.token_to_id("<|endoftext|>") == 0
    assert loaded.decode(loaded.encode("Héllo wörld").ids) == "Héllo wörld"
    summary = run("pack", english, "-o", tmp_path / "dd", "--tokenizer", tokenizer, "--no-randomize")
    assert summary["tokens"]["in"] > 0 and summary["tokens"]["out"] > 0


def test_clear_errors(english, tmp_path):
    from tokenizers import models

    plain = tmp_path / "plain.json"
    Tokenizer(models.WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]")).save(str(plain))
    runner = CliRunner()
    result = runner.invoke(app, ["pack", str(english), "-o", str(tmp_path / "o"), "--tokenizer", str(plain)])
    assert result.exit_code == 2 and "--eos-token" in result.stderr
    result = runner.invoke(app, ["pack", str(english), "-o", str(tmp_path / "o2"), "--tokenizer", str(plain),
                                 "--eos-token", "a", "--strategy", "concat", "--keep-columns", "source"])
    assert result.exit_code == 2 and "--keep-columns" in result.stderr
    result = runner.invoke(app, ["pack", str(english), "-o", str(tmp_path / "o3"), "--tokenizer",
                                 str(tmp_path / "missing.json")])
    assert result.exit_code == 3 and "missing.json" in result.stderr


def test_output_does_not_depend_on_batch_size(english, tokenizer_path, tmp_path):
    checksums = []
    for batch_size in ("100", "10000"):
        out = tmp_path / f"b{batch_size}"
        run("pack", english, "-o", out, "--tokenizer", tokenizer_path, "--seed", "2", "--batch-size", batch_size)
        manifest = json.loads((out / "_manifest.json").read_text())
        checksums.append({s["name"]: s["checksum"] for s in manifest["shards"]})
        assert (out / "_buckets.json").exists() and not (out / ".tmp").exists()
    assert checksums[0] == checksums[1] and len(checksums[0]) >= 5


def test_rerun_of_a_finished_pack_is_skipped_and_other_parameters_refused(english, tokenizer_path, tmp_path):
    out = tmp_path / "dd"
    first = run("pack", english, "-o", out, "--tokenizer", tokenizer_path, "--no-randomize")
    shards = {p: p.stat().st_mtime_ns for p in out.rglob("part-*.parquet")}
    again = run("pack", english, "-o", out, "--tokenizer", tokenizer_path, "--no-randomize")
    assert again["already_done"] and again["tokens"] == first["tokens"]
    assert {p: p.stat().st_mtime_ns for p in out.rglob("part-*.parquet")} == shards
    refused = CliRunner().invoke(app, ["pack", str(english), "-o", str(out), "--tokenizer", str(tokenizer_path)])
    assert refused.exit_code == 4 and "--overwrite" in refused.output


# -- resumable array pass: kill -9, array tasks, workers, Ray ------------------------------------------------
UNIT_ROWS = 150


@pytest.fixture(scope="module")
def units_input(shared_data: Path, tmp_path_factory) -> Path:
    """1,002 documents in 7 units of 150 rows: forum lines, reviews, and two Wikipedia articles > 16k tokens
    (capped pieces: random draws) in different units."""
    table = pq.read_table(shared_data / "english" / "misc.parquet", columns=["id", "text", "source"])
    source = table.column("source")
    length = pc.utf8_length(table.column("text"))
    wiki = table.filter(pc.and_(pc.equal(source, "gensim-enwiki-wikitext"), pc.greater(length, 90_000)))
    parts = [
        table.filter(pc.equal(source, "nltk-webtext")).slice(0, 400), wiki.slice(0, 1),
        table.filter(pc.equal(source, "nltk-movie_reviews")).slice(0, 200),
        table.filter(pc.equal(source, "nltk-webtext")).slice(400, 400), wiki.slice(1, 1),
    ]
    path = tmp_path_factory.mktemp("units") / "units.parquet"
    pq.write_table(pa.concat_tables(parts), path, row_group_size=250)
    return path


FORMATS = {  # strategy → format: every writer is covered
    "decompose": ["--strategy", "decompose", "--seed", "5", "--min-log2", "6", "--max-log2", "12",
                  "--keep-columns", "source"],
    "bestfit": ["--strategy", "bestfit", "--seq-len", "512", "--window", "100", "--format", "megatron"],
    "concat": ["--strategy", "concat", "--seq-len", "256", "--format", "npy"],
}


def pack_args(units_input: Path, out: Path | str, tokenizer_path: Path, strategy: str) -> list[str]:
    return ["pack", str(units_input), "-o", str(out), "--tokenizer", str(tokenizer_path),
            "--max-rows-per-shard", str(UNIT_ROWS), "--batch-size", "64", *FORMATS[strategy]]


def output_of(out: Path) -> dict:
    """What a reader of a pack output sees: every token file and ``_buckets.json`` byte for byte, the manifest's
    shard list with checksums, and the token accounting."""
    files = {name: file_checksum(path) for name, path in visible_shards(out).items()}
    if (out / "_buckets.json").exists():
        files["_buckets.json"] = file_checksum(out / "_buckets.json")
    stats = json.loads((out / "_stats.json").read_text())
    return {"files": files, "shards": json.loads((out / "_manifest.json").read_text())["shards"],
            "stats": {k: stats.get(k) for k in ("tokens", "documents", "buckets", "sequences", "docs_in", "docs_out",
                                                "fill_rate", "kept_share")}}


@pytest.fixture(scope="module")
def single_runs(units_input, tokenizer_path, tmp_path_factory) -> dict[str, dict]:
    """Each strategy packed by one uninterrupted run with one worker."""
    outputs = {}
    for strategy in FORMATS:
        out = tmp_path_factory.mktemp("single") / strategy
        summary = run(*pack_args(units_input, out, tokenizer_path, strategy))
        assert summary["units"] == 7 and summary["complete"] and summary["docs_in"] == 1002
        outputs[strategy] = output_of(out)
    assert len(outputs["decompose"]["files"]) > 20  # 7 units × several buckets, plus _buckets.json
    assert {name.split("/")[-1] for name in outputs["bestfit"]["files"]} == {
        f"part-{u:05d}.{ext}" for u in range(7) for ext in ("bin", "idx")}
    assert set(outputs["concat"]["files"]) == {f"part-{u:05d}.input_ids.npy" for u in range(7)}
    return outputs


@pytest.mark.parametrize("strategy", list(FORMATS))
def test_array_tasks_in_shuffled_order_give_the_single_run_output(units_input, tokenizer_path, tmp_path,
                                                                  single_runs, strategy):
    out = tmp_path / "array"
    order = list(range(4))
    random.Random(strategy).shuffle(order)
    for position, task in enumerate(order):
        summary = run(*pack_args(units_input, out, tokenizer_path, strategy), "--shard-index", task,
                      "--num-shards", "4")
        assert summary["units_processed"] == len(range(task, 7, 4))
        assert summary["complete"] == (position == 3)
        assert (out / "_manifest.json").exists() == (position == 3)
    assert output_of(out) == single_runs[strategy]


def test_two_workers_give_the_one_worker_output(units_input, tokenizer_path, tmp_path, single_runs):
    summary = run(*pack_args(units_input, tmp_path / "w2", tokenizer_path, "decompose"), "--workers", "2")
    assert summary["units_processed"] == 7 and summary["strategy"] == "decompose" and summary["tokens_per_s"] > 0
    assert output_of(tmp_path / "w2") == single_runs["decompose"]


@pytest.mark.usefixtures("ray_session")
def test_ray_executor_gives_the_local_output(units_input, tokenizer_path, tmp_path, single_runs):
    summary = run(*pack_args(units_input, tmp_path / "ray", tokenizer_path, "bestfit"), "--executor", "ray",
                  "--workers", "2")
    assert summary["units_processed"] == 7 and summary["complete"]
    assert output_of(tmp_path / "ray") == single_runs["bestfit"]


@pytest.mark.parametrize(("workers", "strategy"), [(1, "decompose"), (2, "concat")])
def test_sigkill_then_rerun_gives_the_uninterrupted_output(units_input, tokenizer_path, tmp_path, single_runs,
                                                           workers, strategy):
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "curate", *pack_args(units_input, out, tokenizer_path, strategy), "-q",
               "--workers", str(workers)]
    after = random.Random(workers).randint(1, 4)  # of 7 units: killed while others are still being packed
    status, orphans = kill_after_units(command, out, after)
    assert status == -signal.SIGKILL and not orphans
    assert not (out / "_manifest.json").exists()
    expected = single_runs[strategy]
    for name, path in visible_shards(out).items():  # whatever is visible is complete and final
        assert file_checksum(path) == expected["files"][name], name
    summary = run(*command[3:])  # the same command again (in this process: the kill needed a real one)
    assert summary["units_already_done"] >= after and summary["units_processed"] <= 7 - after
    assert output_of(out) == expected


def test_stdout_output_is_refused(english, tokenizer_path):
    result = CliRunner().invoke(app, ["pack", str(english), "-o", "-", "--tokenizer", str(tokenizer_path)])
    assert result.exit_code == 2 and "-o -" in result.stderr



def test_s3_output_holds_the_local_files(units_input, tokenizer_path, tmp_path, single_runs, s3_endpoint):
    """Shards, Megatron files and _buckets.json are published to the store, as a local run writes them."""
    for strategy in ("decompose", "bestfit"):
        url = f"s3://{remote.BUCKET}/pack-{strategy}"
        run(*pack_args(units_input, url, tokenizer_path, strategy), "--storage-options",
            remote._options(s3_endpoint))
        assert output_of(remote._download(s3_endpoint, url, tmp_path / strategy)) == single_runs[strategy]
