"""Per-document quality signals of one filter, for a whole batch at once.

Each filter is computed on the text it sees in the chain (:class:`TextView`): C4's line rules rewrite
the text, and the filters after C4 see the rewritten text, as in the reference pipeline. A view splits
its texts lazily, once per need: words with the reference word tokenizer (:mod:`curate.text.words`),
lines and paragraphs by each filter's own definition (Python's ``splitlines``, ``split("\\n")`` or
``re.split("\\n+")``, as the reference does). The pieces are exploded into long frames and aggregated back
per document with numpy ``bincount``; only the n-gram repetition scan (sequential by definition) runs in
a numba loop. Each signal follows the datatrove implementation of the published filter; the few places
where curate differs are listed in docs/benchmarks.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property

import numba
import numpy as np
import polars as pl
import pyarrow as pa

from curate.stages.quality.charsets import SYMBOL_CHARACTERS, TERMINAL_PUNCTUATION
from curate.stages.quality.config import LanguageSettings
from curate.text import NON_SPACE_RUN, PYTHON_SPACE, PYTHON_SPACE_CLASS, explode_with_index, string_buffers
from curate.text.words import Tokens, count_sentences, sentence_terminators, split_words_by_language

#: the line boundaries of Python's ``str.splitlines``
_LINE_BREAK = r"\r\n|[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]"


def _char_class(chars: str) -> str:
    return "[" + "".join(f"\\x{{{ord(c):x}}}" for c in sorted(set(chars))) + "]"


_SYMBOL_TOKEN = f"^{_char_class(SYMBOL_CHARACTERS)}+$"
_FINEWEB_TERMINAL = _char_class(TERMINAL_PUNCTUATION) + "$"
_BULLET_LINE = rf"^[{PYTHON_SPACE_CLASS}]*[•-]"
_ELLIPSIS_LINE = rf"(?:\.\.\.|…)[{PYTHON_SPACE_CLASS}]*$"
_C4_TERMINAL = "[.?!\"']$"
_C4_CITATION = r"\[\d*\]|\[edit\]|\[citation needed\]"

#: the names of the signals a filter computes (columns ``<prefix><name>`` in annotate mode)
SIGNAL_NAME = re.compile(
    r"word_count|mean_word_length|hash_ratio|ellipsis_ratio|bullet_lines_ratio|ellipsis_lines_ratio|"
    r"alpha_words_ratio|stop_words|dup_para_frac|dup_para_char_frac|dup_line_frac|dup_line_char_frac|"
    r"(?:top|dup)_\d+gram_char_frac|c4_sentences|c4_lines_removed|c4_chars_removed|line_punct_ratio|"
    r"short_line_ratio|line_dup_char_ratio|newline_ratio"
)
TOP_NGRAM_KEY = "max_top_ngram_char_frac"
DUP_NGRAM_KEY = "max_dup_ngram_char_frac"


@dataclass
class FilterSignals:
    """Signal arrays of one filter (one value per document; ratios in float64, compared to the thresholds
    as the reference compares them) and, for C4, the rewritten texts."""

    values: dict[str, np.ndarray] = field(default_factory=dict)
    text: pl.Series | None = None


class PerDoc:
    """Per-document settings of a batch as numpy arrays, looked up through each document's language."""

    def __init__(
        self,
        settings: list[LanguageSettings],
        lang_index: np.ndarray,
        ngram_sizes: dict[str, list[int]] | None = None,
    ) -> None:
        self.settings = settings
        self.lang_index = lang_index
        self._ngram_sizes = ngram_sizes or {}

    def subset(self, rows: np.ndarray) -> PerDoc:
        return PerDoc(self.settings, self.lang_index[rows], self._ngram_sizes)

    def threshold(self, section: str, key: str, n: int | None = None) -> np.ndarray:
        """Float thresholds per document; a disabled rule (null) gives NaN, so comparisons are False."""
        values = []
        for s in self.settings:
            value = getattr(s, section)[key]
            if n is not None:
                value = (value or {}).get(n)
            values.append(np.nan if value is None or value is False else float(value))
        return np.asarray(values, dtype=np.float64)[self.lang_index]

    def flag(self, section: str, key: str) -> np.ndarray:
        return np.asarray([bool(getattr(s, section)[key]) for s in self.settings], dtype=bool)[
            self.lang_index
        ]

    def ngram_sizes(self, key: str) -> list[int]:
        """n-gram sizes to compute: fixed by the stage (stable columns), else those of the batch's languages."""
        return self._ngram_sizes[key] if key in self._ngram_sizes else ngram_sizes(self.settings, key)

    def word_splitters(self) -> tuple[np.ndarray, list[str]]:
        """Each document's word splitter, as an index into the list of splitter names."""
        names = sorted({s.word_tokenizer for s in self.settings})
        of_language = np.asarray([names.index(s.word_tokenizer) for s in self.settings], dtype=np.int64)
        return of_language[self.lang_index], names


