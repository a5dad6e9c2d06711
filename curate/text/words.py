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
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache

import numpy as np
import polars as pl

from curate.text import NON_SPACE_RUN, PYTHON_SPACE_CLASS, explode_with_index, split_words, string_buffers

_SPAN_OR_GAP = rf"{NON_SPACE_RUN}|[{PYTHON_SPACE_CLASS}]+"
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

    Spans are keyed by a 64-bit hash. The splitters of all languages together remember up to
    ``SPANS_REMEMBERED`` spans; past that, they all forget at once, so memory stays bounded whatever the
    corpus and however many languages it holds. Most spans are a plain word with at most one punctuation
    character before and after it (``word``, ``(word``, ``word,``, ``"word."``): when the language's affix
    rules provably split those characters off and leave the word whole (checked for every character and
    neighbouring letter when the splitter is built), their tokens come from one vectorised expression and
    only the other spans go through spaCy.
    """

    def __init__(self, nlp) -> None:
        self.nlp = nlp
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
        search = tokenizer.prefix_search if prefix else tokenizer.suffix_search
        match = search(span) if search is not None else None
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

    def split(self, texts: pl.Series, doc_ids: np.ndarray, keep_spaces: bool = False) -> Tokens:
        """The tokens of ``texts`` (document ids ``doc_ids``) in text order. With ``keep_spaces``, the
        whitespace tokens spaCy makes (any whitespace run but a single space) are tokens too."""
        pieces = (
            pl.DataFrame({"doc": doc_ids.astype(np.uint32),
                          "span": texts.str.extract_all(_SPAN_OR_GAP if keep_spaces else NON_SPACE_RUN)})
            .explode("span")
            .drop_nulls("span")
            .filter(pl.col("span") != " ")
            .with_columns(gap=pl.col("span").str.contains(f"^[{PYTHON_SPACE_CLASS}]"), key=pl.col("span").hash(seed=0))
        )
        if sum(splitter.known.height for splitter in _SPLITTERS.values()) > SPANS_REMEMBERED:
            for splitter in _SPLITTERS.values():
                splitter._forget()
        missing = pieces.filter(~pl.col("gap")).join(self.known, on="key", how="anti")
        if missing.height:
            self._learn(missing.unique("key", keep="first", maintain_order=True)["span"])
        found = pieces.join(self.known, on="key", how="left", maintain_order="left")
        gaps = found["gap"].to_numpy()
        first = found["first"].fill_null(0).to_numpy().copy()
        counts = found["count"].fill_null(1).to_numpy()
        vocab = self.tokens
        if gaps.any():  # a whitespace token is itself
            first[gaps] = len(vocab) + np.arange(gaps.sum())
            vocab = pl.concat([vocab, found["span"].filter(pl.Series(gaps)).rename("w")])
        occurrence = np.repeat(np.arange(len(first)), counts)
        starts = np.zeros(len(first) + 1, dtype=np.int64)
        np.cumsum(counts, out=starts[1:])
        token = first[occurrence] + np.arange(len(occurrence)) - starts[occurrence]
        return Tokens(found["doc"].to_numpy()[occurrence], token.astype(np.int32), vocab).compact()


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


#: spans whose tokens the splitters of all languages remember together (about 40 bytes each)
SPANS_REMEMBERED = 1_000_000
_SPLITTERS: dict[str, SpacySplitter] = {}


def spacy_splitter(code: str) -> SpacySplitter | None:
    """The splitter of a spaCy language code, built once per process (None: no offline tokenizer)."""
    if code not in _SPLITTERS:
        nlp = spacy_tokenizer(code)
        if nlp is None:
            return None
        _SPLITTERS[code] = SpacySplitter(nlp)
    return _SPLITTERS[code]


@dataclass
class Tokens:
    """Tokens in text order: each one's document (``doc``) and string (``vocab[token]``).

    Per-token features are computed once per distinct string (``vocab``) and gathered by ``token``.
    """

    doc: np.ndarray  # uint32, ascending
    token: np.ndarray  # int32 index into vocab
    vocab: pl.Series  # distinct strings

    def compact(self) -> Tokens:
        """The same tokens over a vocabulary of the distinct strings they use (one id per string)."""
        used = np.zeros(len(self.vocab), dtype=bool)
        used[self.token] = True
        strings = self.vocab.filter(pl.Series(used))
        distinct = strings.unique(maintain_order=True)
        if len(distinct) == len(self.vocab):
            return self
        id_of_used = (
            pl.DataFrame({"w": strings})
            .join(pl.DataFrame({"w": distinct, "id": np.arange(len(distinct), dtype=np.int64)}), on="w",
                  how="left", maintain_order="left")["id"]
            .to_numpy()
        )
        new_id = np.zeros(len(self.vocab), dtype=np.int32)  # old id -> new id, for the used ids
        new_id[used] = id_of_used
        return Tokens(self.doc, new_id[self.token], distinct)

    def subset(self, new_doc: np.ndarray) -> Tokens:
        """Tokens of the documents with ``new_doc[doc] >= 0``, renumbered to ``new_doc``."""
        doc = new_doc[self.doc]
        keep = doc >= 0
        return Tokens(doc[keep].astype(np.uint32), self.token[keep], self.vocab).compact()

    def per_token(self, values: np.ndarray | pl.Series) -> np.ndarray:
        """A feature of each distinct string, for every token."""
        return np.asarray(values)[self.token]

    def strings(self) -> pl.Series:
        return self.vocab.gather(self.token)


def _concat(parts: list[Tokens]) -> Tokens:
    """One token list from several (documents interleaved: stable by document)."""
    offsets = np.cumsum([0] + [len(p.vocab) for p in parts])
    doc = np.concatenate([p.doc for p in parts])
    token = np.concatenate([p.token + offset for p, offset in zip(parts, offsets, strict=False)])
    if len(doc) and (np.diff(doc.astype(np.int64)) < 0).any():
        order = np.argsort(doc, kind="stable")
        doc, token = doc[order], token[order]
    return Tokens(doc, token, pl.concat([p.vocab for p in parts])).compact()


def split_words_by_language(
    texts: pl.Series, splitter_of_doc: np.ndarray, splitters: list[str], keep_spaces: bool = False
) -> Tokens:
    """Word tokens of every text, each document split by its language's word splitter.

    ``splitters`` names the splitters (a spaCy language code, or ``regex``) and ``splitter_of_doc`` gives
    each document's index into it. ``keep_spaces`` keeps spaCy's whitespace tokens (for sentence
    boundaries); words never include them.
    """
    parts = []
    for k, name in enumerate(splitters):
        rows = np.nonzero(splitter_of_doc == k)[0]
        if len(rows) == 0:
            continue
        splitter = spacy_splitter(name) if name != REGEX_SPLITTER else None
        for piece_texts, piece_docs in _pieces(texts.gather(rows) if len(rows) < len(texts) else texts, rows):
            if splitter is not None:
                parts.append(splitter.split(piece_texts, piece_docs, keep_spaces))
                continue
            frame = explode_with_index(split_words(piece_texts), "w")
            vocab = frame["w"].unique(maintain_order=True)
            token = frame.select("w").join(
                pl.DataFrame({"w": vocab, "id": np.arange(len(vocab), dtype=np.int64)}), on="w", how="left",
                maintain_order="left",
            )["id"].to_numpy()
            parts.append(Tokens(piece_docs.astype(np.uint32)[frame["doc"].to_numpy()], token.astype(np.int32), vocab))
    if not parts:
        return Tokens(np.zeros(0, np.uint32), np.zeros(0, np.int32), pl.Series("w", [], dtype=pl.String))
    return parts[0] if len(parts) == 1 else _concat(parts)


#: characters of text split at once: bounds the memory of the long intermediate frames
PIECE_CHARS = 4_000_000


def _pieces(texts: pl.Series, docs: np.ndarray) -> Iterator[tuple[pl.Series, np.ndarray]]:
    """Groups of texts of about ``PIECE_CHARS`` characters; a longer text is cut at single spaces between
    two words (no token crosses such a cut, and no whitespace token is lost), its parts keeping its id."""
    lengths = texts.str.len_chars().fill_null(0).to_numpy()
    if lengths.sum() <= PIECE_CHARS:
        yield texts, docs
        return
    start = 0
    while start < len(texts):
        end, total = start, 0
        while end < len(texts) and (end == start or total + lengths[end] <= PIECE_CHARS):
            total += lengths[end]
            end += 1
        if end - start == 1 and total > PIECE_CHARS:
            for part in _cut_at_spaces(texts.slice(start, 1), PIECE_CHARS):
                yield part, docs[start : start + 1]
        else:
            yield texts.slice(start, end - start), docs[start:end]
        start = end


def _last_single_space(data: np.ndarray, low: int, high: int, first: bool = False) -> int | None:
    """The last (or first) byte in ``[low, high)`` that is a space between two printable ASCII bytes."""
    for lo in (range(low, high, 1 << 20) if first else [low]):
        hi = min(high, lo + (1 << 20)) if first else high
        window = data[lo - 1 : hi + 1]
        printable = (window >= 0x21) & (window <= 0x7E)
        found = np.nonzero((window[1:-1] == 0x20) & printable[:-2] & printable[2:])[0]
        if len(found):
            return lo + int(found[0] if first else found[-1])
    return None


def _cut_at_spaces(text: pl.Series, size: int) -> Iterator[pl.Series]:
    """Parts of one long text of roughly ``size`` characters (``size`` bytes at most), cut in its UTF-8
    bytes at single spaces between two printable ASCII characters: no span or whitespace run is cut."""
    data, offsets = string_buffers(text.to_arrow())
    data = data[offsets[0] : offsets[1]]
    start = 0
    while len(data) - start > size:
        cut = _last_single_space(data, start + size // 2, start + size)
        if cut is None:
            cut = _last_single_space(data, start + size, len(data) - 1, first=True)
            if cut is None:
                break
        yield pl.Series(text.name, [bytes(data[start:cut]).decode("utf-8")], dtype=pl.String)
        start = cut + 1  # the single space between the parts is no token
    yield pl.Series(text.name, [bytes(data[start:]).decode("utf-8")], dtype=pl.String)


def count_sentences(tokens: Tokens, n_items: int) -> np.ndarray:
    """Sentences per item as spaCy's sentencizer counts them, from the items' tokens (spaces included).

    A sentence ends at a sentence terminator (``.``, ``!``, ``?``, ``。`` …); the next sentence starts at
    the first following token that is neither punctuation nor a terminator. An item with tokens has at
    least one sentence.
    """
    terminator = tokens.per_token(
        tokens.vocab.is_in(pl.Series(sorted(sentence_terminators())).implode()).to_numpy()
    )
    normal = ~terminator & ~tokens.per_token(tokens.vocab.str.contains(_PUNCT_TOKEN).to_numpy())
    seen = np.cumsum(terminator)  # terminators so far (over all items: only differences count)
    doc = tokens.doc
    normal_at = np.nonzero(normal)[0]
    before = np.empty(len(normal_at), dtype=np.int64)
    if len(normal_at):
        # terminators before the item's previous normal token, or before the item's first token
        previous = np.concatenate([[-1], normal_at[:-1]])
        same_item = np.concatenate([[False], doc[normal_at[1:]] == doc[normal_at[:-1]]])
        item_start = np.searchsorted(doc, doc[normal_at], side="left")
        before = np.where(same_item, seen[np.maximum(previous, 0)], np.where(item_start > 0, seen[item_start - 1], 0))
    starts = normal_at[seen[normal_at] > before]
    has_tokens = np.bincount(doc, minlength=n_items) > 0
    return np.bincount(doc[starts], minlength=n_items) + has_tokens
