"""curate's quality chain reproduces the reference (datatrove's FineWeb filters on spaCy's word split).

The reference verdicts on real documents come from datatrove itself, recorded by
``scripts/bench_fineweb.py --write-golden tests/data/fineweb_chain.json`` (datatrove is a benchmark-only
dependency), so these tests need no datatrove. spaCy, which the reference uses to split words and
sentences, is a curate dependency: the word split is compared with it directly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import spacy
import xxhash

from curate.io.inputs import Columns
from curate.stages.quality import QualityParams, QualityStage
from curate.text.words import count_sentences, split_words_by_language

REPO = Path(__file__).resolve().parent.parent
GOLDEN = REPO / "tests" / "data" / "fineweb_chain.json"
FINEWEB_FILTERS = ["gopher-repetition", "gopher-quality", "c4", "fineweb"]
TECHNICAL = [
    "Run `ls -la /usr/local/bin` or pass --no-cache-dir=true to pip (v23.1.2, see https://pip.pypa.io/en/).",
    "SYNOPSIS\n       grep [OPTION...] PATTERNS [FILE...]\n       grep -E 'foo|bar' ~/.bashrc 2>&1 | head -n5",
    "From: \"John Doe\" <john.doe@example.com>\nReceived: from mx.example.org ([192.168.0.1]) by x.y.z;",
    "The U.S. team's e-mail (foo@bar.co.uk) said: \"We'll ship 1,000.50 units by 9:00AM...\" -- Dr. Smith",
    "def f(x): return x**2 + obj.method(a, b=[1, 2]) # C++ and C# and node.js; ''quoted'' and ``other''",
    "Prices: $5, €10.99, 50%, 3x faster; cannot, gonna, don't; (parenthesised) [bracketed] {braced}!?",
]


def spacy_words(nlp, text: str) -> list[str]:
    """The reference word split: spaCy's tokens, stripped, blanks dropped (datatrove's word_tokenize)."""
    return [t.text.strip() for t in nlp.tokenizer(text) if t.text.strip()]


def curate_words(texts: list[str], tokenizer: str) -> list[list[str]]:
    tokens = split_words_by_language(pl.Series(texts), np.zeros(len(texts), dtype=np.int64), [tokenizer])
    frame = pl.DataFrame({"doc": tokens.doc, "w": tokens.strings()})
    by_doc = {doc: words for doc, words in frame.group_by("doc", maintain_order=True).agg("w").iter_rows()}
    return [by_doc.get(i, []) for i in range(len(texts))]


def real_texts(shared_data: Path) -> list[str]:
    texts = []
    for name, step in (("spamassassin/emails", 25), ("english/misc", 90), ("web/trafilatura_pages", 8)):
        column = pq.read_table(shared_data / f"{name}.parquet", columns=["text"])["text"].to_pylist()
        texts += column[::step]
    return texts


def test_word_split_is_spacys_on_technical_and_real_text(shared_data: Path):
    nlp = spacy.blank("en")
    texts = TECHNICAL + real_texts(shared_data)
    got = curate_words(texts, "en")
    for text, words in zip(texts, got, strict=True):
        assert words == spacy_words(nlp, text), text[:200]


@pytest.mark.parametrize("lang", ["de", "fr", "es", "ru"])
def test_word_split_is_spacys_in_other_languages(shared_data: Path, lang: str):
    nlp = spacy.blank(lang)
    udhr = pq.read_table(shared_data / "udhr" / "documents.parquet", columns=["text", "lang"]).to_pylist()
    texts = [d["text"] for d in udhr if d["lang"].split("-")[0] == lang][:3]
    web = pq.read_table(shared_data / "web" / "trafilatura_pages.parquet", columns=["text", "lang"]).to_pylist()
    texts += [d["text"] for d in web if d["lang"] == lang][:20]
    assert texts
    assert curate_words(texts, lang) == [spacy_words(nlp, t) for t in texts]


def test_sentences_are_counted_as_spacys_sentencizer(shared_data: Path):
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    lines = [line.strip() for text in real_texts(shared_data)[:150] for line in text.splitlines() if line.strip()]
    lines += ["Hello. World!", "!Start here", "U.S. policy. (It works.) \"Quoted.\" Done", "No terminator",
              "Shirley.  ;-)", "Tab.\t:)", "Two  spaces. And\tone tab"]
    tokens = split_words_by_language(
        pl.Series(lines), np.zeros(len(lines), dtype=np.int64), ["en"], keep_spaces=True
    )
    got = count_sentences(tokens, len(lines))
    want = [len(list(nlp(line).sents)) for line in lines]
    assert got.tolist() == want


GOOD_LINES = [
    "The committee met on Tuesday to discuss the proposal for the new bridge across the river.",
    "Several members of the public attended and asked questions about the cost and the schedule.",
    "The engineer explained that the work would begin in spring and take about two years to finish.",
    "She said that the old bridge would stay open to traffic until the new one was ready for use.",
    "A final vote on the plan is expected at the next meeting of the council later in the month.",
    "Residents who live near the site will receive a letter with details about noise and road closures.",
]
# menu lines without punctuation: C4 removes them (fewer than 3 words), FineWeb counts them on the original
MENU = ["Home", "News", "Sport", "Weather", "Contact", "About us", "Login", "Search", "Archive", "Help", "Shop",
        "Events", "Jobs", "Privacy"]  # fmt: skip


def run_chain(texts: list[str], **params) -> pa.RecordBatch:
    stage = QualityStage(QualityParams(**params))
    return stage.process(pa.record_batch({"id": [str(i) for i in range(len(texts))], "text": texts}), Columns())


def test_fineweb_sees_the_text_c4_rewrote():
    text = "\n".join(MENU[:7] + GOOD_LINES[:3] + MENU[7:] + GOOD_LINES[3:])
    kept = run_chain([text], filters=["c4", "fineweb"]).kept
    assert kept.num_rows == 1  # FineWeb judged the rewritten text: every remaining line ends in "."
    assert kept.column("text")[0].as_py() == "\n".join(GOOD_LINES)
    # the same document, FineWeb on the original text (either order, or no rewrite): 14 of 20 lines are short
    for params in ({"filters": ["fineweb", "c4"]}, {"filters": ["c4", "fineweb"], "c4_remove_lines": False}):
        out = run_chain([text], **params)
        assert out.kept.num_rows == 0
        assert out.rejected.column("quality_reasons")[0].as_py() == ["fineweb:max_short_line_ratio"]


def test_annotate_records_each_filters_signals_on_the_text_it_saw():
    text = "\n".join(MENU + GOOD_LINES)
    out = run_chain([text], filters=["c4", "fineweb"], mode="annotate").kept
    assert out.column("text")[0].as_py() == "\n".join(GOOD_LINES)
    assert out.column("q_c4_lines_removed")[0].as_py() == len(MENU)
    assert out.column("q_short_line_ratio")[0].as_py() == 0.0  # computed after the rewrite
    assert out.column("quality_reasons")[0].as_py() == []


def test_stale_annotations_of_an_earlier_run_are_replaced(capsys):
    first = run_chain(["\n".join(GOOD_LINES)], filters=["gopher-quality", "gopher-repetition"], mode="annotate")
    assert "q_top_2gram_char_frac" in first.kept.schema.names
    again = QualityStage(QualityParams(filters=["fineweb"], mode="annotate")).process(first.kept, Columns())
    names = again.kept.schema.names
    assert "q_top_2gram_char_frac" not in names and "q_word_count" not in names
    assert "q_line_punct_ratio" in names
    assert "replacing the annotations of an earlier run" in capsys.readouterr().err


def test_fineweb_chain_matches_datatrove_on_real_documents(shared_data: Path):
    """Verdicts and kept texts of datatrove's FineWeb chain on 1,116 real English documents, exactly."""
    import sys

    sys.path.insert(0, str(REPO / "scripts"))
    from bench_fineweb import golden_documents

    golden = json.loads(GOLDEN.read_text())
    table = golden_documents(shared_data)
    stage = QualityStage(
        QualityParams(filters=FINEWEB_FILTERS, config=str(REPO / "recipes" / "fineweb-en-quality.yaml"))
    )
    kept, removed_by = {}, {}
    for batch in table.to_batches(max_chunksize=400):
        out = stage.process(batch, Columns())
        kept.update(zip(out.kept.column("id").to_pylist(), out.kept.column("text").to_pylist(), strict=True))
        for doc_id, reasons in zip(out.rejected.column("id").to_pylist(),
                                   out.rejected.column("quality_reasons").to_pylist(), strict=True):  # fmt: skip
            removed_by[doc_id] = reasons[0].split(":")[0].replace("_", "-")
    assert len(golden) == table.num_rows == len(kept) + len(removed_by)
    for doc_id, want in golden.items():
        if want["removed"] is None:
            assert doc_id in kept, f"{doc_id}: datatrove keeps it, curate removes it ({removed_by[doc_id]})"
            assert xxhash.xxh64_hexdigest(kept[doc_id].encode()) == want["text_xxh64"], doc_id
        else:
            assert removed_by.get(doc_id) == want["removed"], doc_id


