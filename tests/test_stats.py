"""`curate stats`: totals against pyarrow, quantiles from the bounded histogram against numpy, the formats."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from conftest import write_parquet
from typer.testing import CliRunner

from curate.cli.main import app
from curate.stages.corpus_stats import LengthHistogram

runner = CliRunner()


def test_histogram_quantiles_within_bin_width_and_mergeable() -> None:
    rng = np.random.default_rng(0)
    lengths = np.concatenate([rng.integers(0, 900, 5_000), rng.lognormal(8, 1.5, 50_000).astype(np.int64)])
    whole, halves = LengthHistogram(), [LengthHistogram(), LengthHistogram()]
    whole.add(lengths)
    halves[0].add(lengths[::2])
    halves[1].add(lengths[1::2])
    halves[0].merge(halves[1])
    assert np.array_equal(whole.counts, halves[0].counts) and whole.max == halves[0].max
    for q in (0.01, 0.05, 0.5, 0.9, 0.99):
        exact = float(np.quantile(lengths, q, method="inverted_cdf"))
        assert whole.quantile(q) == pytest.approx(exact, rel=0.011, abs=0.5)
    small = LengthHistogram()
    small.add(np.array([3, 3, 5, 700]))
    assert small.quantile(0.5) == 3 and small.quantile(1.0) == 700  # exact below 1,024
    assert sum(c for _, _, c in whole.octaves()) == whole.total


def test_stats_counts_match_pyarrow(small_corpus: Path, tmp_path: Path) -> None:
    table = ds.dataset(small_corpus).to_table()
    result = runner.invoke(app, ["stats", str(small_corpus), "--json", "--language-column", "source"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert stats["documents"] == table.num_rows
    assert stats["characters"] == pc.sum(pc.utf8_length(table["text"])).as_py()
    lengths = pc.utf8_length(table["text"]).to_numpy()
    assert stats["chars_per_doc"]["max"] == lengths.max() and stats["chars_per_doc"]["min"] == lengths.min()
    assert stats["chars_per_doc"]["p50"] == pytest.approx(np.quantile(lengths, 0.5, method="inverted_cdf"), rel=0.011)
    by_source = {row["values"]: row["counts"] for row in pc.value_counts(table["source"]).to_pylist()}
    assert {k: v["documents"] for k, v in stats["languages"].items()} == by_source


def test_null_and_empty_text_are_counted(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_text('{"id": "1", "text": "hello"}\n{"id": "2", "text": null}\n{"id": null, "text": " \\n "}\n')
    stats = json.loads(runner.invoke(app, ["stats", str(path), "--json"]).stdout)
    assert (stats["documents"], stats["null_text"], stats["empty_text"]) == (3, 1, 1)
    assert stats["null_values"] == {"id": 1}
    markdown = runner.invoke(app, ["stats", str(path), "--format", "md"]).stdout
    assert "| documents | 3 |" in markdown and "| null text | 1 |" in markdown
    table = runner.invoke(app, ["stats", str(path)]).stdout
    assert table.splitlines()[0].split() == ["documents", "3"]


def test_tokens_with_a_tokenizer(shared_data: Path, tmp_path: Path) -> None:
    from tokenizers import Tokenizer

    tokenizer = shared_data / "tokenizers" / "gpt2.json"
    path = write_parquet(tmp_path / "pages.parquet", pq.read_table(shared_data / "web" / "trafilatura_pages.parquet").slice(0, 120))
    result = runner.invoke(app, ["stats", str(path), "--tokenizer", str(tokenizer), "--json"])
    stats = json.loads(result.stdout)
    texts = ds.dataset(path).to_table(columns=["text"])["text"].to_pylist()
    expected = sum(len(e.ids) for e in Tokenizer.from_file(str(tokenizer)).encode_batch(texts, add_special_tokens=False))
    assert stats["tokens"] == expected and stats["tokens_per_doc"]["count"] == len(texts)
    assert stats["languages"]["de"]["tokens"] > 0
