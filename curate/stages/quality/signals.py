"""Per-document quality signals for a whole batch at once.

Every text of the batch is tokenised / split into lines and paragraphs by one polars expression each
(curate.text), the pieces are exploded into long frames and aggregated back per document with numpy
``bincount``; only the n-gram repetition scan (sequential by definition) runs in a numba loop. Each signal
follows the definition of the datatrove implementation of the published filter (see docs/benchmarks.md
for the few places where curate differs on purpose).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numba
import numpy as np
import polars as pl
import pyarrow as pa

from curate.stages.quality.config import LanguageSettings
from curate.text import NO_SPACE_SCRIPTS, explode_with_index, split_lines, split_paragraphs, split_words

_NO_SPACE_CLASS = "".join(rf"\p{{{script}}}" for script in NO_SPACE_SCRIPTS)
# a token made only of punctuation, ASCII symbols or control characters does not count as a word (the
# Gopher/datatrove definition: other symbols such as © or € do)
_SYMBOL_TOKEN = r"^[\p{P}\p{Cc}$+<=>^`|~]+$"
_BULLET_LINE = r"^\s*[•-]"
_ELLIPSIS_LINE = r"(?:\.\.\.|…)\s*$"
# FineWeb's terminal punctuation: Unicode Sentence_Terminal plus three Khmer signs (as in datatrove)
_FINEWEB_TERMINAL = r"[\p{Sentence_Terminal}៖៙៚]$"
# C4: terminal punctuation . ? ! " ' (plus the CJK full stops, so that zh/ja lines can pass), not "..."
_C4_TERMINAL = "[.?!\"'。！？」』]$"
_C4_CITATION = r"\[\d*\]|\[edit\]|\[citation needed\]"
# C4 counts whitespace-separated words; characters of scripts without spaces count one each
_C4_WORD = rf"[^\s{_NO_SPACE_CLASS}]+|[{_NO_SPACE_CLASS}]"
# sentence boundaries inside a line: a lone period or !/? (then closing quotes/brackets) followed by
# whitespace, or a CJK full stop followed by more text (what spaCy's sentencizer splits on)
_SENTENCE_BOUNDARY = r"(?:[^.\s]\.|[!?]+)[\"'”’)\]]*\s+|[。！？]+[」』”）]*[^\s。！？」』”）]"

TOP_NGRAM_KEY = "max_top_ngram_char_frac"
DUP_NGRAM_KEY = "max_dup_ngram_char_frac"


@dataclass
class BatchSignals:
    """Signal arrays (one value per document) plus, when asked for, the C4-cleaned texts."""

    values: dict[str, np.ndarray] = field(default_factory=dict)
    c4_text: pa.Array | None = None


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


def compute_signals(
    texts: pa.Array | pa.ChunkedArray,
    per_doc: PerDoc,
    filters: list[str],
    *,
    c4_rewrite: bool = False,
) -> BatchSignals:
    """All signals needed by ``filters`` for every text of the batch."""
    series = pl.Series("text", texts)
    n_docs = len(series)
    text_len = series.str.len_chars().fill_null(0).to_numpy().astype(np.float64)
    out = BatchSignals()
    need_tokens = bool({"gopher-quality", "gopher-repetition", "fineweb"} & set(filters))
    tokens = explode_with_index(split_words(series), "w") if need_tokens else None
    lines = _line_frame(series)
    n_tokens = _per_doc_sum(tokens["doc"].to_numpy(), None, n_docs) if tokens is not None else None

    if "gopher-quality" in filters:
        out.values.update(_gopher_quality(series, tokens, lines, per_doc, n_tokens, n_docs))
    if "gopher-repetition" in filters:
        out.values.update(_gopher_repetition(series, tokens, lines, per_doc, text_len, n_docs))
    if "c4" in filters:
        values, out.c4_text = _c4(lines, per_doc, text_len, n_docs, c4_rewrite)
        out.values.update(values)
    if "fineweb" in filters:
        out.values.update(_fineweb(series, lines, per_doc, n_tokens, text_len, n_docs))
    return out


def _line_frame(series: pl.Series) -> pl.DataFrame:
    lines = explode_with_index(split_lines(series), "line")
    return lines.with_columns(
        length=pl.col("line").str.len_chars(),
        is_last=pl.col("pos") == pl.col("pos").max().over("doc"),
        is_first_distinct=_first_distinct("line"),
    )


def _gopher_quality(series, tokens, lines, per_doc, n_tokens, n_docs) -> dict[str, np.ndarray]:
    token_stats = tokens.select(
        "doc",
        is_word=~pl.col("w").str.contains(_SYMBOL_TOKEN),
        has_letter=pl.col("w").str.contains(r"\p{L}"),
        length=pl.col("w").str.len_chars(),
    )
    doc = token_stats["doc"].to_numpy()
    is_word = token_stats["is_word"].to_numpy()
    n_words = _per_doc_sum(doc[is_word], None, n_docs)
    word_chars = _per_doc_sum(doc[is_word], token_stats["length"].to_numpy()[is_word], n_docs)
    n_letter = _per_doc_sum(doc, token_stats["has_letter"].to_numpy().astype(np.float64), n_docs)

    hashes = series.str.count_matches("#", literal=True).fill_null(0).to_numpy()
    ellipses = series.str.count_matches("...", literal=True) + series.str.count_matches("…", literal=True)
    ellipses = ellipses.fill_null(0).to_numpy()

    # Python's str.splitlines(): a final line break does not open an empty last line
    line_stats = lines.select(
        "doc",
        counted=~(pl.col("is_last") & (pl.col("line") == "")),
        bullet=pl.col("line").str.contains(_BULLET_LINE),
        ellipsis=pl.col("line").str.contains(_ELLIPSIS_LINE),
    )
    line_doc = line_stats["doc"].to_numpy()
    n_lines = _per_doc_sum(line_doc, line_stats["counted"].to_numpy().astype(np.float64), n_docs)
    bullets = _per_doc_sum(line_doc, line_stats["bullet"].to_numpy().astype(np.float64), n_docs)
    ellipsis_lines = _per_doc_sum(line_doc, line_stats["ellipsis"].to_numpy().astype(np.float64), n_docs)

    with np.errstate(invalid="ignore", divide="ignore"):
        mean_length = np.where(n_words > 0, word_chars / np.maximum(n_words, 1), np.nan)
    return {
        "word_count": n_words.astype(np.int32),
        "mean_word_length": mean_length.astype(np.float32),
        "hash_ratio": _ratio(hashes, n_tokens).astype(np.float32),
        "ellipsis_ratio": _ratio(ellipses, n_tokens).astype(np.float32),
        "bullet_lines_ratio": _ratio(bullets, n_lines).astype(np.float32),
        "ellipsis_lines_ratio": _ratio(ellipsis_lines, n_lines).astype(np.float32),
        "alpha_words_ratio": _ratio(n_letter, n_tokens).astype(np.float32),
        "stop_words": _stop_word_counts(tokens, per_doc, n_docs),
    }


def _stop_word_counts(tokens: pl.DataFrame, per_doc: PerDoc, n_docs: int) -> np.ndarray:
    """Distinct stop words of each document's language present in it (exact, case-sensitive match)."""
    stop = pl.DataFrame(
        [(i, w) for i, s in enumerate(per_doc.settings) for w in s.stop_words],
        schema={"lang": pl.Int32, "w": pl.String},
        orient="row",
    )
    if stop.height == 0:
        return np.zeros(n_docs, dtype=np.int32)
    candidates = tokens.filter(pl.col("w").is_in(stop["w"].unique().implode()))
    lang = pl.Series("lang", per_doc.lang_index.astype(np.int32))
    found = (
        candidates.with_columns(lang=lang.gather(candidates["doc"]))
        .join(stop, on=["lang", "w"], how="inner")
        .unique(["doc", "w"])
    )
    return _per_doc_sum(found["doc"].to_numpy(), None, n_docs).astype(np.int32)


