"""`curate decontaminate` on real text: the English paragraphs of the Universal Declaration of Human Rights
planted into SpamAssassin e-mails and web pages are every one found (also re-cased, re-punctuated and
re-wrapped), with no hit elsewhere; cut mode gives the plain-Python reference's pieces (NeMo Curator's
algorithm, scripts/bench_decontaminate.py); drop mode, rejected documents, array tasks and resume."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import REPO, write_parquet
from typer.testing import CliRunner

from curate.cli.main import app
from curate.hashing import ngram_hash, ngram_hash_at, ngram_powers, ngram_prefixes
from curate.io.inputs import Columns
from curate.io.output import file_checksum
from curate.stages.decontaminate import DecontaminateParams, DecontaminateStage

sys.path.insert(0, str(REPO / "scripts"))
from bench_decontaminate import Reference, english_udhr, plant, words_of

runner = CliRunner()
SPLIT = ("--max-rows-per-shard", "700", "--batch-size", "300")


def run(*args, code: int = 0) -> dict:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return json.loads(result.stdout.strip().splitlines()[-1]) if code == 0 and "--json" in args else {}


def read(path: Path) -> pl.DataFrame:
    return pl.read_parquet(sorted(path.glob("part-*.parquet")))


def mangle(paragraph: str) -> str:
    """The paragraph as a copy-paste might give it: upper case, commas and semicolons gone, wrapped at 60."""
    return textwrap.fill(paragraph.upper().replace(",", "").replace(";", " -"), 60)


@pytest.fixture(scope="module")
def corpus(shared_data, tmp_path_factory):
    """1,500 e-mails and the 1,032 web pages, the 92 English UDHR paragraphs planted (half in each; every
    fifth one mangled), and the paragraphs as a benchmark file. Returns (folder, planted ids, reference)."""
    paragraphs = english_udhr(shared_data)
    planted_ids: dict[str, int] = {}
    folder = tmp_path_factory.mktemp("decontaminate")
    sources = (("emails", shared_data / "spamassassin" / "emails.parquet", 1500, paragraphs[:46], 0),
               ("web", shared_data / "web" / "trafilatura_pages.parquet", None, paragraphs[46:], 46))
    for name, path, rows, mine, first in sources:
        frame = pl.read_parquet(path).select("id", "text")
        frame = frame.head(rows) if rows else frame
        copies = [mangle(p) if (first + k) % 5 == 0 else p for k, p in enumerate(mine)]
        texts, where = plant(frame["text"].to_list(), copies, seed=len(name))
        planted_ids.update({frame["id"][j]: first + k for j, k in where.items()})
        write_parquet(folder / "corpus" / f"{name}.parquet", frame.with_columns(pl.Series("text", texts)).to_arrow(),
                      row_group_size=350)
    write_parquet(folder / "bench" / "udhr_en.parquet", pa.table({"text": paragraphs}))
    return folder, planted_ids, Reference({"udhr_en": paragraphs}), paragraphs


@pytest.fixture(scope="module")
def cut_run(corpus):
    folder, *_ = corpus
    out = folder / "cut"
    summary = run("decontaminate", folder / "corpus", "-o", out, "--benchmarks", folder / "bench" / "udhr_en.parquet",
                  "--rejected", folder / "cut-rejected", "--json", "-q", *SPLIT)
    return out, summary


def originals(folder: Path) -> pl.DataFrame:
    return pl.read_parquet(sorted((folder / "corpus").glob("*.parquet")))


def test_annotate_finds_every_planted_paragraph_and_nothing_else(corpus, tmp_path):
    folder, planted_ids, reference, paragraphs = corpus
    summary = run("decontaminate", folder / "corpus", "-o", tmp_path / "out", "--benchmarks",
                  folder / "bench" / "udhr_en.parquet", "--mode", "annotate", "--json", "-q", *SPLIT)
    out = read(tmp_path / "out")
    assert out.height == summary["docs_in"] == summary["docs_out"] == 2532
    assert out["text"].to_list() == originals(folder)["text"].to_list()  # annotate changes no text
    hits = out.filter(pl.col("contamination_ngrams") > 0)
    findable = {i for i, k in planted_ids.items() if len(words_of(paragraphs[k])) >= 8}
    assert len(findable) == 88  # 4 paragraphs have fewer than 8 words: no n-gram, as in NeMo Curator
    assert set(hits["id"]) == findable  # mangled copies too, and no false hit in 2,444 clean documents
    assert set(hits["contamination_sources"].explode()) == {"udhr_en"}
    for text, count in hits.select("text", "contamination_ngrams").iter_rows():
        assert count == reference.check(text)[0]
    assert summary["contamination"] == {"documents": 88, "ngrams": int(hits["contamination_ngrams"].sum()),
                                        "sources": {"udhr_en": 88}}


def test_no_false_hit_in_the_whole_clean_corpora(shared_data, corpus, cut_run):
    folder, *_ = corpus
    stage = DecontaminateStage(DecontaminateParams(benchmarks=[], mode="annotate"),
                               folder / "cut.decontaminate-work" / "index")
    stage.setup()
    for path in (shared_data / "spamassassin" / "emails.parquet", shared_data / "web" / "trafilatura_pages.parquet"):
        for batch in pq.read_table(path, columns=["id", "text"]).to_batches(max_chunksize=2000):
            assert stage.process(batch, Columns()).counters["contamination"]["documents"] == 0, path


def test_cut_gives_the_reference_pieces_and_leaves_no_benchmark_ngram(corpus, cut_run):
    folder, planted_ids, reference, _ = corpus
    out, summary = cut_run
    before = dict(originals(folder).select("id", "text").iter_rows())
    after = read(out)
    removed = {"contaminated_too_many_splits": 0, "contaminated_nothing_left": 0}
    for doc_id in planted_ids:  # the others hold no benchmark n-gram (test_annotate_…)
        if not reference.check(before[doc_id])[0]:
            continue
        pieces = reference.cut(before[doc_id])
        if not pieces:
            removed["contaminated_nothing_left"] += 1
        elif len(pieces) > 10:
            removed["contaminated_too_many_splits"] += 1
    cut = after.filter(pl.col("contamination_ngrams") > 0)
    assert len(cut) == 88 - sum(removed.values()) == summary["contamination"]["cut"]
    for doc_id, text in cut.select("id", "text").iter_rows():
        assert text == "\n\n".join(reference.cut(before[doc_id]))
        assert reference.check(text)[0] == 0  # nothing of the benchmark is left
        assert len(text) < len(before[doc_id])
    clean = after.filter(pl.col("contamination_ngrams") == 0)
    assert all(before[i] == t for i, t in clean.select("id", "text").iter_rows())
    stats = json.loads((out / "_stats.json").read_text())
    assert stats["removed"] == removed and sum(removed.values()) > 0
    rejected = read(folder / "cut-rejected")
    assert len(rejected) == sum(removed.values()) and all(before[i] == t for i, t in rejected.select("id", "text").iter_rows())
    assert set(rejected["id"]) <= set(planted_ids)


def test_drop_removes_every_contaminated_document(corpus, tmp_path):
    folder, planted_ids, _, paragraphs = corpus
    summary = run("decontaminate", folder / "corpus", "-o", tmp_path / "out", "--benchmarks",
                  folder / "bench" / "udhr_en.parquet", "--mode", "drop", "--rejected", tmp_path / "rejected",
                  "--json", "-q", *SPLIT)
    assert summary["removed"] == {"contaminated": 88} and summary["docs_out"] == 2532 - 88
    assert read(tmp_path / "out")["contamination_ngrams"].max() == 0
    assert set(read(tmp_path / "rejected")["id"]) == {i for i, k in planted_ids.items()
                                                      if len(words_of(paragraphs[k])) >= 8}


def test_array_tasks_and_resume_give_the_same_shards(corpus, cut_run, tmp_path):
    folder, *_ = corpus
    single, _ = cut_run
    expected = {p.name: file_checksum(p) for p in single.glob("part-*.parquet")}
    assert len(expected) == 5
    arguments = ("decontaminate", folder / "corpus", "-o", tmp_path / "tasks", "--benchmarks",
                 folder / "bench" / "udhr_en.parquet", "-q", *SPLIT)
    waiting = run(*arguments, "--num-shards", 3, "--shard-index", 2, "--json")
    assert not waiting["complete"] and not (tmp_path / "tasks").exists()  # task 0 builds the index
    for task in (0, 2, 1):
        run(*arguments, "--num-shards", 3, "--shard-index", task)
    assert {p.name: file_checksum(p) for p in (tmp_path / "tasks").glob("part-*.parquet")} == expected
    # a unit lost (its shard and record gone) is redone alone on the rerun, to the same bytes
    (tmp_path / "tasks" / "part-00002.parquet").unlink()
    (tmp_path / "tasks" / "_progress" / "unit-00002.json").unlink()
    summary = run(*arguments, "--json")
    assert summary["units_processed"] == 1 and summary["index"]["units_processed"] == 0
    assert {p.name: file_checksum(p) for p in (tmp_path / "tasks").glob("part-*.parquet")} == expected


def test_text_and_json_lines_benchmarks_are_sources_of_their_own(corpus, tmp_path):
    folder, planted_ids, _, paragraphs = corpus
    (tmp_path / "first.txt").write_text("\n".join(paragraphs[:46]) + "\n", encoding="utf-8")
    pl.DataFrame({"question": paragraphs[46:]}).write_ndjson(tmp_path / "second.jsonl")
    summary = run("decontaminate", folder / "corpus", "-o", tmp_path / "out", "--benchmarks",
                  f"{tmp_path / 'first.txt'},{tmp_path / 'second.jsonl'}", "--benchmark-column", "question",
                  "--mode", "annotate", "--json", "-q", *SPLIT)
    assert summary["index"]["sources"]["first"]["texts"] == 46
    out = read(tmp_path / "out").filter(pl.col("contamination_ngrams") > 0)
    assert out.height == 88
    for doc_id, sources in out.select("id", "contamination_sources").iter_rows():
        assert sources == (["first"] if planted_ids[doc_id] < 46 else ["second"])


def test_bad_benchmarks_and_parameters_are_refused(corpus, tmp_path):
    folder, *_ = corpus
    common = ("decontaminate", folder / "corpus" / "web.parquet", "-o", tmp_path / "out")
    run(*common, "--benchmarks", folder / "bench" / "udhr_en.parquet", "--benchmark-column", "question", code=3)
    run(*common, "--benchmarks", tmp_path / "missing.txt", "-o", tmp_path / "out2", code=3)
    (tmp_path / "latin1.txt").write_bytes("Déclaration universelle des droits de l'homme\n".encode("latin-1"))
    run(*common, "--benchmarks", tmp_path / "latin1.txt", "-o", tmp_path / "out6", code=3)
    run(*common, "--benchmarks", folder / "bench" / "udhr_en.parquet", "--min-ngram", 20, "-o", tmp_path / "o3", code=2)
    (tmp_path / "short.txt").write_text("Everyone has the right to life.\n")
    run(*common, "--benchmarks", tmp_path / "short.txt", "-o", tmp_path / "o4", code=2)
    run(*common, "--benchmarks", folder / "bench" / "udhr_en.parquet", "--pass", "check", "-o", tmp_path / "o5",
        code=2)  # the index is not built yet
    inside = folder / "corpus" / "out"
    run("decontaminate", folder / "corpus", "-o", inside, "--benchmarks", folder / "bench" / "udhr_en.parquet", code=2)
    assert not list((folder / "corpus").glob("out*"))  # refused before the index is written


def test_ngram_hashes_from_prefixes_equal_the_direct_hash():
    words = np.random.default_rng(3).integers(0, 2**64, 40, dtype=np.uint64)
    prefix = np.empty(41, np.uint64)
    ngram_prefixes(words, 40, prefix)
    powers = ngram_powers(13)
    for width in (1, 8, 13):
        for start in range(0, 40 - width + 1, 3):
            assert ngram_hash_at(prefix, powers, start, width) == ngram_hash(words, start, width)
