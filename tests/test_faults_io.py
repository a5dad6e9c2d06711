"""Faults users hit in the shared I/O layer, each reproduced with real processes and files.

Concurrent runs into one output, kill -9 in the middle of a run, inputs that change or overlap the output,
unusual but valid text column types, truncated compressed files, type changes in JSON lines, a full disk,
closed pipes, path spelling, mixed schemas across inputs, and failed runs followed by a corrected one.
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.io.output import OutputDir, file_checksum, temp_name

CURATE = [sys.executable, "-m", "curate"]
TIMEOUT = 60


def curate(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*CURATE, *args], capture_output=True, text=True, timeout=TIMEOUT, **kwargs)


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([*CURATE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def shards(out: Path) -> dict[str, str]:
    return {p.name: file_checksum(p) for p in sorted(out.glob("part-*.parquet"))}


def assert_manifest_matches_files(out: Path) -> None:
    """The manifest's checksums, rows and bytes describe the files on disk (re-hashed), and nothing else."""
    manifest = json.loads((out / "_manifest.json").read_text())
    assert sorted(s["name"] for s in manifest["shards"]) == sorted(shards(out))
    for shard in manifest["shards"]:
        path = out / shard["name"]
        assert file_checksum(path) == shard["checksum"] and path.stat().st_size == shard["bytes"]
        assert pq.ParquetFile(path).metadata.num_rows == shard["rows"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """4,000 generated documents in one Parquet file: 20 units of 200 rows."""
    from curate.sample import generate

    path = tmp_path_factory.mktemp("corpus") / "docs.parquet"
    pq.write_table(generate(4_000, seed=3), path, row_group_size=100)
    return path


LANGID = ("--max-rows-per-shard", "200", "--batch-size", "50", "-q")


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory) -> dict[str, Path]:
    """Uninterrupted single runs, one per set of parameters used below."""
    root = tmp_path_factory.mktemp("reference")
    outputs = {}
    for name, flags in {"keep-en": ("--keep", "en"), "min-score": ("--min-score", "0.9")}.items():
        outputs[name] = root / name
        result = curate("langid", str(corpus), "-o", str(outputs[name]), *LANGID, *flags)
        assert result.returncode == 0, result.stderr
    return outputs


# -- concurrent runs into one output -------------------------------------------------------------------------
def test_concurrent_identical_runs_one_is_refused_or_both_agree(corpus, reference, tmp_path):
    for attempt in range(3):
        out = tmp_path / f"out{attempt}"
        runs = [start("langid", str(corpus), "-o", str(out), *LANGID, "--keep", "en", "--workers", "2") for _ in range(2)]
        results = [(run.wait(TIMEOUT), run.communicate()[1]) for run in runs]
        codes = sorted(code for code, _ in results)
        assert codes in ([0, 0], [0, 4]), results
        for code, stderr in results:
            if code == 4:
                assert "another curate run is writing" in stderr
        assert shards(out) == shards(reference["keep-en"])
        assert_manifest_matches_files(out)
        assert not (out / ".tmp").exists()


def test_concurrent_different_runs_one_wins_and_the_other_is_refused(corpus, reference, tmp_path):
    for attempt in range(3):
        out = tmp_path / f"out{attempt}"
        flags = {"keep-en": ("--keep", "en"), "min-score": ("--min-score", "0.9")}
        runs = {name: start("langid", str(corpus), "-o", str(out), *LANGID, *f) for name, f in flags.items()}
        results = {name: (run.wait(TIMEOUT), run.communicate()[1]) for name, run in runs.items()}
        winners = [name for name, (code, _) in results.items() if code == 0]
        assert len(winners) == 1, results
        loser = next(name for name in results if name != winners[0])
        assert results[loser][0] == 4 and "different" in results[loser][1], results[loser]
        assert shards(out) == shards(reference[winners[0]])
        assert_manifest_matches_files(out)


