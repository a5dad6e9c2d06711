"""Language-aware text splitting shared by the stages, vectorised over whole Arrow/polars columns.

Words
    One regular expression (Rust `regex` syntax, run by polars over a whole column) that follows the
    behaviour of spaCy's rule-based tokenizers closely enough for document statistics:

    * URLs stay one token; a word runs from a non-punctuation character to the last non-punctuation
      character before a space, so inner punctuation stays (``Salon.com``, ``9:00AM``, ``1,000``) while
      leading/trailing punctuation becomes one-character tokens; hyphens split (``e-mail`` -> 3 tokens);
      an apostrophe starts a new token (``it's`` -> ``it`` ``'s``, like spaCy's contractions); single
      letters and common titles keep their period (``z.``, ``Dr.``); ``...`` and ``--`` runs are one token.
    * Scripts written without spaces (Han, Hiragana, Katakana, Thai, Lao, Khmer, Myanmar, Tibetan) are
      split into one token per character (plus its combining marks). This needs no dictionary, is
      deterministic and fast, and keeps per-document ratios stable; thresholds and stop words for these
      languages are therefore expressed in characters (see curate/data/quality/zh.yaml, ja.yaml).

Lines
    Split on ``\\n``; a ``\\r`` before it is dropped (CRLF files behave like LF files).

Paragraphs
    Blocks separated by two or more newlines (the Gopher definition).
"""

from __future__ import annotations

import polars as pl
import pyarrow as pa

#: scripts segmented per character because they are written without spaces between words
NO_SPACE_SCRIPTS = ("Han", "Hiragana", "Katakana", "Thai", "Lao", "Khmer", "Myanmar", "Tibetan")

_NO_SPACE_CLASS = "".join(rf"\p{{{script}}}" for script in NO_SPACE_SCRIPTS)
# a word starts and ends with a character that is not space, punctuation or symbol (letters, digits,
# format/control characters, so soft hyphens and mojibake bytes stay inside); inside it anything but
# spaces, apostrophes, hyphens and slashes may occur ("Salon.com", "9:00AM", "1,000", "x+y"), as in
# spaCy's tokenizer
_EDGE = rf"[^\s\p{{P}}\p{{S}}{_NO_SPACE_CLASS}]"
_INNER = rf"[^\s'’\-/{_NO_SPACE_CLASS}]"
_CORE = rf"{_EDGE}(?:{_INNER}*{_EDGE})?"
# abbreviations that keep their period (spaCy's tokenizer exceptions): single letters and common titles
_ABBREVIATION = r"(?:\p{L}|Mr|Mrs|Ms|Dr|St|Prof|Jr|Sr|Inc|Ltd|Co|Corp|vs|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)\."

#: a token that is a URL
URL_PATTERN = rf"(?:https?://|www\.)\S*{_EDGE}"
#: a token that is a word (not punctuation): URL, abbreviation, word, apostrophe suffix, no-space character
WORD_PATTERN = "|".join([URL_PATTERN, _ABBREVIATION, _CORE, rf"['’]{_CORE}", rf"[{_NO_SPACE_CLASS}]\p{{M}}*"])
#: any token: words, then ``...`` / ``--`` runs and single punctuation characters
TOKEN_PATTERN = rf"{WORD_PATTERN}|\.\.+|--+|\S"
#: paragraphs: maximal blocks not containing a blank line break (``\n\n``)
PARAGRAPH_PATTERN = r"[^\n](?:\n?[^\n])*"


def _series(texts: pa.Array | pa.ChunkedArray | pl.Series) -> pl.Series:
    if isinstance(texts, pl.Series):
        return texts
    return pl.Series("text", texts)


def split_words(texts: pa.Array | pa.ChunkedArray | pl.Series) -> pl.Series:
    """Tokens (words and punctuation) of every text, as a list column."""
    return _series(texts).str.extract_all(TOKEN_PATTERN)


def split_lines(texts: pa.Array | pa.ChunkedArray | pl.Series) -> pl.Series:
    """Lines of every text (split on ``\\n``, trailing ``\\r`` removed), as a list column."""
    return _series(texts).str.split("\n").list.eval(pl.element().str.strip_suffix("\r"))


def split_paragraphs(texts: pa.Array | pa.ChunkedArray | pl.Series) -> pl.Series:
    """Paragraphs (blocks separated by a blank line) of every stripped text, as a list column."""
    return _series(texts).str.strip_chars().str.extract_all(PARAGRAPH_PATTERN)


def explode_with_index(lists: pl.Series, name: str) -> pl.DataFrame:
    """Long frame ``(doc, pos, <name>)`` from a list column: one row per element, in order."""
    frame = pl.DataFrame({name: lists}).with_row_index("doc")
    return (
        frame.explode(name)
        .drop_nulls(name)
        .with_columns(pl.int_range(pl.len()).over("doc").alias("pos"))
        .select("doc", "pos", name)
    )
