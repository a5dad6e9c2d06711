"""Faults users hit in the shared I/O layer, each reproduced with real processes and files.

Concurrent runs into one output, kill -9 in the middle of a run, inputs that change or overlap the output,
unusual but valid text column types, truncated compressed files, type changes in JSON lines, a full disk,
closed pipes, path spelling, mixed schemas across inputs, and failed runs followed by a corrected one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

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
        assert results[loser][0] == 4 and "--overwrite" not in results[loser][1].split("another curate run")[0]
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
    OutputDir(out).prepare({"stage": "langid", "parameters": {}, "inputs": [], "units": []}, overwrite=False)
    result = curate("langid", str(corpus), "-o", str(out), *LANGID)  # this test process holds task 0 of 1
    assert result.returncode == 4
    assert "another curate run is writing task 0 of 1 of this output" in result.stderr


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
    run = start(*args)
    progress = out / "_progress"
    wait_for(lambda: progress.is_dir() and len(list(progress.iterdir())) >= 3, "3 finished units")
    children = _descendants(run.pid)
    os.kill(run.pid, signal.SIGKILL)
    run.wait(TIMEOUT)
    run.communicate()
    assert children, "the run had no worker processes"
    wait_for(lambda: not any(_alive(pid) for pid in children), "the workers to die with their parent", 10)
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
