"""Word splitting that gives the tokens of the reference word tokenizers, for a whole column at once.

The published filters (datatrove's Gopher, C4 and FineWeb filters, and FineWeb2's per-language
settings) count words with spaCy's rule-based tokenizer of the document's language (``spacy.blank``).
That tokenizer cuts a text at whitespace first and then splits each whitespace-free span on its own
(prefixes, suffixes, infixes, URLs and the language's exceptions), so a span always gives the same
tokens wherever it occurs. curate therefore splits the whole batch into spans with one polars
expression, runs spaCy once over the batch's *distinct* spans, and expands the result back: the tokens
are exactly spaCy's, at a fraction of the cost of tokenizing every document (words repeat; distinct spans
are a small share of all spans).

Languages whose spaCy tokenizer needs a segmenter that is not installed (Chinese, Japanese, Thai, …)
fall back to curate's per-character split of scripts written without spaces (:mod:`curate.text`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import cache

import numpy as np
import polars as pl

from curate.text import explode_with_index, split_words

#: the characters Python's ``str.isspace`` accepts (spaCy's whitespace): Unicode White_Space + U+001C..1F
_SPACE_CLASS = r"\s\x1c-\x1f"
_SPAN = rf"[^{_SPACE_CLASS}]+"
_SPAN_OR_GAP = rf"{_SPAN}|[{_SPACE_CLASS}]+"
#: a token made only of punctuation (spaCy's ``is_punct``: every character in a Unicode P* category)
_PUNCT_TOKEN = r"^\p{P}+$"
#: the word splitter of languages written without spaces when no spaCy segmenter is installed
REGEX_SPLITTER = "regex"


@cache
def spacy_tokenizer(code: str):
    """spaCy's rule-based tokenizer for a language code (spaCy's multi-language ``xx`` for a code spaCy
    does not know), or None when its segmenter package is not installed (Japanese, Thai, …)."""
    import spacy

    try:
        spacy.util.get_lang_class(code)
    except ImportError:
        code = "xx"
    try:
        return spacy.blank(code)
    except Exception as exc:
        print(f"curate: warning: spaCy cannot tokenize {code!r} offline ({type(exc).__name__}); "
              "using curate's regex word split for it", file=sys.stderr)
        return None


@cache
def sentence_terminators() -> frozenset[str]:
    """Tokens that end a sentence for spaCy's rule-based sentencizer (datatrove's sentence split)."""
    from spacy.pipeline import Sentencizer

    return frozenset(Sentencizer.default_punct_chars)


class SpacySplitter:
    """spaCy's tokens for whitespace-free spans, remembered across batches.

    Spans are keyed by a 64-bit hash; up to ``capacity`` spans are remembered, then forgotten at once, so
    memory stays bounded whatever the corpus. Most spans are a plain word with at most one punctuation
    character before and after it (``word``, ``(word``, ``word,``, ``"word."``): when the language's affix
    rules provably split those characters off and leave the word whole (checked for every character and
    neighbouring letter when the splitter is built), their tokens come from one vectorised expression and
    only the other spans go through spaCy.
    """

    def __init__(self, nlp, capacity: int = 1_000_000) -> None:
        self.nlp = nlp
        self.capacity = capacity
        # lexical attributes (shape, flags, …) play no part in where tokens split: skip computing them
        nlp.vocab.lex_attr_getters = {}
        self.special_cases = pl.Series(list(nlp.tokenizer.rules or {}), dtype=pl.String).implode()
        self.fast = _AffixRules.verify(self) if not any(map(self._has_affix, _plain_probes())) else None
        self._forget()

    def _forget(self) -> None:
        self.known = pl.DataFrame(schema={"key": pl.UInt64, "first": pl.Int64, "count": pl.Int64})
        self.tokens = pl.Series("w", [], dtype=pl.String)

    def _has_affix(self, span: str) -> bool:
        """True when a prefix, suffix or infix rule (or a whole-span URL/token rule) of spaCy's tokenizer
        matches ``span``."""
        tokenizer = self.nlp.tokenizer
        for search in (tokenizer.prefix_search, tokenizer.suffix_search):
            if search is not None and (match := search(span)) is not None and match.end() > match.start():
                return True
        if any(rule is not None and rule(span) for rule in (tokenizer.token_match, tokenizer.url_match)):
            return True
        return tokenizer.infix_finditer is not None and next(tokenizer.infix_finditer(span), None) is not None

    def _splits_one_char(self, span: str, prefix: bool) -> bool:
        """True when spaCy's prefix (or suffix) rule takes exactly the first (last) character of ``span``."""
        tokenizer = self.nlp.tokenizer
        if any(rule is not None and rule(span) for rule in (tokenizer.token_match, tokenizer.url_match)):
            return False
        match = (tokenizer.prefix_search if prefix else tokenizer.suffix_search)(span)
        if match is None:
            return False
        return (match.start(), match.end()) == ((0, 1) if prefix else (len(span) - 1, len(span)))

    def _fast_tokens(self, spans: pl.Series) -> tuple[pl.Series, pl.Series]:
        """Which spans the verified affix rules tokenize, and their tokens (a list per span)."""
        if self.fast is None:
            return pl.Series([False] * len(spans)), pl.Series([], dtype=pl.List(pl.String))
        parts = spans.str.extract_groups(self.fast.pattern).struct.unnest()
        frame = pl.DataFrame({"span": spans, "pre": parts["1"], "core": parts["2"], "suf": parts["3"]})
        special = self.special_cases
        ok = frame.select(
            pl.col("core").is_not_null()
            & ((pl.col("pre") == "") | (pl.col("pre") + pl.col("core").str.head(1)).is_in(self.fast.prefixes))
            & ((pl.col("suf") == "") | (pl.col("core").str.tail(1) + pl.col("suf")).is_in(self.fast.suffixes))
            & ~pl.col("span").is_in(special)
            & ~pl.col("core").is_in(special)
            & ~(pl.col("pre") + pl.col("core")).is_in(special)
            & ~(pl.col("core") + pl.col("suf")).is_in(special)
        ).to_series().fill_null(False)
        tokens = frame.filter(ok).select(
            pl.concat_list("pre", "core", "suf").list.eval(pl.element().filter(pl.element() != ""))
        ).to_series()
        return ok, tokens

    def _learn(self, spans: pl.Series) -> None:
        """Tokenize distinct new spans: the verified affix rules for the simple ones, one spaCy call over
        the rest (spaCy splits each whitespace-separated span on its own)."""
        from spacy.attrs import IDX, LENGTH

        fast, fast_tokens = self._fast_tokens(spans)
        rest = spans.filter(~fast)
        lengths = rest.str.len_chars().to_numpy().astype(np.int64)
        starts = np.zeros(len(rest) + 1, dtype=np.int64)
        np.cumsum(lengths + 1, out=starts[1:])
        # one line per span: the line break between two spans is a token of its own, so that spaCy's
        # special-case matcher never joins tokens of two unrelated spans
        with self.nlp.memory_zone():
            doc = self.nlp.tokenizer("\n".join(rest.to_list()))
            positions = doc.to_array([IDX, LENGTH]).astype(np.int64).reshape(-1, 2)
        span_of = np.searchsorted(starts, positions[:, 0], side="right") - 1
        inside = positions[:, 0] < starts[span_of] + lengths[span_of]
        positions, span_of = positions[inside], span_of[inside]
        rest_tokens = (
            pl.DataFrame({"span": rest.gather(span_of), "off": positions[:, 0] - starts[span_of],
                          "len": positions[:, 1]})
            .select(pl.col("span").str.slice(pl.col("off"), pl.col("len")))
            .to_series()
        )
        counts = np.concatenate(
            [fast_tokens.list.len().to_numpy().astype(np.int64), np.bincount(span_of, minlength=len(rest))]
        ).astype(np.int64)
        new = pl.DataFrame(
            {
                "key": pl.concat([spans.filter(fast), rest]).hash(seed=0),
                "first": len(self.tokens) + np.cumsum(counts) - counts,
                "count": counts,
            }
        )
        self.known = pl.concat([self.known, new])
        self.tokens = pl.concat([self.tokens, fast_tokens.explode().rename("w"), rest_tokens.rename("w")])

    def split(self, texts: pl.Series, doc_ids: np.ndarray, keep_spaces: bool = False) -> pl.DataFrame:
        """``(doc, w)`` rows in text order for ``texts`` (document ids ``doc_ids``). With ``keep_spaces``,
        the whitespace tokens spaCy makes (any whitespace run but a single space) are rows too."""
        pieces = (
            pl.DataFrame({"doc": doc_ids.astype(np.uint32), "span": texts.str.extract_all(_SPAN_OR_GAP if keep_spaces else _SPAN)})
            .explode("span")
            .drop_nulls("span")
            .filter(pl.col("span") != " ")
            .with_columns(gap=pl.col("span").str.contains(f"^[{_SPACE_CLASS}]"), key=pl.col("span").hash(seed=0))
        )
        if self.known.height > self.capacity:
            self._forget()
        spans = pieces.filter(~pl.col("gap"))
        missing = spans.join(self.known, on="key", how="anti")
        if missing.height:
            self._learn(missing.unique("key", keep="first", maintain_order=True)["span"])
        found = pieces.join(self.known, on="key", how="left", maintain_order="left")
        gaps = found["gap"].to_numpy()
        first = found["first"].fill_null(0).to_numpy().copy()
        counts = found["count"].fill_null(1).to_numpy()
        first[gaps] = len(self.tokens) + np.arange(gaps.sum())  # a whitespace token is itself
        tokens = pl.concat([self.tokens, found["span"].filter(pl.Series(gaps)).rename("w")]) if gaps.any() else self.tokens
        occurrence = np.repeat(np.arange(len(first)), counts)
        starts = np.zeros(len(first) + 1, dtype=np.int64)
        np.cumsum(counts, out=starts[1:])
        token_index = first[occurrence] + np.arange(len(occurrence)) - starts[occurrence]
        return pl.DataFrame({"doc": found["doc"].gather(occurrence), "w": tokens.gather(token_index)})


#: letters whose plain runs spaCy keeps whole unless an affix rule of the language matches letters
_LETTERS = "".join(c for c in map(chr, [*range(65, 91), *range(97, 123), *range(0xC0, 0x100)]) if c.isalpha())
#: characters that commonly stand before or after a word
_AFFIX_CHARACTERS = ",.;:!?)]}([{\"'“”‘’«»„—–…/%$#*+=<>|~^_`&@-"


@dataclass
class _AffixRules:
    """The (character, neighbouring letter) pairs that a language's prefix and suffix rules split off alone."""

    pattern: str
    prefixes: pl.Series  # "(" + first letter of the word
    suffixes: pl.Series  # last letter of the word + ","

    @classmethod
    def verify(cls, splitter: SpacySplitter) -> _AffixRules:
        bodies = ("", "ab", "xY", "ab)", "ab,")
        prefixes = [c + letter for c in _AFFIX_CHARACTERS for letter in _LETTERS
                    if all(splitter._splits_one_char(c + letter + body, True) for body in bodies)]
        suffixes = [letter + c for c in _AFFIX_CHARACTERS for letter in _LETTERS
                    if all(splitter._splits_one_char(body.strip("),") + letter + c, False) for body in bodies)]
        characters = "".join(f"\\x{{{ord(c):x}}}" for c in _AFFIX_CHARACTERS)
        pattern = f"^([{characters}]?)([{_LETTERS}]+)([{characters}]?)$"
        return cls(pattern, pl.Series(prefixes, dtype=pl.String).implode(), pl.Series(suffixes, dtype=pl.String).implode())


def _plain_probes() -> list[str]:
    """Letter strings that would trip any affix rule of a language that matches plain letters."""
    letters = list(_LETTERS)
    rng = np.random.default_rng(0)
    longer = ["".join(rng.choice(letters, size=n)) for n in (3, 4, 5, 6, 8) for _ in range(400)]
    return letters + [a + b for a in letters for b in letters] + longer


@cache
def spacy_splitter(code: str) -> SpacySplitter | None:
    nlp = spacy_tokenizer(code)
    return SpacySplitter(nlp) if nlp is not None else None


def split_words_by_language(
    texts: pl.Series, splitter_of_doc: np.ndarray, splitters: list[str], keep_spaces: bool = False
) -> pl.DataFrame:
    """Word tokens ``(doc, pos, w)`` of every text, each document split by its language's word splitter.

    ``splitters`` names the splitters (a spaCy language code, or ``regex``) and ``splitter_of_doc`` gives
    each document's index into it. Rows are in document order, tokens in text order. ``keep_spaces`` keeps
    spaCy's whitespace tokens (for sentence boundaries); words never include them.
    """
    parts = []
    for k, name in enumerate(splitters):
        rows = np.nonzero(splitter_of_doc == k)[0]
        if len(rows) == 0:
            continue
        subset = texts.gather(rows) if len(rows) < len(texts) else texts
        splitter = spacy_splitter(name) if name != REGEX_SPLITTER else None
        if splitter is None:
            frame = explode_with_index(split_words(subset), "w")
            parts.append(pl.DataFrame({"doc": pl.Series(rows.astype(np.uint32)).gather(frame["doc"]), "w": frame["w"]}))
        else:
            parts.append(splitter.split(subset, rows, keep_spaces))
    if not parts:
        return pl.DataFrame(schema={"doc": pl.UInt32, "pos": pl.Int64, "w": pl.String})
    frame = pl.concat(parts) if len(parts) > 1 else parts[0]
    if len(parts) > 1:
        frame = frame.sort("doc", maintain_order=True)
    return frame.with_columns(pos=pl.int_range(pl.len()).over("doc")).select("doc", "pos", "w")


def count_sentences(tokens: pl.DataFrame, n_items: int) -> np.ndarray:
    """Sentences per item as spaCy's sentencizer counts them, from ``(doc, w)`` token rows in order.

    A sentence ends at a sentence terminator (``.``, ``!``, ``?``, ``。`` …); the next sentence starts at
    the first following token that is neither punctuation nor a terminator. An item with tokens has at
    least one sentence.
    """
    flags = tokens.select(
        "doc",
        terminator=pl.col("w").is_in(pl.Series(sorted(sentence_terminators())).implode()),
        punct=pl.col("w").str.contains(_PUNCT_TOKEN),
    ).with_columns(seen=pl.col("terminator").cast(pl.Int64).cum_sum().over("doc"))
    starts = (
        flags.filter(~pl.col("punct") & ~pl.col("terminator"))
        .with_columns(before=pl.col("seen").shift(1, fill_value=0).over("doc"))
        .filter(pl.col("seen") > pl.col("before"))
    )
    sentences = np.bincount(starts["doc"].to_numpy(), minlength=n_items)
    has_tokens = np.bincount(tokens["doc"].to_numpy(), minlength=n_items) > 0
    return sentences + has_tokens
