"""Faults users met in langid, dedup and pack, each reproduced through the CLI: what curate must do instead."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from conftest import write_parquet
from typer.testing import CliRunner

from curate.cli.main import app

runner = CliRunner()
SHARED_TEXT = "the quick brown fox jumps over the lazy dog and runs far away into the green forest"


@pytest.mark.parametrize("command", [["minhash"], ["exact"]])
def test_dedup_refuses_a_shared_id_naming_file_row_and_id(tmp_path, command):
    """Document b.parquet row 0 is unique but has the id of a removed copy: it must never be dropped."""
    write_parquet(tmp_path / "in" / "a.parquet", pa.table({"id": ["a", "b"], "text": [SHARED_TEXT, SHARED_TEXT]}))
    write_parquet(tmp_path / "in" / "b.parquet", pa.table({
        "id": ["b", "c"],
        "text": ["a unique paragraph about rivers, bridges and the towns along them",
                 "another document with words of its own and nothing shared at all"],
    }))
    result = runner.invoke(app, ["dedup", *command, str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-q"])
    assert result.exit_code == 3, result.output
    message = result.output.strip().splitlines()[-1]
    assert f"{tmp_path / 'in' / 'b.parquet'}, row 0, column 'id': id 'b'" in message
    assert f"{tmp_path / 'in' / 'a.parquet'}, row 1" in message and "ids must be unique" in message
    assert not (tmp_path / "out" / "_manifest.json").exists()


def test_dedup_shared_id_in_json_lines_names_the_line(tmp_path):
    lines = [{"id": "x", "text": SHARED_TEXT}, {"id": "y", "text": "other words here"},
             {"id": "x", "text": "a third text"}]
    source = tmp_path / "docs.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = runner.invoke(app, ["dedup", "minhash", str(source), "-o", str(tmp_path / "out"), "-q"])
    assert result.exit_code == 3, result.output
    assert f"{source}, line 3, column 'id': id 'x' is also the id of {source}, line 1" in result.output