def test_array_tasks_still_share_one_output(corpus, reference, tmp_path):
    out = tmp_path / "out"
    runs = [
        start("langid", str(corpus), "-o", str(out), *LANGID, "--keep", "en", "--shard-index", str(i), "--num-shards", "2")
        for i in range(2)
    ]
    results = [(run.wait(TIMEOUT), run.communicate()[1]) for run in runs]
    assert [code for code, _ in results] == [0, 0], results
    assert shards(out) == shards(reference["keep-en"])
    assert_manifest_matches_files(out)


def test_a_second_run_of_the_same_task_is_refused_while_the_first_runs(corpus, tmp_path):
    out = tmp_path / "out"
    first = OutputDir(out)
    first.prepare({"stage": "langid", "parameters": {}, "inputs": [], "units": []}, overwrite=False)
    result = curate("langid", str(corpus), "-o", str(out), *LANGID)  # this test process holds task 0 of 1
    assert result.returncode == 4
    assert "another curate run is writing task 0 of 1 of this output" in result.stderr
    del first  # the run is over: its locks go with it
    again = curate("langid", str(corpus), "-o", str(out), *LANGID, "--overwrite")
    assert again.returncode == 0, again.stderr


def test_leftover_cleanup_keeps_the_temporary_files_of_live_writers(tmp_path):
    out = OutputDir(tmp_path / "out")
    (out.path / ".tmp").mkdir(parents=True)
    live = out.path / ".tmp" / temp_name("part-00000.parquet")  # this process: alive
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(finished.stdout)
    dead = out.path / ".tmp" / temp_name("part-00000.parquet").replace(f".{os.getpid()}.", f".{dead_pid}.")
    live.write_bytes(b"being written")
    dead.write_bytes(b"left by a killed run")
    out.discard_units([0])
    assert live.exists() and not dead.exists()