def ngram_sizes(settings: list[LanguageSettings], key: str) -> list[int]:
    return sorted(
        {int(n) for s in settings for n, v in (s.gopher_repetition[key] or {}).items() if v is not None}
    )


def _per_doc_sum(doc: np.ndarray, weights: np.ndarray | None, n_docs: int) -> np.ndarray:
    return np.bincount(doc, weights=weights, minlength=n_docs)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    out = np.zeros(len(numerator), dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _first_distinct(column: str) -> pl.Expr:
    """True for the first occurrence of a value within its document (exact up to 64-bit hash collisions)."""
    return pl.struct(pl.col("doc"), pl.col(column).hash(seed=0)).is_first_distinct()


def _exploded(lists: pl.Series, name: str) -> pl.DataFrame:
    """``(doc, pos, <name>, length, is_last)`` rows of a list column."""
    return explode_with_index(lists, name).with_columns(
        length=pl.col(name).str.len_chars(), is_last=pl.col("pos") == pl.col("pos").max().over("doc")
    )


class TextView:
    """The texts one filter sees, with their words, lines and paragraphs split on first use."""

    def __init__(self, texts: pl.Series, per_doc: PerDoc) -> None:
        self.texts = texts
        self.per_doc = per_doc
        self.n_docs = len(texts)

    def subset(self, rows: np.ndarray) -> TextView:
        """The view of documents ``rows`` (positions in this view), keeping the splits already made."""
        view = TextView(self.texts.gather(rows), self.per_doc.subset(rows))
        new_id = np.full(self.n_docs, -1, dtype=np.int64)
        new_id[rows] = np.arange(len(rows))
        if "words" in self.__dict__:
            view.__dict__["words"] = self.words.subset(new_id)
        if "python_lines" in self.__dict__:
            frame = self.python_lines
            doc = new_id[frame["doc"].to_numpy()]
            view.__dict__["python_lines"] = frame.filter(pl.Series(doc >= 0)).with_columns(
                doc=pl.Series(doc[doc >= 0].astype(np.uint32))
            )
        return view

    @cached_property
    def text_len(self) -> np.ndarray:
        return self.texts.str.len_chars().fill_null(0).to_numpy().astype(np.float64)

    @cached_property
    def words(self) -> Tokens:
        """The tokens of the document language's reference word tokenizer."""
        splitter_of_doc, names = self.per_doc.word_splitters()
        return split_words_by_language(self.texts, splitter_of_doc, names)

    @cached_property
    def n_words(self) -> np.ndarray:
        return _per_doc_sum(self.words.doc, None, self.n_docs)

    @cached_property
    def python_lines(self) -> pl.DataFrame:
        """``str.splitlines()``: every line break Python knows, no empty line after a final break."""
        lines = self.texts.str.replace_all(_LINE_BREAK, "\n").str.strip_suffix("\n").str.split("\n")
        return _exploded(lines, "line")

    @cached_property
    def newline_lines(self) -> pl.DataFrame:
        """``str.split("\\n")``: lines keep a ``\\r`` before the break."""
        return _exploded(self.texts.str.split("\n"), "line")

    def count(self, literal: str) -> np.ndarray:
        return self.texts.str.count_matches(literal, literal=True).fill_null(0).to_numpy().astype(np.float64)


def gopher_quality(view: TextView) -> FilterSignals:
    n_docs, words = view.n_docs, view.words
    vocab = words.vocab
    doc = words.doc
    is_word = words.per_token(~vocab.str.contains(_SYMBOL_TOKEN).to_numpy())
    n_words = _per_doc_sum(doc[is_word], None, n_docs)
    lengths = words.per_token(vocab.str.len_chars().to_numpy().astype(np.float64))
    word_chars = _per_doc_sum(doc[is_word], lengths[is_word], n_docs)
    n_letter = _per_doc_sum(doc, words.per_token(vocab.str.contains(r"\p{L}").to_numpy()).astype(np.float64), n_docs)
    n_tokens = view.n_words

    line_stats = view.python_lines.select(
        "doc",
        bullet=pl.col("line").str.contains(_BULLET_LINE),
        ellipsis=pl.col("line").str.contains(_ELLIPSIS_LINE),
    )
    line_doc = line_stats["doc"].to_numpy()
    n_lines = _per_doc_sum(line_doc, None, n_docs)
    bullets = _per_doc_sum(line_doc, line_stats["bullet"].to_numpy().astype(np.float64), n_docs)
    ellipsis_lines = _per_doc_sum(line_doc, line_stats["ellipsis"].to_numpy().astype(np.float64), n_docs)

    with np.errstate(invalid="ignore", divide="ignore"):
        mean_length = np.where(n_words > 0, word_chars / np.maximum(n_words, 1), np.nan)
    values = {
        "word_count": n_words.astype(np.int32),
        "mean_word_length": mean_length,
        "hash_ratio": _ratio(view.count("#"), n_tokens),
        "ellipsis_ratio": _ratio(view.count("...") + view.count("…"), n_tokens),
        "bullet_lines_ratio": _ratio(bullets, n_lines),
        "ellipsis_lines_ratio": _ratio(ellipsis_lines, n_lines),
        "alpha_words_ratio": _ratio(n_letter, n_tokens),
        "stop_words": _stop_word_counts(words, view.per_doc, n_docs),
    }
    return FilterSignals(values)


def _stop_word_counts(words: Tokens, per_doc: PerDoc, n_docs: int) -> np.ndarray:
    """Distinct stop words of each document's language present in it (exact, case-sensitive match)."""
    counts = np.zeros(n_docs, dtype=np.int32)
    doc_lang = per_doc.lang_index[words.doc]
    for lang, settings in enumerate(per_doc.settings):
        if not settings.stop_words:
            continue
        is_stop = words.per_token(words.vocab.is_in(pl.Series(settings.stop_words).implode()).to_numpy())
        hits = np.nonzero(is_stop & (doc_lang == lang))[0]
        pairs = np.unique(words.doc[hits].astype(np.int64) * len(words.vocab) + words.token[hits])
        counts += np.bincount(pairs // len(words.vocab), minlength=n_docs).astype(np.int32)
    return counts


def _duplicates(frame: pl.DataFrame, column: str, n_docs: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(items, duplicate items, duplicate chars) per document: a later copy of an earlier item is a duplicate."""
    rows = frame.with_columns(first=_first_distinct(column))
    doc = rows["doc"].to_numpy()
    dup = ~rows["first"].to_numpy()
    items = _per_doc_sum(doc, None, n_docs)
    dup_items = _per_doc_sum(doc[dup], None, n_docs)
    dup_chars = _per_doc_sum(doc[dup], rows["length"].to_numpy()[dup].astype(np.float64), n_docs)
    return items, dup_items, dup_chars


def gopher_repetition(view: TextView) -> FilterSignals:
    n_docs, text_len = view.n_docs, view.text_len
    # re.split(r"\n{2,}", text.strip()): blocks without a blank line; a blank text is one empty paragraph
    paragraphs = _exploded(view.texts.str.strip_chars(PYTHON_SPACE).str.split("\n\n"), "para").filter(
        pl.col("para") != ""
    )
    paragraphs = paragraphs.with_columns(pl.col("para").str.strip_chars("\n")).with_columns(
        length=pl.col("para").str.len_chars()
    )
    n_paras, dup_paras, dup_para_chars = _duplicates(paragraphs, "para", n_docs)
    n_paras = np.maximum(n_paras, 1)

    # re.split("\n+", text): the non-empty lines, plus the empty first/last piece of a text that
    # starts/ends with a line break
    lines = _exploded(view.texts.str.split("\n"), "line").filter(
        (pl.col("line") != "") | (pl.col("pos") == 0) | pl.col("is_last")
    )
    n_lines, dup_lines, dup_line_chars = _duplicates(lines, "line", n_docs)

    values = {
        "dup_para_frac": _ratio(dup_paras, n_paras),
        "dup_para_char_frac": _ratio(dup_para_chars, text_len),
        "dup_line_frac": _ratio(dup_lines, np.maximum(n_lines, 1)),
        "dup_line_char_frac": _ratio(dup_line_chars, text_len),
    }
    top_ns = view.per_doc.ngram_sizes(TOP_NGRAM_KEY)
    dup_ns = view.per_doc.ngram_sizes(DUP_NGRAM_KEY)
    if top_ns or dup_ns:
        words = view.words
        starts = np.zeros(n_docs + 1, dtype=np.int64)
        np.cumsum(view.n_words, out=starts[1:])
        vocab_hash, vocab_power = _token_hashes(words.vocab.to_arrow())
        top, dup = _ngram_chars(
            starts,
            words.token,
            vocab_hash,
            vocab_power,
            words.vocab.str.len_chars().to_numpy().astype(np.int64),
            np.asarray(top_ns, dtype=np.int64),
            np.asarray(dup_ns, dtype=np.int64),
        )
        for k, n in enumerate(top_ns):
            values[f"top_{n}gram_char_frac"] = _ratio(top[:, k], text_len)
        for k, n in enumerate(dup_ns):
            values[f"dup_{n}gram_char_frac"] = _ratio(dup[:, k], text_len)
    return FilterSignals(values)


_HASH_BASE = np.uint64(0x100000001B3)


def _token_hashes(tokens: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Polynomial hash of each token's UTF-8 bytes and ``base ** bytes``, so that the hash of a
    concatenation follows from its parts (n-grams compared as joined strings, as the reference does)."""
    data, offsets = string_buffers(tokens)
    return _polynomial_hashes(offsets, data)


@numba.njit(cache=True)
def _polynomial_hashes(offsets, data):
    n = len(offsets) - 1
    hashes = np.zeros(n, dtype=np.uint64)
    powers = np.ones(n, dtype=np.uint64)
    for i in range(n):
        h = np.uint64(0)
        p = np.uint64(1)
        for j in range(offsets[i], offsets[i + 1]):
            h = h * _HASH_BASE + np.uint64(data[j]) + np.uint64(1)
            p = p * _HASH_BASE
        hashes[i] = h
        powers[i] = p
    return hashes, powers


@numba.njit(cache=True, inline="always")
def _joined_hash(token, hashes, powers, start: int, n: int, separator: bool) -> np.uint64:
    """Hash of ``sep.join(words[start:start + n])`` with ``sep`` a space or nothing (never 0: 0 marks a
    free slot)."""
    h = np.uint64(0)
    for j in range(start, start + n):
        if separator and j > start:
            h = h * _HASH_BASE + np.uint64(33)  # the space byte, shifted like every byte
        h = h * powers[token[j]] + hashes[token[j]]
    return h if h != np.uint64(0) else np.uint64(1)


@numba.njit(cache=True)
def _insert(keys: np.ndarray, key: np.uint64) -> tuple[int, bool]:
    """Slot of ``key`` in an open-addressing table (0 = free), and whether it was already there."""
    size = np.uint64(len(keys))
    slot = np.int64((key ^ (key >> np.uint64(29))) % size)
    while keys[slot] != 0:
        if keys[slot] == key:
            return slot, True
        slot += 1
        if slot == len(keys):
            slot = 0
    keys[slot] = key
    return slot, False


@numba.njit(cache=True)
def _ngram_chars(starts, token, hashes, powers, lengths, top_ns, dup_ns):
    """Characters in the most frequent n-gram (times its count) and in repeated n-grams, per document.

    ``token`` holds each word's index into the per-string ``hashes``, ``powers`` and ``lengths``.
    Top n-gram: the n-gram (words joined by spaces) with the highest count, first occurrence wins ties
    (Counter.most_common); its length counts the joining spaces. Duplicate n-grams: scan left to right,
    and when an n-gram (words joined without spaces) was seen before, count its characters and jump
    past it (Gopher / datatrove ``find_all_duplicate``). Memory: one table of 1.25 slots (16 bytes each)
    per word of the longest document.
    """
    n_docs = len(starts) - 1
    top = np.zeros((n_docs, len(top_ns)), dtype=np.float64)
    dup = np.zeros((n_docs, len(dup_ns)), dtype=np.float64)
    max_words = 0
    for d in range(n_docs):
        max_words = max(max_words, starts[d + 1] - starts[d])
    capacity = max_words + max_words // 4 + 2
    keys = np.zeros(capacity, dtype=np.uint64)
    counts = np.zeros(capacity, dtype=np.int32)
    first = np.zeros(capacity, dtype=np.int32)
    prefix = np.zeros(max_words + 1, dtype=np.int64)
    for d in range(n_docs):
        s = starts[d]
        m = starts[d + 1] - s
        if m == 0:
            continue
        size = m + m // 4 + 2
        doc_keys = keys[:size]
        for i in range(m):
            prefix[i + 1] = prefix[i] + lengths[token[s + i]]
        for k in range(len(top_ns)):
            n = top_ns[k]
            if m < n:
                continue
            doc_keys[:] = 0
            best_count, best_first = 0, 0
            for i in range(m - n + 1):
                slot, seen = _insert(doc_keys, _joined_hash(token, hashes, powers, s + i, n, True))
                if seen:
                    counts[slot] += 1
                else:
                    counts[slot] = 1
                    first[slot] = i
                c = counts[slot]
                if c > best_count or (c == best_count and first[slot] < best_first):
                    best_count, best_first = c, first[slot]
            length = prefix[best_first + n] - prefix[best_first] + n - 1
            top[d, k] = best_count * length
        for k in range(len(dup_ns)):
            n = dup_ns[k]
            doc_keys[:] = 0
            repeated = 0
            i = 0
            while i < m - n + 1:
                _, seen = _insert(doc_keys, _joined_hash(token, hashes, powers, s + i, n, False))
                if seen:
                    repeated += prefix[i + n] - prefix[i]
                    i += n
                else:
                    i += 1
            dup[d, k] = repeated
    return top, dup


def c4(view: TextView, rewrite: bool) -> FilterSignals:
    """C4 line cleaning (which lines survive) and the document rules evaluated on the surviving lines."""
    per_doc, n_docs = view.per_doc, view.n_docs
    lines = view.python_lines
    doc = lines["doc"].to_numpy()

    def column(values: np.ndarray) -> pl.Series:
        return pl.Series(values[doc])

    frame = lines.select(
        "doc",
        "pos",
        stripped=pl.col("line").str.strip_chars(PYTHON_SPACE),
        remove_citations=column(per_doc.flag("c4", "remove_citations")),
        require_punct=column(per_doc.flag("c4", "require_terminal_punct")),
        min_words=column(per_doc.threshold("c4", "min_words_per_line")).fill_nan(None),
        max_word_length=column(per_doc.threshold("c4", "max_word_length")).fill_nan(None),
        drop_js=column(per_doc.flag("c4", "drop_javascript_lines")),
        drop_policy=column(per_doc.flag("c4", "drop_policy_lines")),
        drop_lorem=column(per_doc.flag("c4", "drop_lorem_ipsum")),
        drop_curly=column(per_doc.flag("c4", "drop_curly_bracket")),
        policy_group=column(_policy_groups(per_doc)),
    )
    frame = frame.with_columns(
        n_words=pl.col("stripped").str.count_matches(NON_SPACE_RUN),
        cleaned=pl.when(pl.col("remove_citations"))
        .then(pl.col("stripped").str.replace_all(_C4_CITATION, ""))
        .otherwise(pl.col("stripped")),
    )
    too_long = pl.col("stripped").str.len_chars() > pl.col("max_word_length")
    frame = frame.with_columns(
        long_word=pl.when(too_long)
        .then(
            pl.col("stripped")
            .str.extract_all(NON_SPACE_RUN)
            .list.eval(pl.element().str.len_chars())
            .list.max()
            > pl.col("max_word_length")
        )
        .otherwise(False)
        .fill_null(False),
    ).drop("stripped")
    punct_ok = ~pl.col("require_punct") | (
        pl.col("cleaned").str.contains(_C4_TERMINAL) & ~pl.col("cleaned").str.ends_with("...")
    )
    words_ok = (pl.col("n_words") >= pl.col("min_words")).fill_null(True)
    frame = frame.with_columns(
        eligible=~pl.col("long_word") & punct_ok & words_ok,
        js=pl.col("drop_js") & pl.col("cleaned").str.contains("(?i)javascript"),
    )
    policy = np.zeros(frame.height, dtype=bool)
    groups = frame["policy_group"].to_numpy()
    for group, phrases in enumerate(_policy_phrases(per_doc)):
        rows = groups == group
        if phrases and rows.any():
            pattern = "(?i)(?:" + "|".join(map(_regex_literal, phrases)) + ")"
            policy[rows] = frame["cleaned"].filter(pl.Series(rows)).str.contains(pattern).to_numpy()
    frame = frame.with_columns(policy=pl.Series(policy) & pl.col("drop_policy"))
    frame = frame.with_columns(
        lorem=pl.col("eligible")
        & pl.col("drop_lorem")
        & pl.col("cleaned").str.contains("(?i)lorem ipsum"),
        curly=pl.col("eligible")
        & ~pl.col("js")
        & pl.col("drop_curly")
        & pl.col("cleaned").str.contains("{", literal=True),
        kept=pl.col("eligible") & ~pl.col("js") & ~pl.col("policy"),
    )
    kept_rows = frame.filter(pl.col("kept"))
    kept_doc = kept_rows["doc"].to_numpy()
    sentences = _line_sentences(kept_rows["cleaned"], per_doc.subset(kept_doc))
    n_kept = _per_doc_sum(kept_doc, None, n_docs)
    kept_chars = _per_doc_sum(
        kept_doc, kept_rows["cleaned"].str.len_chars().to_numpy().astype(np.float64), n_docs
    )
    new_length = kept_chars + np.maximum(n_kept - 1, 0)
    out = FilterSignals(
        {
            "c4_sentences": _per_doc_sum(kept_doc, sentences.astype(np.float64), n_docs).astype(np.int32),
            "c4_lines_removed": (_per_doc_sum(doc, None, n_docs) - n_kept).astype(np.int32),
            "c4_chars_removed": (view.text_len - new_length).astype(np.int32),
            "c4_lorem_ipsum": _per_doc_sum(doc, frame["lorem"].to_numpy().astype(np.float64), n_docs) > 0,
            "c4_curly_bracket": _per_doc_sum(doc, frame["curly"].to_numpy().astype(np.float64), n_docs) > 0,
        }
    )
    if rewrite:
        joined = (
            kept_rows.group_by("doc", maintain_order=True)
            .agg(pl.col("cleaned").str.join("\n"))
            .join(pl.DataFrame({"doc": np.arange(n_docs, dtype=np.uint32)}), on="doc", how="right")
            .sort("doc")
        )
        out.text = joined["cleaned"].fill_null("").str.strip_chars(PYTHON_SPACE).rename(view.texts.name)
    return out


def _line_sentences(lines: pl.Series, per_doc: PerDoc) -> np.ndarray:
    """Sentences per line, split by the line's language tokenizer and spaCy's sentencizer rule (a line
    without a sentence terminator is one sentence: only the others need their tokens)."""
    sentences = np.ones(len(lines), dtype=np.int64)
    rows = np.nonzero(lines.str.contains(_char_class("".join(sentence_terminators()))).to_numpy())[0]
    if len(rows):
        splitter_of_line, names = per_doc.subset(rows).word_splitters()
        tokens = split_words_by_language(lines.gather(rows), splitter_of_line, names, keep_spaces=True)
        sentences[rows] = count_sentences(tokens, len(rows))
    return sentences


def _regex_literal(text: str) -> str:
    """``text`` as a regular expression matching it literally."""
    return "".join(f"\\{c}" if c in r"\.+*?()|[]{}^$#&-~" else c for c in text)


def _policy_phrases(per_doc: PerDoc) -> list[tuple[str, ...]]:
    return list(
        dict.fromkeys(tuple(p.lower() for p in s.c4["policy_phrases"] or ()) for s in per_doc.settings)
    )


def _policy_groups(per_doc: PerDoc) -> np.ndarray:
    groups = _policy_phrases(per_doc)
    index = [groups.index(tuple(p.lower() for p in s.c4["policy_phrases"] or ())) for s in per_doc.settings]
    return np.asarray(index, dtype=np.int32)[per_doc.lang_index]


def fineweb(view: TextView) -> FilterSignals:
    n_docs = view.n_docs
    short_length = view.per_doc.threshold("fineweb", "short_line_length")
    lines = view.newline_lines
    frame = lines.with_columns(short_length=pl.Series(short_length[lines["doc"].to_numpy()])).filter(
        pl.col("line").str.strip_chars(PYTHON_SPACE) != ""
    )
    line_doc = frame["doc"].to_numpy()
    n_lines = _per_doc_sum(line_doc, None, n_docs)
    punct = frame["line"].str.contains(_FINEWEB_TERMINAL).to_numpy().astype(np.float64)
    short = (frame["length"] <= frame["short_length"]).to_numpy().astype(np.float64)
    _, _, dup_chars = _duplicates(frame.select("doc", "line", "length"), "line", n_docs)
    newlines = view.count("\n")
    return FilterSignals(
        {
            "line_punct_ratio": _ratio(_per_doc_sum(line_doc, punct, n_docs), n_lines),
            "short_line_ratio": _ratio(_per_doc_sum(line_doc, short, n_docs), n_lines),
            "line_dup_char_ratio": _ratio(dup_chars, view.text_len - newlines),
            "newline_ratio": _ratio(newlines, view.n_words),
            "nonblank_lines": n_lines.astype(np.int32),
        }
    )


def compute_signals(filter_name: str, view: TextView, *, c4_rewrite: bool = True) -> FilterSignals:
    """The signals of one filter on the texts of ``view`` (and C4's rewritten texts when asked)."""
    if filter_name == "c4":
        return c4(view, c4_rewrite)
    return {"gopher-quality": gopher_quality, "gopher-repetition": gopher_repetition, "fineweb": fineweb}[
        filter_name
    ](view)
