"""`curate validate`: every rule on data with known violations, the exit codes, the three formats, and the
bounded-memory duplicate finder (spilled to disk) against an exact in-memory count."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from conftest import write_parquet
from typer.testing import CliRunner

from curate.cli.main import app
from curate.stages.dedup.store import hash128
from curate.stages.validate import DuplicateFinder

runner = CliRunner()


@pytest.fixture
def flawed(tmp_path: Path) -> Path:
    """Two Parquet files with one of each problem, and a JSON-lines file with a null text."""
    first = pa.table({
        "id": ["a", "b", "c", "d", "e"],
        "text": ["the cat sat on the mat", "hello world", "hello world", "   ", "ein Hund"],
        "lang": ["en", "en", "en", "en", "de"],
        "quality_score": [0.9, 0.8, 0.7, 0.1, None],
    })
    second = pa.table({
        "id": ["f", "a", None],
        "text": ["the cat sat on the mat", "un chat noir dans la nuit", "short"],
        "lang": ["en", "fr", "en"],
        "quality_score": [0.95, 0.6, 0.55],
    })
    write_parquet(tmp_path / "data" / "part-0.parquet", first)
    write_parquet(tmp_path / "data" / "part-1.parquet", second)
    (tmp_path / "data" / "part-2.jsonl").write_text(
        '{"id": "g", "text": "a line of text", "lang": "en", "quality_score": 1.0}\n'
        '{"id": "h", "text": null, "lang": "en", "quality_score": 1.0}\n'
    )
    return tmp_path / "data"


def _run(*args: str):
    return runner.invoke(app, ["validate", *args])


def _rules(output: str) -> dict[str, dict]:
    return {r["rule"]: r for r in json.loads(output)["rules"]}


def test_every_rule_measures_its_violations(flawed: Path) -> None:
    result = _run(str(flawed), "--unique-ids", "--max-duplicate-ratio", "0.1", "--min-chars", "6",
                  "--languages", "en,de", "--min-language-share", "en:0.7,de:0.1", "--min-rows", "20",
                  "--check", "quality_score>=0.5@0.8", "--required-columns", "id:string,quality_score:float,url",
                  "--json")
    assert result.exit_code == 1, result.output
    rules = _rules(result.stdout)
    assert rules["rows"]["measured"] == 10 and not rules["rows"]["passed"]
    assert rules["text_not_null"]["measured"] == 1
    assert rules["text_not_null"]["sample_ids"] == [f"{flawed / 'part-2.jsonl'} line 2"]
    assert rules["text_not_empty"]["measured"] == 1 and rules["text_not_empty"]["sample_ids"] == ["d"]
    # two exact repeats among 9 non-null texts: "hello world" (c) and "the cat sat on the mat" (f)
    assert rules["duplicate_ratio"]["measured"] == pytest.approx(2 / 9, abs=1e-6)
    assert rules["duplicate_ratio"]["sample_ids"] == ["c (same text as b)", "f (same text as a)"]
    # id "a" repeats; one id is null
    assert rules["unique_ids"]["measured"] == 2
    assert rules["unique_ids"]["sample_ids"][0] == "a (id also on a)"
    assert any("null id" in s for s in rules["unique_ids"]["sample_ids"])
    assert rules["languages"]["measured"] == 1 and rules["languages"]["sample_ids"] == ["a (lang=fr)"]
    assert rules["language_share:en"]["measured"] == pytest.approx(7 / 9, abs=1e-6)
    assert rules["language_share:en"]["passed"] and rules["language_share:de"]["passed"]
    assert rules["chars"]["measured"] == 2  # "   " and "short"
    check = rules["check:quality_score>=0.5"]
    assert check["measured"] == pytest.approx(7 / 9, abs=1e-6) and not check["passed"]
    assert check["sample_ids"] == ["d (quality_score=0.1)", "e (quality_score=nan)"]
    assert rules["required_columns"]["measured"] == 1  # url missing (once, though in every file)
    assert rules["required_columns"]["sample_ids"] == [f"missing column 'url' ({flawed / 'part-0.parquet'})"]


def test_passing_rules_exit_zero_and_junit_lists_each_rule(flawed: Path, tmp_path: Path) -> None:
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text("allow-null-text: true\nallow_empty_text: true\nmin_language_share: {en: 0.5}\n"
                          "check: ['quality_score >= 0.05 @ 0.8']\nmax_rows: 100\n")
    result = _run(str(flawed), "--rules", str(rules_file), "--format", "junit")
    assert result.exit_code == 0, result.output
    root = ET.fromstring(result.stdout)
    cases = root.findall("./testsuite/testcase")
    assert [c.get("name") for c in cases] == ["rows", "language_share:en", "check:quality_score>=0.05"]
    assert root.get("failures") == "0" and not root.findall(".//failure")

    # a flag overrides the YAML file: now a rule fails, and JUnit reports it as a failure with the samples
    result = _run(str(flawed), "--rules", str(rules_file), "--max-rows", "5", "--format", "junit")
    assert result.exit_code == 1
    failures = ET.fromstring(result.stdout).findall(".//testcase[@name='rows']/failure")
    assert len(failures) == 1 and "measured 10" in failures[0].get("message")


def test_text_format_names_failures_with_samples(flawed: Path) -> None:
    result = _run(str(flawed), "--max-duplicate-ratio", "0")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith("curate validate: FAILED")
    failing = [line for line in lines if line.startswith("FAIL")]
    assert {line.split()[1] for line in failing} == {"text_not_null", "text_not_empty", "duplicate_ratio"}
    assert any("c (same text as b)" in line for line in lines)


@pytest.mark.parametrize("args", [
    ["--check", "quality_score >> 3"],
    ["--min-language-share", "en=0.5"],
    ["--min-tokens", "5"],
    ["--required-columns", "id:uuid"],
    ["--min-chars", "10", "--max-chars", "5"],
])
def test_bad_rules_are_usage_errors(flawed: Path, args: list[str]) -> None:
    result = _run(str(flawed), *args)
    assert result.exit_code == 2
    assert "curate validate: error:" in result.output


_ALIAS_BOMB = "[&a0 [x, x, x, x, x, x, x, x, x], " + ", ".join(
    f"&a{level} [" + ", ".join([f"*a{level - 1}"] * 9) + "]" for level in range(1, 9)) + "]"


def test_unreadable_input_exits_3_naming_the_file(tmp_path: Path) -> None:
    """Bad input is exit 3 as for every command (README's exit codes); 2 stays for usage errors, 1 for rules."""
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    (tmp_path / "broken.jsonl").write_text('{"id": "a", "text": "fine"}\n{"id": "b", "text": \n')
    write_parquet(tmp_path / "untexted.parquet", pa.table({"body": ["no text column"]}))
    for name in ("missing.parquet", "broken.parquet", "broken.jsonl", "untexted.parquet"):
        result = _run(str(tmp_path / name))
        assert result.exit_code == 3, (name, result.output)
        assert name in result.output and "Traceback" not in result.output
    (tmp_path / "rules.yaml").write_text("languages: " + _ALIAS_BOMB + "\n")  # refused before anything walks it
    assert _run(str(tmp_path / "untexted.parquet"), "--rules", str(tmp_path / "rules.yaml")).exit_code == 2


def _spilled_and_exact(keys: pa.Array, directory: Path, memory_rows: int):
    finder = DuplicateFinder(directory, memory_rows)
    hi, lo = hash128(keys)
    for start in range(0, len(keys), 997):  # batches of odd size
        finder.add(hi[start : start + 997], lo[start : start + 997], np.arange(start, min(start + 997, len(keys))))
    return finder


def test_duplicate_finder_spills_to_disk_and_stays_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    values = rng.integers(0, 6_000, size=20_000)
    values[-3000:] = 7  # one key repeated thousands of times: a partition that cannot be split
    keys = pa.array([f"doc {v}" for v in values])
    exact = len(keys) - pl.Series(values).n_unique()
    spilled = _spilled_and_exact(keys, tmp_path / "spill", 1000)
    found = spilled.finish()
    assert spilled.spilled and found.count == exact
    in_memory = _spilled_and_exact(keys, tmp_path / "memory", 1_000_000).finish()
    assert in_memory.count == exact and in_memory.samples == found.samples
    for dup, first in found.samples:  # each sample is a later row with the same key as its first copy
        assert values[dup] == values[first] and first < dup
        assert first == int(np.flatnonzero(values == values[dup])[0])


def test_duplicates_on_real_text_match_polars(shared_data: Path) -> None:
    path = shared_data / "udhr" / "paragraphs.parquet"
    frame = pl.read_parquet(path, columns=["text", "lang"])
    expected = frame.height - frame["text"].n_unique()
    result = _run(str(path), "--max-duplicate-ratio", "0.5", "--unique-ids", "--memory-rows", "5000",
                  "--language-column", "lang", "--min-language-share", "en:0.001", "--json")
    rules = _rules(result.stdout)
    assert rules["duplicate_ratio"]["measured"] == pytest.approx(expected / frame.height, abs=1e-6)
    assert rules["duplicate_ratio"]["detail"].startswith(f"{expected:,} of {frame.height:,}")
    assert rules["unique_ids"]["passed"]
    english = (frame["lang"] == "en").sum()
    assert rules["language_share:en"]["measured"] == pytest.approx(english / frame.height, abs=1e-6)
    assert result.exit_code == 0
