"""`curate filter --expr` on real annotated output: the same kept documents as the equivalent polars filter."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.io.errors import UsageError
from curate.io.inputs import Columns
from curate.io.options import IOOptions
from curate.registry import STAGES
from curate.stages.filter import FilterParams, FilterStage
from curate.stages.filter_expr import parse
from curate.stages.langid import LangidParams, LangidStage
from curate.stages.quality import QualityParams, QualityStage

REPO = Path(__file__).resolve().parent.parent
COLUMNS = Columns("text", "id")
EXPR = ('lang == "en" and lang_score >= 0.7 and q_word_count >= 50 and '
        'not quality_reasons.list.contains("c4:curly_bracket")')


@pytest.fixture(scope="module")
def annotated(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """German web pages and English texts of every source through langid and quality --mode annotate, as one Parquet file."""
    web = pq.read_table(shared_data / "web" / "trafilatura_pages.parquet", columns=["id", "text", "url", "lang"])
    web = web.filter(pa.compute.equal(web["lang"], "de")).slice(0, 30).drop_columns(["lang"])
    misc = pq.read_table(shared_data / "english" / "misc.parquet", columns=["text"])
    misc = misc.take(np.arange(0, misc.num_rows, misc.num_rows // 250)[:250])
    urls = pq.read_table(shared_data / "web" / "trafilatura_pages.parquet", columns=["url"])["url"].slice(500, 100)
    table = pa.concat_tables([
        web,
        pa.table({"id": [f"misc-{i}" for i in range(misc.num_rows)], "text": misc["text"],
                  "url": pa.concat_arrays([urls.combine_chunks(), pa.nulls(misc.num_rows - 100, pa.string())])}),
    ])
    batch = table.combine_chunks().to_batches()[0]
    batch = LangidStage(LangidParams()).process(batch, COLUMNS).kept
    batch = QualityStage(QualityParams(mode="annotate")).process(batch, COLUMNS).kept
    path = tmp_path_factory.mktemp("annotated") / "annotated.parquet"
    pq.write_table(pa.Table.from_batches([batch]), path)
    return path


def run_filter(source: Path, expr: str, **extra) -> tuple[list, pa.RecordBatch, dict]:
    batch = pq.read_table(source).combine_chunks().to_batches()[0]
    out = FilterStage(FilterParams(expr=expr, **extra)).process(batch, COLUMNS)
    return out.kept.column("id").to_pylist(), out.rejected, out.counters


def test_same_kept_ids_as_polars_and_first_failing_clause_counts(annotated: Path):
    frame = pl.read_parquet(annotated)
    clauses = [pl.col("lang") == "en", pl.col("lang_score") >= 0.7, pl.col("q_word_count") >= 50,
               ~pl.col("quality_reasons").list.contains("c4:curly_bracket")]
    expected = frame.filter(*clauses)["id"].to_list()
    kept, rejected, counters = run_filter(annotated, EXPR)
    assert kept == expected and 0 < len(kept) < frame.height
    assert rejected.num_rows == frame.height - len(kept)
    passed = frame.select([c.fill_null(False).alias(str(i)) for i, c in enumerate(clauses)]).to_numpy()
    first = np.argmin(passed[~passed.all(axis=1)], axis=1)
    texts = [c.text for c in parse(EXPR).clauses]
    assert texts == ['lang == "en"', "lang_score >= 0.7", "q_word_count >= 50",
                     'not quality_reasons.list.contains("c4:curly_bracket")']
    assert counters["removed"] == {texts[i]: int(n) for i, n in enumerate(np.bincount(first, minlength=4)) if n}
    assert len(counters["removed"]) >= 3  # the real data fails several clauses first


def test_or_in_arithmetic_and_strings_match_polars(annotated: Path):
    frame = pl.read_parquet(annotated)
    expr = ('(lang in ["en", "de"] or q_word_count * 2 > 600) and not url.str.starts_with("https://www.") '
            'and q_mean_word_length - 1 < 5.5 and `lang`.str.len_chars() == 2')
    expected = frame.filter(
        pl.col("lang").is_in(["en", "de"]) | (pl.col("q_word_count") * 2 > 600),
        ~pl.col("url").str.starts_with("https://www."),
        pl.col("q_mean_word_length") - 1 < 5.5,
        pl.col("lang").str.len_chars() == 2,
    )["id"].to_list()
    kept, _, counters = run_filter(annotated, expr)
    assert kept == expected and kept
    # the English texts have no URL: the starts_with clause is null for them, which removes them
    assert counters["removed"]['not url.str.starts_with("https://www.")'] >= 150


def test_null_semantics(annotated: Path):
    frame = pl.read_parquet(annotated)
    nulls = frame["url"].null_count()
    assert nulls >= 150
    kept, _, counters = run_filter(annotated, 'url.str.len_chars() > 0 or lang == "xx"')
    assert len(kept) == frame.height - nulls
    assert counters["removed"] == {'url.str.len_chars() > 0 or lang == "xx"': nulls}
    kept, _, _ = run_filter(annotated, "url.is_null()")
    assert len(kept) == nulls
    kept, _, _ = run_filter(annotated, 'not url.str.contains("://")')  # not of null is null: removed too
    assert kept == pl.read_parquet(annotated).filter(pl.col("url").str.starts_with("hard::"))["id"].to_list()
    assert len(kept) == 4


def test_drop_columns_globs_after_filtering(annotated: Path):
    batch = pq.read_table(annotated).combine_chunks().to_batches()[0]
    out = FilterStage(FilterParams(expr="q_word_count >= 50", drop_columns=["q_*", "quality_reasons"])).process(
        batch, COLUMNS)
    rejected = out.rejected
    assert 0 < out.kept.num_rows < batch.num_rows
    assert not [n for n in out.kept.schema.names if n.startswith("q_") or n == "quality_reasons"]
    assert {"id", "text", "lang", "lang_score", "url"} <= set(out.kept.schema.names)
    assert "q_word_count" in rejected.schema.names  # rejected documents keep every column
    with pytest.raises(UsageError, match="cannot drop the text column"):
        FilterStage(FilterParams(expr="q_word_count >= 50", drop_columns=["text"])).process(batch, COLUMNS)


@pytest.mark.parametrize(("expr", "message", "caret"), [
    ('lang == "en" and )', "expected a column, a literal or '('", 17),
    ("__import__('os').system('true')", "expected 'and', 'or' or the end", 10),
    ("lang == null", "write .is_null()", 8),
    ("lang.upper()", "expected a method", 5),
    ("q_word_count > 1 < 2", "comparisons do not chain", 17),
    ("lang == 'en' ;", "unexpected character ';'", 13),
    ("", "empty", None),
])
def test_grammar_errors_point_at_the_token(expr: str, message: str, caret: int | None):
    with pytest.raises(UsageError, match=re.escape(message)) as error:
        parse(expr)
    if caret is not None:
        lines = str(error.value).splitlines()
        assert lines[1] == f"  {expr}" and lines[2] == "  " + " " * caret + "^"


def test_unknown_column_type_errors_and_non_conditions(annotated: Path):
    with pytest.raises(UsageError, match=r"unknown column 'q_words' \(columns: id, text, url, lang, lang_score"):
        run_filter(annotated, "lang_score > 0.5 and q_words > 3")
    with pytest.raises(UsageError, match="cannot evaluate"):
        run_filter(annotated, "lang > 3")
    with pytest.raises(UsageError, match="not a condition"):
        run_filter(annotated, "q_word_count + 1")


def test_cli_stats_rejected_and_exit_codes(annotated: Path, tmp_path: Path):
    io = IOOptions(inputs=[str(annotated)], output=str(tmp_path / "out"), quiet=True)
    summary = STAGES["filter"].run(FilterParams(expr=EXPR, drop_columns=["q_*"]), io,
                                   rejected=str(tmp_path / "rejected"))
    stats = json.loads((tmp_path / "out" / "_stats.json").read_text())
    assert stats["clauses"] == [c.text for c in parse(EXPR).clauses]
    assert sum(stats["removed"].values()) == stats["docs_in"] - stats["docs_out"] == summary["docs_in"] - \
        summary["docs_out"]
    kept, rejected = pl.read_parquet(tmp_path / "out" / "*.parquet"), pl.read_parquet(tmp_path / "rejected" / "*.parquet")
    assert kept.height == stats["docs_out"] and kept.height + rejected.height == stats["docs_in"]
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    for expr, code, text in (("lang ==", 2, "^"), ("nope > 1", 2, "unknown column 'nope'")):
        result = subprocess.run([sys.executable, "-m", "curate", "filter", str(annotated), "-o",
                                 str(tmp_path / "bad"), "--expr", expr, "-q"], capture_output=True, text=True,
                                env=env)
        assert result.returncode == code and text in result.stderr, result.stderr