def test_long_texts_are_split_in_pieces_with_the_same_tokens(shared_data: Path, monkeypatch):
    """Texts longer than a piece are cut at single spaces: the tokens (and whitespace tokens) are unchanged."""
    import curate.text.words as words

    texts = [*real_texts(shared_data)[:60], "word  " * 300 + "end.\tNext " * 200]
    whole = split_words_by_language(pl.Series(texts), np.zeros(len(texts), dtype=np.int64), ["en"], keep_spaces=True)
    monkeypatch.setattr(words, "PIECE_CHARS", 500)
    pieces = split_words_by_language(pl.Series(texts), np.zeros(len(texts), dtype=np.int64), ["en"], keep_spaces=True)
    assert np.array_equal(whole.doc, pieces.doc)
    assert whole.strings().to_list() == pieces.strings().to_list()


def test_remembered_spans_are_bounded_across_languages(monkeypatch):
    import curate.text.words as words

    monkeypatch.setattr(words, "SPANS_REMEMBERED", 50)
    texts = [" ".join(f"w{i}x{j}" for j in range(40)) for i in range(5)]
    for lang in ("en", "de"):
        for text in texts:
            tokens = split_words_by_language(pl.Series([text]), np.zeros(1, dtype=np.int64), [lang])
            assert tokens.strings().to_list() == text.split()
        assert sum(s.known.height for s in words._SPLITTERS.values()) <= 50 + 40
