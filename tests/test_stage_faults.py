"""Faults users met in langid, dedup and pack, each reproduced through the CLI: what curate must do instead."""

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


@pytest.fixture
def three_languages(tmp_path) -> Path:
    return write_parquet(tmp_path / "docs.parquet", pa.table({
        "id": ["en", "fr", "de"],
        "lang": ["x-en", "x-fr", "x-de"],
        "text": ["This is an English sentence about the weather and the trains today.",
                 "Ceci est une phrase en français sur la météo et les trains d'aujourd'hui.",
                 "Dies ist ein deutscher Satz über das Wetter und die Züge von heute."],
    }))


def test_langid_keep_maps_iso_639_3_to_the_model_code_and_says_so(three_languages, tmp_path):
    result = runner.invoke(app, ["langid", str(three_languages), "-o", str(tmp_path / "out"), "--keep", "eng,fra"])
    assert result.exit_code == 0, result.output
    assert "--keep eng: using the model's code 'en'" in result.output
    assert sorted(pl.read_parquet(tmp_path / "out" / "part-00000.parquet")["id"]) == ["en", "fr"]


def test_langid_keep_refuses_codes_the_model_does_not_know(three_languages, tmp_path):
    result = runner.invoke(app, ["langid", str(three_languages), "-o", str(tmp_path / "out"), "--keep", "engl,qqq"])
    assert result.exit_code == 2, result.output
    assert "lid.176.ftz has no language 'engl' (did you mean en" in result.output and "'qqq'" in result.output
    assert not (tmp_path / "out").exists()


def test_langid_warns_when_the_filter_keeps_nothing(three_languages, tmp_path):
    result = runner.invoke(app, ["langid", str(three_languages), "-o", str(tmp_path / "out"), "--keep", "ja"])
    assert result.exit_code == 0, result.output
    assert "warning: no document kept of 3 (removed: lang_not_kept 3)" in result.output


def test_langid_keeps_an_input_lang_column_as_lang_original(three_languages, tmp_path):
    result = runner.invoke(app, ["langid", str(three_languages), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "already had a 'lang' column; it is kept as 'lang_original'" in result.output
    out = pl.read_parquet(tmp_path / "out" / "part-00000.parquet").sort("id")
    assert out["lang_original"].to_list() == ["x-de", "x-en", "x-fr"]
    assert out["lang"].to_list() == ["de", "en", "fr"]
    # a second langid keeps the first original
    result = runner.invoke(app, ["langid", str(tmp_path / "out"), "-o", str(tmp_path / "again")])
    assert result.exit_code == 0 and "lang_original" not in result.output
    again = pl.read_parquet(tmp_path / "again" / "part-00000.parquet").sort("id")
    assert again["lang_original"].to_list() == ["x-de", "x-en", "x-fr"]