# -- kill -9 ----------------------------------------------------------------------------------------------
def _descendants(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with open(task / "children") as fh:
            for child in map(int, fh.read().split()):
                found |= {child} | _descendants(child)
    return found


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads process trees from /proc")
def test_kill_9_leaves_only_complete_shards_and_no_workers_and_the_rerun_is_identical(corpus, reference, tmp_path):
    out = tmp_path / "out"
    args = ("langid", str(corpus), "-o", str(out), *LANGID, "--keep", "en", "--workers", "2")
    run = subprocess.Popen([*CURATE, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    progress = out / "_progress"
    wait_for(lambda: progress.is_dir() and len(list(progress.iterdir())) >= 3, "3 finished units")
    children = _descendants(run.pid)
    os.kill(run.pid, signal.SIGKILL)
    run.wait(TIMEOUT)
    assert children, "the run had no worker processes"
    try:
        wait_for(lambda: not any(_alive(pid) for pid in children), "the workers to die with their parent", 10)
    finally:
        for pid in filter(_alive, children):  # what a failing run left behind
            os.kill(pid, signal.SIGKILL)
    assert not (out / "_manifest.json").exists()
    expected = shards(reference["keep-en"])
    visible = shards(out)
    assert len(visible) < len(expected)
    for name, checksum in visible.items():
        assert pq.read_table(out / name).num_rows >= 0 and checksum == expected[name]
    result = curate(*args)
    assert result.returncode == 0, result.stderr
    assert shards(out) == expected
    assert_manifest_matches_files(out)


# -- text column types, mixed schemas, column selection, empty inputs ------------------------------------------
def invoke(*args: str):
    """The CLI in this process (fast): exit code and what went to stdout and stderr."""
    from typer.testing import CliRunner

    from curate.cli.main import app

    return CliRunner().invoke(app, list(args))


TEXT_TYPES = {
    "string": pa.string(),
    "large_string": pa.large_string(),
    "string_view": pa.string_view(),
    "dictionary": pa.dictionary(pa.int32(), pa.string()),
}


@pytest.mark.parametrize("stage", ["langid", "quality"])
@pytest.mark.parametrize("kind", list(TEXT_TYPES))
def test_every_string_type_is_a_text_column(stage, kind, tmp_path):
    from curate.sample import generate

    table = generate(300, seed=5).select(["id", "text"])
    text = table["text"].cast(pa.string())
    text = text.dictionary_encode() if kind == "dictionary" else text.cast(TEXT_TYPES[kind])
    path = tmp_path / "in.parquet"
    pq.write_table(table.set_column(1, "text", text), path)
    assert pq.read_schema(path).field("text").type == TEXT_TYPES[kind]
    result = invoke(stage, str(path), "-o", str(tmp_path / "out"), "-q", "--json")
    assert result.exit_code == 0, result.output
    out = pq.read_table(tmp_path / "out")
    assert out.schema.field("text").type == pa.string() and json.loads(result.stdout)["docs_in"] == 300


def test_polars_parquet_goes_through_langid(tmp_path):
    import polars as pl

    pl.DataFrame({"id": ["a", "b"], "text": ["The cat sat on the mat today.", "Der Hund schläft im Garten."]}).write_parquet(
        tmp_path / "in.parquet"
    )
    result = invoke("langid", str(tmp_path / "in.parquet"), "-o", str(tmp_path / "out"), "-q")
    assert result.exit_code == 0, result.output
    assert pq.read_table(tmp_path / "out")["lang"].to_pylist() == ["en", "de"]


def _mixed_inputs(root: Path) -> list[Path]:
    a = pa.table({"id": ["a1", "a2"], "text": ["first doc here", "second doc"], "score": pa.array([1, 2], pa.int32())})
    b = pa.table({
        "id": ["b1"], "text": pa.array(["third doc"], pa.large_string()),
        "score": pa.array([3], pa.int64()), "url": ["https://b"],
    })
    root.mkdir()
    pq.write_table(a, root / "a.parquet")
    pq.write_table(b, root / "b.parquet")
    (root / "c.jsonl").write_text(json.dumps({"id": "c1", "text": "fourth doc", "lang_hint": "en"}) + "\n")
    return [root / "a.parquet", root / "b.parquet", root / "c.jsonl"]


def test_inputs_with_different_columns_give_one_output_schema(tmp_path):
    import polars as pl

    _mixed_inputs(tmp_path / "in")
    result = invoke("langid", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-q", "--max-rows-per-shard", "1")
    assert result.exit_code == 0, result.output
    schemas = {pq.read_schema(p).remove_metadata() for p in (tmp_path / "out").glob("part-*.parquet")}
    assert len(schemas) == 1
    frame = pl.read_parquet(tmp_path / "out" / "*.parquet")
    assert frame["score"].to_list() == [1, 2, 3, None] and frame["score"].dtype == pl.Int64
    assert frame["url"].to_list() == [None, None, "https://b", None]
    assert frame["lang_hint"].to_list() == [None, None, None, "en"]


def test_columns_and_drop_columns_choose_the_pass_through_columns(tmp_path):
    _mixed_inputs(tmp_path / "in")
    kept = invoke("langid", str(tmp_path / "in"), "-o", str(tmp_path / "kept"), "-q", "--columns", "url")
    dropped = invoke("langid", str(tmp_path / "in"), "-o", str(tmp_path / "dropped"), "-q", "--drop-columns", "score,url")
    assert kept.exit_code == dropped.exit_code == 0, kept.output + dropped.output
    assert pq.read_table(tmp_path / "kept").column_names == ["id", "text", "url", "lang", "lang_score"]
    assert pq.read_table(tmp_path / "dropped").column_names == ["id", "text", "lang_hint", "lang", "lang_score"]
    unknown = invoke("langid", str(tmp_path / "in"), "-o", str(tmp_path / "x"), "--columns", "nope")
    assert unknown.exit_code == 2 and "--columns: no input has column(s) nope" in unknown.output


def test_a_real_type_conflict_names_both_files_and_the_column(tmp_path):
    pq.write_table(pa.table({"text": ["one doc"], "score": [1]}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"text": ["two doc"], "score": ["high"]}), tmp_path / "b.parquet")
    result = invoke("langid", str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet"), "-o", str(tmp_path / "out"))
    assert result.exit_code == 3
    assert "b.parquet, column 'score': type string does not fit type int64 of the same column in" in result.output
    assert "a.parquet" in result.output


def test_an_empty_stage_output_is_a_valid_input_for_the_next_stage(corpus, tmp_path):
    first = invoke("langid", str(corpus), "-o", str(tmp_path / "none"), "-q", "--min-score", "1.01")
    assert first.exit_code == 0, first.output
    assert pq.read_table(tmp_path / "none").num_rows == 0
    second = invoke("quality", str(tmp_path / "none"), "-o", str(tmp_path / "next"), "--json")
    assert second.exit_code == 0, second.output
    assert "no rows to process" in second.stderr
    assert json.loads(second.stdout)["docs_in"] == 0
    assert pq.read_table(tmp_path / "next").num_rows == 0
    third = invoke("langid", str(tmp_path / "next"), "-o", str(tmp_path / "third"), "-q")
    assert third.exit_code == 0, third.output


# -- closed pipes and full disks ---------------------------------------------------------------------------
def _with_closed_stdout(*args: str) -> tuple[int, str]:
    """Run curate with a stdout pipe whose reader is already gone (as after `| head` exits)."""
    read, write = os.pipe()
    os.close(read)
    try:
        result = subprocess.run([*CURATE, *args], stdout=write, stderr=subprocess.PIPE, text=True, timeout=TIMEOUT)
    finally:
        os.close(write)
    return result.returncode, result.stderr


@pytest.mark.parametrize(
    "args",
    [("langid", "{corpus}", "-o", "-", "-q"), ("stats", "{corpus}"), ("--help",), ("langid", "{corpus}", "-o", "-", "--json", "-q")],
    ids=["stage-to-stdout", "stats", "help", "json-summary"],
)
def test_a_closed_pipe_is_a_quiet_stop_with_status_141(corpus, args):
    code, stderr = _with_closed_stdout(*(a.format(corpus=corpus) for a in args))
    assert code == 141, stderr
    assert "internal error" not in stderr and "Traceback" not in stderr and "Exception ignored" not in stderr


def test_an_upstream_stage_stops_quietly_when_downstream_closes(corpus):
    upstream = subprocess.Popen([*CURATE, "langid", str(corpus), "-o", "-", "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert upstream.stdout.read(100)
    upstream.stdout.close()  # the reader goes away after the first line, as `head -1` does
    stderr = upstream.stderr.read().decode()
    assert upstream.wait(TIMEOUT) == 141 and stderr == ""


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("stage", [("langid",), ("dedup", "minhash"), ("pack", "--tokenizer", "{tokenizer}")])
def test_a_full_disk_names_the_path_and_exits_4(stage, corpus, tmp_path, monkeypatch):
    """ENOSPC from the Parquet writer (monkeypatched, so it runs everywhere)."""

    tokenizer = _tokenizer(corpus, tmp_path) if "pack" in stage else ""
    monkeypatch.setattr(pq.ParquetWriter, "write_table", _no_space)
    monkeypatch.setattr(pq.ParquetWriter, "write_batch", _no_space)
    out = tmp_path / "out"
    result = invoke(*(a.format(tokenizer=tokenizer) for a in stage), str(corpus), "-o", str(out), "-q")
    assert result.exit_code == 4, result.output
    assert f"{out}" in result.output and "no space left on device" in result.output


def _tokenizer(corpus: Path, tmp_path: Path) -> str:
    result = invoke("tokenizer", "train", str(corpus), "-o", str(tmp_path / "tok.json"), "--vocab-size", "300")
    assert result.exit_code == 0, result.output
    return str(tmp_path / "tok.json")


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    except FileNotFoundError:
        return False
    return done.returncode == 0


@pytest.mark.parametrize("stage", [("langid",), ("dedup", "minhash")])
def test_a_full_tmpfs_names_the_path_and_exits_4(stage, corpus, tmp_path):
    mount = tmp_path / "small"
    if not _mount_tmpfs(mount, "96k"):
        pytest.skip("cannot mount a tmpfs here (needs root and mount(8))")
    try:
        result = curate(*stage, str(corpus), "-o", str(mount / "out"), "-q")
    finally:
        subprocess.run(["umount", str(mount)], check=True)
    assert result.returncode == 4, result.stderr
    assert f"{mount}/out" in result.stderr and "no space left on device" in result.stderr


# -- truncated compressed files, type changes in JSON lines --------------------------------------------------
def _jsonl(rows: list[dict]) -> bytes:
    return b"".join(json.dumps(row).encode() + b"\n" for row in rows)


@pytest.mark.parametrize("compression", ["gz", "zst"])
def test_a_truncated_compressed_file_is_bad_input_naming_the_file(compression, tmp_path):
    import zstandard

    data = _jsonl([{"id": i, "text": f"document number {i} " * 3} for i in range(3000)])
    packed = gzip.compress(data) if compression == "gz" else zstandard.ZstdCompressor().compress(data)
    path = tmp_path / f"in.jsonl.{compression}"
    path.write_bytes(packed[: len(packed) // 2])
    failed = invoke("langid", str(path), "-o", str(tmp_path / "fail"))
    assert failed.exit_code == 3 and f"{path}: truncated or corrupt" in failed.output, failed.output
    skipped = invoke("langid", str(path), "-o", str(tmp_path / "skip"), "--on-error", "skip", "--json", "-q")
    assert skipped.exit_code == 0, skipped.output
    summary = json.loads(skipped.stdout)
    assert summary["errors_skipped"] >= 1 and summary["docs_in"] < 3000
    errors = [json.loads(line) for line in (tmp_path / "skip" / "_errors.jsonl").read_text().splitlines()]
    assert any(e["path"] == str(path) and "truncated" in e["error"] for e in errors)


@pytest.mark.parametrize("where", ["first rows", "later rows"])
def test_a_type_change_in_json_lines_is_exit_3_naming_line_and_column(where, tmp_path):
    rows = [{"id": i, "text": "a document", "count": i} for i in range(20)]
    rows[12]["count"] = "many"
    (tmp_path / "in.jsonl").write_bytes(_jsonl(rows))
    batch = "100" if where == "first rows" else "5"  # the first batch of rows fixes the file's columns
    result = invoke("langid", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out"), "--batch-size", batch)
    assert result.exit_code == 3, result.output
    assert "in.jsonl, line 13, column 'count': string here, int64 in" in result.output.replace("number", "int64")


def test_int_then_float_in_json_lines_is_promoted(tmp_path):
    rows = [{"id": i, "text": "a document", "score": i} for i in range(6)] + [{"id": 6, "text": "x", "score": 0.5}]
    (tmp_path / "in.jsonl").write_bytes(_jsonl(rows))
    result = invoke("langid", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out"), "-q")
    assert result.exit_code == 0, result.output
    assert pq.read_table(tmp_path / "out")["score"].to_pylist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 0.5]


# -- where inputs and output are, and how they are spelled ----------------------------------------------------
def test_an_output_that_overlaps_an_input_is_refused(corpus, tmp_path):
    first = invoke("langid", str(corpus.parent), "-o", str(tmp_path / "out"), "-q")
    assert first.exit_code == 0, first.output
    for inputs, out in [
        ([str(corpus.parent)], str(corpus.parent)),  # the same directory
        ([str(corpus.parent)], str(corpus.parent / "lid")),  # inside an input
        ([str(corpus), str(tmp_path / "out")], str(tmp_path / "out")),  # --overwrite would read its own shards
    ]:
        result = invoke("langid", *inputs, "-o", out, "--overwrite")
        assert result.exit_code == 2 and "a run would read its own output" in result.output, result.output
    assert not (corpus.parent / "lid").exists()


def test_run_identity_ignores_path_spelling_cwd_and_order(tmp_path, monkeypatch):
    from curate.sample import generate

    table = generate(600, seed=9)
    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        pq.write_table(table.slice(200 * i, 200), data / f"s{i}.parquet")
    (tmp_path / "link").symlink_to(data)
    out = tmp_path / "out"
    monkeypatch.chdir(tmp_path)
    first = invoke("langid", "data/s2.parquet", "data/s0.parquet", "data/s1.parquet", "-o", "out", "-q",
                   "--max-rows-per-shard", "100", "--shard-index", "0", "--num-shards", "2")
    assert first.exit_code == 0, first.output
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    second = invoke("langid", str(tmp_path / "link") + "/", "-o", f"{out}/", "--json", "-q",
                    "--max-rows-per-shard", "100", "--shard-index", "1", "--num-shards", "2")
    assert second.exit_code == 0, second.output
    assert json.loads(second.stdout)["complete"]
    assert_manifest_matches_files(out)


def test_an_input_rewritten_with_the_same_size_is_noticed(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_bytes(_jsonl([{"id": i, "text": f"the cat number {i} sat on the mat"} for i in range(20)]))
    assert invoke("langid", str(source), "-o", str(tmp_path / "out"), "-q").exit_code == 0
    info = source.stat()
    source.write_bytes(source.read_bytes().replace(b"cat", b"dog"))  # same size, new content
    os.utime(source, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000_000))
    rerun = invoke("langid", str(source), "-o", str(tmp_path / "out"))
    assert rerun.exit_code == 4 and f"input {source} changed since" in rerun.output, rerun.output


def test_a_failed_run_does_not_block_a_corrected_rerun(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_bytes(_jsonl([{"id": 1, "text": "fine text here"}, {"id": 2, "text": None}]))
    failed = invoke("langid", str(source), "-o", str(tmp_path / "out"))
    assert failed.exit_code == 3 and (tmp_path / "out" / "_plan.json").exists()
    corrected = invoke("langid", str(source), "-o", str(tmp_path / "out"), "--on-error", "skip", "-q")
    assert corrected.exit_code == 0, corrected.output
    assert pq.read_table(tmp_path / "out")["id"].to_pylist() == [1]


# -- bytes, leftovers and summaries --------------------------------------------------------------------------
def test_batch_size_does_not_change_the_bytes_and_no_tmp_is_left(corpus, tmp_path):
    for batch in ("50", "4000"):
        result = invoke("langid", str(corpus), "-o", str(tmp_path / batch), "-q", "--batch-size", batch,
                        "--max-rows-per-shard", "4000")
        assert result.exit_code == 0, result.output
        assert not (tmp_path / batch / ".tmp").exists()
    assert shards(tmp_path / "50") == shards(tmp_path / "4000")


def test_summaries_say_what_happened(corpus, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_bytes(_jsonl([{"id": 1, "text": "The cat sat on the mat."}, {"id": 2, "text": None}]))
    skipped = invoke("langid", str(source), "-o", str(tmp_path / "out"), "--on-error", "skip")
    assert skipped.exit_code == 0 and "1 bad rows or files skipped" in skipped.stderr, skipped.output
    calibrated = invoke("langid", "calibrate", str(corpus), "-o", str(tmp_path / "t.yaml"))
    assert calibrated.exit_code == 0 and "langid calibrate: languages: " in calibrated.stderr, calibrated.output


def test_a_summary_with_many_reasons_stays_readable():
    from curate.cli.common import describe_summary

    removed = {f"reason_{i:02d}": i for i in range(30)}
    line = describe_summary({"stage": "quality", "output": "o", "docs_in": 500, "docs_out": 500, "removed": removed})
    assert "reason_29 29, reason_28 28, reason_27 27, reason_26 26, reason_25 25, … 25 more" in line
    assert "reason_00" not in line


def test_every_stage_command_refuses_shards_inside_an_input_but_a_file_output_may_sit_there(tmp_path):
    from curate.sample import generate

    data = tmp_path / "data"
    data.mkdir()
    pq.write_table(generate(300, seed=3), data / "a.parquet")
    for command in (["dedup", "exact"], ["dedup", "minhash"], ["pii"], ["quality"]):
        result = invoke(*command, str(data), "-o", str(data / "out"), "-q")
        assert result.exit_code == 2 and "a run would read its own output" in result.output, (command, result.output)
    assert not (data / "out").exists()
    result = invoke("tokenizer", "train", str(data), "-o", str(data / "tokenizer.json"), "--vocab-size", "300", "-q")
    assert result.exit_code == 0, result.output
