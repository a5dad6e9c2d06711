"""Text splitting shared by the stages, vectorised over whole Arrow/polars columns.

Words (curate's own split, used where no spaCy tokenizer applies: see curate.text.words for the reference
split the quality filters use)
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

Whitespace
    Python's ``str.isspace`` set, which the reference filters strip and split on.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

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
#: the characters Python's ``str.isspace`` accepts (what ``strip()`` and ``split()`` remove, and where spaCy
#: cuts a text): Unicode White_Space plus U+001C..U+001F
PYTHON_SPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
#: the same set inside a regex character class
PYTHON_SPACE_CLASS = r"\s\x1c-\x1f"
#: a run of characters that are not Python whitespace (what ``str.split()`` returns)
NON_SPACE_RUN = rf"[^{PYTHON_SPACE_CLASS}]+"


def _series(texts: pa.Array | pa.ChunkedArray | pl.Series) -> pl.Series:
    if isinstance(texts, pl.Series):
        return texts
    return pl.Series("text", texts)


def split_words(texts: pa.Array | pa.ChunkedArray | pl.Series) -> pl.Series:
    """Tokens (words and punctuation) of every text, as a list column."""
    return _series(texts).str.extract_all(TOKEN_PATTERN)


def string_buffers(texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(bytes as uint8, offsets as int64) of a string array without copying the text; nulls read as empty."""
    texts = texts.cast(pa.large_string()) if texts.type != pa.large_string() else texts
    if texts.null_count:
        texts = pc.fill_null(texts, "")
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    _, offsets_buf, data_buf = texts.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[texts.offset : texts.offset + len(texts) + 1]
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    return data, offsets


def explode_with_index(lists: pl.Series, name: str) -> pl.DataFrame:
    """Long frame ``(doc, pos, <name>)`` from a list column: one row per element, in order."""
    frame = pl.DataFrame({name: lists}).with_row_index("doc")
    return (
        frame.explode(name)
        .drop_nulls(name)
        .with_columns(pl.int_range(pl.len()).over("doc").alias("pos"))
        .select("doc", "pos", name)
    )
