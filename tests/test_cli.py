"""The command line as users call it: pipelines on stdin/stdout, --json, exit codes, help, the demo."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from conftest import write_parquet

CURATE = [sys.executable, "-m", "curate"]


def curate(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*CURATE, *args], input=stdin, capture_output=True, timeout=300)


def test_stdin_to_stdout_pipeline():
    lines = [
        json.dumps({"id": str(i), "text": t, "n": i})
        for i, t in enumerate(["Guten Morgen, wie geht es dir heute?", "Good morning, how are you today?"])
    ]
    compressed = zstandard.ZstdCompressor().compress(("\n".join(lines) + "\n").encode())
    result = curate(
        "langid", "-", "-o", "-", "--keep", "en", stdin=compressed
    )  # compression is sniffed on stdin
    assert result.returncode == 0, result.stderr.decode()
    rows = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert [(r["id"], r["lang"], r["n"]) for r in rows] == [("1", "en", 1)]


def test_json_summary_and_resume(small_corpus, tmp_path):
    out = tmp_path / "out"
    first = curate("langid", str(small_corpus), "-o", str(out), "--json", "--max-rows-per-shard", "200")
    assert first.returncode == 0, first.stderr.decode()
    summary = json.loads(first.stdout)
    assert summary["docs_in"] == 1200 and summary["units"] == 6 and summary["complete"]
    assert set(summary["by_lang"]) >= {"en", "de", "fr"}
    second = json.loads(
        curate("langid", str(small_corpus), "-o", str(out), "--json", "--max-rows-per-shard", "200").stdout
    )
    assert second["units_already_done"] == 6 and second["units_processed"] == 0


def test_exit_codes_and_one_line_errors(tmp_path):
    write_parquet(tmp_path / "in.parquet", pa.table({"body": ["no text column"]}))
    bad = curate("langid", str(tmp_path / "in.parquet"), "-o", str(tmp_path / "out"))
    assert bad.returncode == 3
    message = bad.stderr.decode().strip()
    assert (
        message.count("\n") == 0
        and "in.parquet: missing text column 'text'" in message
        and "Traceback" not in message
    )

    usage = curate("langid", str(tmp_path / "in.parquet"), "-o", str(tmp_path / "out"), "--on-error", "maybe")
    assert usage.returncode == 2
    missing = curate("langid", str(tmp_path / "nope.parquet"), "-o", str(tmp_path / "out"))
    assert missing.returncode == 3 and "no such file" in missing.stderr.decode()

    write_parquet(tmp_path / "ok.parquet", pa.table({"text": ["hello world"]}))
    assert curate("langid", str(tmp_path / "ok.parquet"), "-o", str(tmp_path / "o2")).returncode == 0
    refused = curate("langid", str(tmp_path / "ok.parquet"), "-o", str(tmp_path / "o2"), "--min-score", "0.5")
    assert refused.returncode == 4 and "--overwrite" in refused.stderr.decode()


def test_calibrate_writes_loadable_yaml(small_corpus, tmp_path):
    result = curate(
        "langid", "calibrate", str(small_corpus), "-o", str(tmp_path / "t.yaml"), "--min-docs", "50"
    )
    assert result.returncode == 0, result.stderr.decode()
    import yaml

    thresholds = yaml.safe_load((tmp_path / "t.yaml").read_text())
    assert "en" in thresholds and 0.3 <= thresholds["en"] <= 0.9
    run = curate(
        "langid", str(small_corpus), "-o", str(tmp_path / "out"), "--thresholds", str(tmp_path / "t.yaml")
    )
    assert run.returncode == 0, run.stderr.decode()


def test_demo_runs_outside_the_checkout_and_every_step_leaves_output(tmp_path):
    """`curate demo` from a directory outside the repository (the recipe ships in the package): every stage's
    output is complete and non-empty, and the report exists."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run([*CURATE, "demo", "-o", "demo", "--docs", "300"], cwd=elsewhere, capture_output=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr.decode()
    text = result.stdout.decode()
    out = elsewhere / "demo"
    stages = ["01-langid", "02-quality", "03-dedup-minhash", "04-mix-apply", "05-pack"]
    for stage in stages:
        assert stage.split("-", 1)[1] in text and "docs in" in text
        manifest = json.loads((out / stage / "_manifest.json").read_text())
        assert manifest["rows"] > 0 and manifest["shards"], stage
        assert all((out / stage / shard["name"]).stat().st_size > 0 for shard in manifest["shards"]), stage
    assert pq.read_table(Path(out / "01-langid")).num_rows > 200
    report = (out / "report.html").read_text()
    assert len(report) > 10_000 and all(stage in report for stage in stages)


def _command_paths() -> list[list[str]]:
    """Every command and command group of `curate`, as argument lists (the root is [])."""
    from typer.main import get_command

    from curate.cli.main import app

    def walk(command, path: list[str]):
        yield path
        if hasattr(command, "list_commands"):
            context = command.context_class(command)
            for name in command.list_commands(context):
                yield from walk(command.get_command(context, name), [*path, name])

    return list(walk(get_command(app), []))


COMMAND_PATHS = _command_paths()


@pytest.mark.parametrize("path", COMMAND_PATHS, ids=lambda p: " ".join(p) or "curate")
def test_every_help_shows_an_example(path):
    """The README promises examples in every command's --help: an indented line that runs `curate …`."""
    from typer.testing import CliRunner

    from curate.cli.main import app

    result = CliRunner().invoke(app, [*path, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert re.search(r"^\s+(\S+ \| )?curate [a-z]", result.output, re.M), result.output


def jq_path(data, expression: str) -> list:
    """What jq prints for a path made of ``.key`` and ``[]`` steps (``.pieces[].state``), with jq's errors as
    Python's: ``.[]`` on an object gives its values, and indexing a list by name fails."""
    values = [data]
    for key, each in re.findall(r"\.(\w*)(\[\])?", expression):
        if key:
            values = [value[key] if isinstance(value, dict) else [][key] for value in values]
        if each:
            values = [item for value in values for item in (value.values() if isinstance(value, dict) else value)]
    return values


def test_status_help_jq_example_works(small_corpus, tmp_path):
    from typer.testing import CliRunner

    from curate.cli.main import app

    help_text = CliRunner().invoke(app, ["status", "--help"], terminal_width=200).output
    expression = re.search(r"--json \| jq '([^']+)'", help_text).group(1)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"inputs: [{small_corpus}]\nstages:\n  - langid: {{}}\n  - quality: {{}}\n")
    written = curate("run", str(recipe), "--work-dir", str(tmp_path / "w"), "--emit-slurm", str(tmp_path / "s"))
    assert written.returncode == 0, written.stderr.decode()
    status = curate("status", str(tmp_path / "w"), "--json")
    states = jq_path(json.loads(status.stdout), expression)
    assert states == ["incomplete", "waiting"]
    if shutil.which("jq"):
        piped = subprocess.run(["jq", "-c", expression], input=status.stdout, capture_output=True, timeout=30)
        assert piped.returncode == 0 and [json.loads(line) for line in piped.stdout.splitlines()] == states