def _duplicates(frame: pl.DataFrame, mask: pl.Expr, n_docs: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(items, duplicate items, duplicate chars) per document over the rows selected by ``mask``."""
    rows = frame.filter(mask)
    doc = rows["doc"].to_numpy()
    dup = ~rows["is_first_distinct"].to_numpy()
    items = _per_doc_sum(doc, None, n_docs)
    dup_items = _per_doc_sum(doc[dup], None, n_docs)
    dup_chars = _per_doc_sum(doc[dup], rows["length"].to_numpy()[dup].astype(np.float64), n_docs)
    return items, dup_items, dup_chars


def _gopher_repetition(series, tokens, lines, per_doc, text_len, n_docs) -> dict[str, np.ndarray]:
    paragraphs = explode_with_index(split_paragraphs(series), "para")
    paragraphs = paragraphs.with_columns(
        length=pl.col("para").str.len_chars(), is_first_distinct=_first_distinct("para")
    )
    n_paras, dup_paras, dup_para_chars = _duplicates(paragraphs, pl.lit(True), n_docs)
    n_paras = np.maximum(n_paras, 1)  # a blank text is one empty paragraph

    # re.split("\n+", text): non-empty lines, plus an empty one at each end that starts/ends with "\n"
    n_lines, dup_lines, dup_line_chars = _duplicates(lines, pl.col("line") != "", n_docs)
    edge = lines.filter((pl.col("line") == "") & ((pl.col("pos") == 0) | pl.col("is_last")))
    edge_count = _per_doc_sum(edge["doc"].to_numpy(), None, n_docs)
    n_lines = n_lines + edge_count
    dup_lines = dup_lines + (edge_count >= 2)

    values = {
        "dup_para_frac": _ratio(dup_paras, n_paras),
        "dup_para_char_frac": _ratio(dup_para_chars, text_len),
        "dup_line_frac": _ratio(dup_lines, np.maximum(n_lines, 1)),
        "dup_line_char_frac": _ratio(dup_line_chars, text_len),
    }
    top_ns = per_doc.ngram_sizes(TOP_NGRAM_KEY)
    dup_ns = per_doc.ngram_sizes(DUP_NGRAM_KEY)
    if top_ns or dup_ns:
        word = tokens.select("doc", h=pl.col("w").hash(seed=0), length=pl.col("w").str.len_chars())
        starts = np.zeros(n_docs + 1, dtype=np.int64)
        np.cumsum(_per_doc_sum(word["doc"].to_numpy(), None, n_docs), out=starts[1:])
        top, dup = _ngram_chars(
            starts,
            word["h"].to_numpy(),
            word["length"].to_numpy().astype(np.int64),
            np.asarray(top_ns, dtype=np.int64),
            np.asarray(dup_ns, dtype=np.int64),
        )
        for k, n in enumerate(top_ns):
            values[f"top_{n}gram_char_frac"] = _ratio(top[:, k], text_len)
        for k, n in enumerate(dup_ns):
            values[f"dup_{n}gram_char_frac"] = _ratio(dup[:, k], text_len)
    return {name: value.astype(np.float32) for name, value in values.items()}


@numba.njit(cache=True, inline="always")
def _ngram_hash(hashes: np.ndarray, start: int, n: int) -> np.uint64:
    h = np.uint64(0xCBF29CE484222325)
    for j in range(start, start + n):
        h = (h ^ hashes[j]) * np.uint64(0x100000001B3)
        h ^= h >> np.uint64(29)
    return h


@numba.njit(cache=True)
def _insert(keys: np.ndarray, used: np.ndarray, key: np.uint64) -> tuple[int, bool]:
    """Slot of ``key`` in an open-addressing table, and whether it was already there."""
    mask = np.int64(len(keys) - 1)
    slot = np.int64(key & np.uint64(mask))
    while used[slot]:
        if keys[slot] == key:
            return slot, True
        slot = (slot + np.int64(1)) & mask
    used[slot] = True
    keys[slot] = key
    return slot, False


@numba.njit(cache=True)
def _ngram_chars(starts, hashes, lengths, top_ns, dup_ns):
    """Characters in the most frequent n-gram (times its count) and in repeated n-grams, per document.

    Top n-gram: the n-gram with the highest count, first occurrence wins ties (Counter.most_common);
    its length counts the joining spaces. Duplicate n-grams: scan left to right, and when an n-gram was
    seen before, count its characters and jump past it (Gopher / datatrove ``find_all_duplicate``).
    """
    n_docs = len(starts) - 1
    top = np.zeros((n_docs, len(top_ns)), dtype=np.float64)
    dup = np.zeros((n_docs, len(dup_ns)), dtype=np.float64)
    max_words = 0
    for d in range(n_docs):
        max_words = max(max_words, starts[d + 1] - starts[d])
    capacity = 1
    while capacity < 2 * max_words + 2:
        capacity *= 2
    keys = np.zeros(capacity, dtype=np.uint64)
    used = np.zeros(capacity, dtype=np.bool_)
    counts = np.zeros(capacity, dtype=np.int64)
    first = np.zeros(capacity, dtype=np.int64)
    prefix = np.zeros(max_words + 1, dtype=np.int64)
    for d in range(n_docs):
        s = starts[d]
        m = starts[d + 1] - s
        if m == 0:
            continue
        size = 1
        while size < 2 * m + 2:
            size *= 2
        doc_keys, doc_used = keys[:size], used[:size]
        for i in range(m):
            prefix[i + 1] = prefix[i] + lengths[s + i]
        for k in range(len(top_ns)):
            n = top_ns[k]
            if m < n:
                continue
            doc_used[:] = False
            best_count, best_first = 0, 0
            for i in range(m - n + 1):
                slot, seen = _insert(doc_keys, doc_used, _ngram_hash(hashes, s + i, n))
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
            doc_used[:] = False
            repeated = 0
            i = 0
            while i < m - n + 1:
                _, seen = _insert(doc_keys, doc_used, _ngram_hash(hashes, s + i, n))
                if seen:
                    repeated += prefix[i + n] - prefix[i]
                    i += n
                else:
                    i += 1
            dup[d, k] = repeated
    return top, dup


def _c4(lines, per_doc, text_len, n_docs, rewrite) -> tuple[dict[str, np.ndarray], pa.Array | None]:
    """C4 line cleaning (which lines survive) and the document rules evaluated on the surviving lines."""
    doc = lines["doc"].to_numpy()
    frame = lines.select(
        "doc",
        "pos",
        counted=~(pl.col("is_last") & (pl.col("line") == "")),
        stripped=pl.col("line").str.strip_chars(),
        remove_citations=pl.Series(per_doc.flag("c4", "remove_citations")[doc]),
        require_punct=pl.Series(per_doc.flag("c4", "require_terminal_punct")[doc]),
        min_words=pl.Series(per_doc.threshold("c4", "min_words_per_line")[doc]).fill_nan(None),
        max_word_length=pl.Series(per_doc.threshold("c4", "max_word_length")[doc]).fill_nan(None),
        drop_js=pl.Series(per_doc.flag("c4", "drop_javascript_lines")[doc]),
        drop_policy=pl.Series(per_doc.flag("c4", "drop_policy_lines")[doc]),
        drop_lorem=pl.Series(per_doc.flag("c4", "drop_lorem_ipsum")[doc]),
        drop_curly=pl.Series(per_doc.flag("c4", "drop_curly_bracket")[doc]),
        policy_group=pl.Series(_policy_groups(per_doc)[doc]),
    )
    frame = frame.with_columns(
        n_words=pl.col("stripped").str.count_matches(_C4_WORD),
        cleaned=pl.when(pl.col("remove_citations"))
        .then(pl.col("stripped").str.replace_all(_C4_CITATION, ""))
        .otherwise(pl.col("stripped")),
    )
    too_long = pl.col("stripped").str.len_chars() > pl.col("max_word_length")
    frame = frame.with_columns(
        long_word=pl.when(too_long)
        .then(
            pl.col("stripped").str.extract_all(r"\S+").list.eval(pl.element().str.len_chars()).list.max()
            > pl.col("max_word_length")
        )
        .otherwise(False)
        .fill_null(False),
        lower=pl.col("cleaned").str.to_lowercase(),
    )
    punct_ok = ~pl.col("require_punct") | (
        pl.col("cleaned").str.contains(_C4_TERMINAL) & ~pl.col("cleaned").str.ends_with("...")
    )
    words_ok = (pl.col("n_words") >= pl.col("min_words")).fill_null(True)
    frame = frame.with_columns(
        eligible=~pl.col("long_word") & punct_ok & words_ok,
        js=pl.col("drop_js") & pl.col("lower").str.contains("javascript", literal=True),
    )
    policy = np.zeros(frame.height, dtype=bool)
    groups = frame["policy_group"].to_numpy()
    for group, phrases in enumerate(_policy_phrases(per_doc)):
        rows = groups == group
        if phrases and rows.any():
            policy[rows] = frame["lower"].filter(pl.Series(rows)).str.contains_any(phrases).to_numpy()
    frame = frame.with_columns(policy=pl.Series(policy) & pl.col("drop_policy"))
    frame = frame.with_columns(
        lorem=pl.col("eligible")
        & pl.col("drop_lorem")
        & pl.col("lower").str.contains("lorem ipsum", literal=True),
        curly=pl.col("eligible")
        & ~pl.col("js")
        & pl.col("drop_curly")
        & pl.col("cleaned").str.contains("{", literal=True),
        kept=pl.col("eligible") & ~pl.col("js") & ~pl.col("policy"),
    )
    kept_rows = frame.filter(pl.col("kept"))
    kept_doc = kept_rows["doc"].to_numpy()
    sentences = 1 + kept_rows["cleaned"].str.count_matches(_SENTENCE_BOUNDARY).to_numpy()
    n_kept = _per_doc_sum(kept_doc, None, n_docs)
    kept_chars = _per_doc_sum(
        kept_doc, kept_rows["cleaned"].str.len_chars().to_numpy().astype(np.float64), n_docs
    )
    new_length = kept_chars + np.maximum(n_kept - 1, 0)
    n_lines = _per_doc_sum(doc, frame["counted"].to_numpy().astype(np.float64), n_docs)
    values = {
        "c4_sentences": _per_doc_sum(kept_doc, sentences.astype(np.float64), n_docs).astype(np.int32),
        "c4_lines_removed": (n_lines - n_kept).astype(np.int32),
        "c4_chars_removed": (text_len - new_length).astype(np.int32),
        "c4_lorem_ipsum": _per_doc_sum(doc, frame["lorem"].to_numpy().astype(np.float64), n_docs) > 0,
        "c4_curly_bracket": _per_doc_sum(doc, frame["curly"].to_numpy().astype(np.float64), n_docs) > 0,
    }
    text = None
    if rewrite:
        joined = (
            kept_rows.group_by("doc", maintain_order=True)
            .agg(pl.col("cleaned").str.join("\n"))
            .join(pl.DataFrame({"doc": np.arange(n_docs, dtype=np.uint32)}), on="doc", how="right")
            .sort("doc")
        )
        text = joined["cleaned"].fill_null("").to_arrow()
    return values, text


def _policy_phrases(per_doc: PerDoc) -> list[tuple[str, ...]]:
    return list(
        dict.fromkeys(tuple(p.lower() for p in s.c4["policy_phrases"] or ()) for s in per_doc.settings)
    )


def _policy_groups(per_doc: PerDoc) -> np.ndarray:
    groups = _policy_phrases(per_doc)
    index = [groups.index(tuple(p.lower() for p in s.c4["policy_phrases"] or ())) for s in per_doc.settings]
    return np.asarray(index, dtype=np.int32)[per_doc.lang_index]


def _fineweb(series, lines, per_doc, n_tokens, text_len, n_docs) -> dict[str, np.ndarray]:
    short_length = per_doc.threshold("fineweb", "short_line_length")
    doc = lines["doc"].to_numpy()
    frame = lines.with_columns(short_length=pl.Series(short_length[doc])).filter(
        pl.col("line").str.strip_chars() != ""
    )
    line_doc = frame["doc"].to_numpy()
    n_lines = _per_doc_sum(line_doc, None, n_docs)
    punct = frame["line"].str.contains(_FINEWEB_TERMINAL).to_numpy().astype(np.float64)
    short = (frame["length"] <= frame["short_length"]).to_numpy().astype(np.float64)
    dup = ~frame["is_first_distinct"].to_numpy()
    dup_chars = _per_doc_sum(line_doc[dup], frame["length"].to_numpy()[dup].astype(np.float64), n_docs)
    newlines = series.str.count_matches("\n", literal=True).fill_null(0).to_numpy().astype(np.float64)
    return {
        "line_punct_ratio": _ratio(_per_doc_sum(line_doc, punct, n_docs), n_lines).astype(np.float32),
        "short_line_ratio": _ratio(_per_doc_sum(line_doc, short, n_docs), n_lines).astype(np.float32),
        "line_dup_char_ratio": _ratio(dup_chars, text_len - newlines).astype(np.float32),
        "newline_ratio": _ratio(newlines, n_tokens).astype(np.float32),
        "nonblank_lines": n_lines.astype(np.int32),
    }
