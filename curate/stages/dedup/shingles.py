"""Text normalisation (pyarrow.compute, whole batches) and shingle hashing (numba, over the Arrow buffers).

Normalisation, one numba pass over the UTF-8 bytes per batch, each step switchable (docs/dedup-format.md):
  every run of digits (Unicode Nd), with an optional decimal part (`3.14`, `1,5`), becomes "0"; runs of
  punctuation/symbols (P*, S*) and whitespace (Z*, tab, newlines) become one space, trimmed at both ends;
  letters are lowercased (when the lowercase is one code point); accents are stripped when asked (off by
  default: each code point becomes its NFKD base without combining marks, when that is one code point, and
  combining marks are dropped). Code points above U+1FFFF pass through unchanged.

Shingles:
  words: the text is split on ASCII whitespace; each word is hashed ONCE with XXH64 (seed 0); the hash of
    the word n-gram w_i..w_{i+n-1} is fmix64(Σ w_{i+t}·M^{n-1-t} mod 2^64) with M = 0x9E3779B97F4A7C15, so no
    n-gram string is ever built. Documents with 1..n-1 words get one shingle made of all their words.
  chars: XXH64 (seed 0) of the UTF-8 bytes of every window of n code points; shorter documents get one
    shingle, the whole text.
  words, for text written without spaces: Chinese, Japanese, Thai, Lao, Khmer, Myanmar and Tibetan have no
    words to split, so whitespace "words" would be whole clauses and only identical text would match. A
    document whose `lang` names such a language (zh, ja, th, … and their ISO 639-3 codes), or whose letters
    are at least half in those scripts, gets char shingles of `spaceless_ngram` code points instead, chosen
    per document.
Empty documents (after normalisation) have no shingles and never join a cluster.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numba as nb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.hashing import ngram_hash, xxh64
from curate.text import string_buffers
from curate.text.codepoints import (
    DIGIT,
    MARK,
    OTHER,
    SEPARATOR,
    SPACE,
    TABLE_SIZE,
    char_class,
    codepoint_tables,
    decode_utf8,
    encode_utf8,
)

# Scripts written without spaces between words: Thai, Lao, Tibetan, Myanmar, Khmer, kana, CJK ideographs
# (beyond plane 1: the CJK extensions of planes 2 and 3)
_SPACELESS_RANGES = ((0x0E00, 0x0EFF), (0x0F00, 0x0FFF), (0x1000, 0x109F), (0x1780, 0x17FF), (0x3040, 0x30FF),
                     (0x31F0, 0x31FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0xFF66, 0xFF9F))
_SPACELESS_PLANES = (0x20000, 0x3FFFF)
SPACELESS_LANGS = frozenset({
    "zh", "zho", "chi", "cmn", "yue", "wuu", "gan", "hak", "nan", "lzh", "cdo", "hsn", "ja", "jpn",
    "th", "tha", "lo", "lao", "km", "khm", "my", "mya", "bur", "bo", "bod", "tib", "dz", "dzo",
})


@dataclass(frozen=True)
class Normalization:
    """Which normalisation steps run before shingling (all but accents on by default)."""

    lowercase: bool = True
    strip_accents: bool = False
    digits: bool = True
    punctuation: bool = True
    whitespace: bool = True

    def describe(self) -> str:
        steps = [name for name in ("lowercase", "strip_accents", "digits", "punctuation", "whitespace")
                 if getattr(self, name)]
        return ",".join(steps) or "none"


@functools.lru_cache(maxsize=1)
def _spaceless_table() -> np.ndarray:
    table = np.zeros(TABLE_SIZE, dtype=np.bool_)
    for low, high in _SPACELESS_RANGES:
        table[low : high + 1] = True
    return table


@nb.njit(parallel=True, cache=True)
def _normalize(data, offsets, lower, base, classes, flags, out, out_starts, out_lengths):
    do_lower, do_accents, do_digits, do_punct, do_space = flags[0], flags[1], flags[2], flags[3], flags[4]
    for d in nb.prange(len(offsets) - 1):
        i = offsets[d]
        end = offsets[d + 1]
        o = out_starts[d]
        pending_space = False  # a separator seen since the last character written
        while i < end:
            cp, width = decode_utf8(data, i)
            kind = char_class(classes, cp)
            if do_digits and kind == DIGIT:  # a run of digits, with an optional decimal part, becomes 0
                i += width
                fraction = False
                while i < end:
                    cp, width = decode_utf8(data, i)
                    if char_class(classes, cp) == DIGIT:
                        i += width
                    elif not fraction and (cp == 46 or cp == 44) and i + 1 < end and \
                            char_class(classes, decode_utf8(data, i + 1)[0]) == DIGIT:
                        fraction = True
                        i += 1
                    else:
                        break
                cp, width, kind = 48, 0, OTHER
            else:
                i += width
            if (do_punct and kind == SEPARATOR) or (do_space and kind == SPACE):
                pending_space = True
                continue
            if do_accents and kind == MARK:
                continue
            if pending_space:
                if o > out_starts[d] or not do_space:
                    o = encode_utf8(out, o, 32)
                pending_space = False
            if do_lower and cp < len(lower):
                cp = lower[cp]
            if do_accents and cp < len(base):
                cp = base[cp]
            o = encode_utf8(out, o, cp)
        if pending_space and not do_space:
            o = encode_utf8(out, o, 32)
        out_lengths[d] = o - out_starts[d]


@nb.njit(cache=True)
def _compact(out, out_starts, out_lengths, offsets):
    o = 0
    for d in range(len(out_lengths)):
        offsets[d] = o
        s = out_starts[d]
        for k in range(out_lengths[d]):
            out[o + k] = out[s + k]
        o += out_lengths[d]
    offsets[len(out_lengths)] = o


def normalize_buffers(texts: pa.Array, norm: Normalization) -> tuple[np.ndarray, np.ndarray]:
    """Normalise every string of a batch in one pass over its UTF-8 bytes: (bytes, int64 offsets)."""
    data, offsets = string_buffers(texts)
    lower, base, classes = codepoint_tables()
    flags = np.array([norm.lowercase, norm.strip_accents, norm.digits, norm.punctuation, norm.whitespace])
    sizes = np.diff(offsets)
    out_starts = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes + (sizes + 1) // 2 + 4, out=out_starts[1:])  # room for lowercase growing 2 → 3 bytes
    out = np.empty(out_starts[-1], dtype=np.uint8)
    out_lengths = np.empty(len(sizes), dtype=np.int64)
    _normalize(data, offsets, lower, base, classes, flags, out, out_starts, out_lengths)
    new_offsets = np.empty(len(sizes) + 1, dtype=np.int64)
    _compact(out, out_starts, out_lengths, new_offsets)
    return out[: new_offsets[-1]], new_offsets


def normalize(texts: pa.Array, norm: Normalization) -> pa.Array:
    """Apply `norm` to a string array (nulls stay null) with the numba kernel above."""
    data, offsets = normalize_buffers(texts, norm)
    validity = texts.buffers()[0] if texts.null_count and texts.offset == 0 else None
    if texts.null_count and validity is None:
        validity = pa.array(texts.is_valid().to_numpy(zero_copy_only=False)).buffers()[1]
    return pa.LargeStringArray.from_buffers(len(texts), pa.py_buffer(offsets), pa.py_buffer(data), validity,
                                            texts.null_count)


@nb.njit(inline="always", cache=True)
def _is_space(byte):
    return byte == 32 or (9 <= byte <= 13)


@nb.njit(cache=True)
def _count_words(data, offsets):
    n_docs = len(offsets) - 1
    counts = np.zeros(n_docs, dtype=np.int64)
    for d in range(n_docs):
        in_word = False
        c = 0
        for i in range(offsets[d], offsets[d + 1]):
            if _is_space(data[i]):
                in_word = False
            elif not in_word:
                in_word = True
                c += 1
        counts[d] = c
    return counts


@nb.njit(cache=True)
def _count_codepoints(data, offsets):
    n_docs = len(offsets) - 1
    counts = np.zeros(n_docs, dtype=np.int64)
    for d in range(n_docs):
        c = 0
        for i in range(offsets[d], offsets[d + 1]):
            if (data[i] & 0xC0) != 0x80:
                c += 1
        counts[d] = c
    return counts


def _shingle_offsets(units: np.ndarray, ngram: int) -> np.ndarray:
    per_doc = np.where(units >= ngram, units - ngram + 1, np.minimum(units, 1))
    out = np.zeros(len(units) + 1, dtype=np.int64)
    np.cumsum(per_doc, out=out[1:])
    return out


@nb.njit(parallel=True, cache=True)
def _word_shingles(data, offsets, word_offsets, shingle_offsets, ngram, out):
    n_docs = len(offsets) - 1
    words = np.empty(word_offsets[-1], dtype=np.uint64)
    zero = np.uint64(0)
    for d in nb.prange(n_docs):
        w = word_offsets[d]
        i = offsets[d]
        end = offsets[d + 1]
        while i < end:
            while i < end and _is_space(data[i]):
                i += 1
            if i >= end:
                break
            start = i
            while i < end and not _is_space(data[i]):
                i += 1
            words[w] = xxh64(data, start, i, zero)
            w += 1
        n_words = word_offsets[d + 1] - word_offsets[d]
        base = word_offsets[d]
        width = min(ngram, n_words)
        s = shingle_offsets[d]
        for k in range(shingle_offsets[d + 1] - s):
            out[s + k] = ngram_hash(words, base + k, width)


@nb.njit(parallel=True, cache=True)
def _char_shingles(data, offsets, shingle_offsets, ngram, out):
    n_docs = len(offsets) - 1
    zero = np.uint64(0)
    for d in nb.prange(n_docs):
        s = shingle_offsets[d]
        n_shingles = shingle_offsets[d + 1] - s
        if n_shingles == 0:
            continue
        starts = np.empty(n_shingles + ngram, dtype=np.int64)
        c = 0
        for i in range(offsets[d], offsets[d + 1]):
            if (data[i] & 0xC0) != 0x80:
                starts[c] = i
                c += 1
        starts[c] = offsets[d + 1]
        width = min(ngram, c)
        for k in range(n_shingles):
            out[s + k] = xxh64(data, starts[k], starts[k + width], zero)


@nb.njit(parallel=True, cache=True)
def _spaceless_share(data, offsets, table, planes_low, planes_high, out):
    """Share of each document's non-space code points that are in scripts written without spaces."""
    for d in nb.prange(len(offsets) - 1):
        i = offsets[d]
        letters = 0
        spaceless = 0
        while i < offsets[d + 1]:
            cp, width = decode_utf8(data, i)
            i += width
            if cp == 32 or (9 <= cp <= 13):
                continue
            letters += 1
            if (cp < len(table) and table[cp]) or (planes_low <= cp <= planes_high):
                spaceless += 1
        out[d] = spaceless / letters if letters else 0.0


def spaceless_documents(normalized: pa.Array, lang: pa.Array | None = None) -> np.ndarray:
    """Which documents are written without spaces: `lang` names such a language, or at least half of the
    text's non-space code points are in those scripts (whatever `lang` says: such text has no words)."""
    data, offsets = string_buffers(normalized)
    share = np.empty(len(offsets) - 1, dtype=np.float64)
    _spaceless_share(data, offsets, _spaceless_table(), *_SPACELESS_PLANES, share)
    chosen = share >= 0.5
    if lang is not None and (pa.types.is_string(lang.type) or pa.types.is_large_string(lang.type)):
        base = pc.utf8_lower(pc.extract_regex(lang, r"^(?P<base>[A-Za-z]+)").field("base"))
        named = pc.fill_null(pc.is_in(base, value_set=pa.array(sorted(SPACELESS_LANGS))), False)
        chosen |= named.to_numpy(zero_copy_only=False)
    return chosen


def shingle_hashes(
    normalized: pa.Array, shingle: str, ngram: int, spaceless_ngram: int = 0, lang: pa.Array | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Hash every shingle of every document: (flat uint64 hashes, int64 offsets per document).

    With `spaceless_ngram` > 0, word shingling gives documents written without spaces (see
    `spaceless_documents`) char shingles of that many code points instead.
    """
    if shingle == "words" and spaceless_ngram > 0:
        chars = spaceless_documents(normalized, lang)
        if chars.any():
            words = np.nonzero(~chars)[0]
            spaceless = np.nonzero(chars)[0]
            return _interleave(len(chars), [
                (words, *shingle_hashes(normalized.take(pa.array(words)), "words", ngram)),
                (spaceless, *shingle_hashes(normalized.take(pa.array(spaceless)), "chars", spaceless_ngram)),
            ])
    data, offsets = string_buffers(normalized)
    if shingle == "words":
        word_counts = _count_words(data, offsets)
        word_offsets = np.zeros(len(word_counts) + 1, dtype=np.int64)
        np.cumsum(word_counts, out=word_offsets[1:])
        shingle_offsets = _shingle_offsets(word_counts, ngram)
        out = np.empty(shingle_offsets[-1], dtype=np.uint64)
        _word_shingles(data, offsets, word_offsets, shingle_offsets, ngram, out)
    elif shingle == "chars":
        shingle_offsets = _shingle_offsets(_count_codepoints(data, offsets), ngram)
        out = np.empty(shingle_offsets[-1], dtype=np.uint64)
        _char_shingles(data, offsets, shingle_offsets, ngram, out)
    else:
        raise ValueError(f"unknown shingle kind {shingle!r} (expected words or chars)")
    return out, shingle_offsets


def _interleave(n_docs: int, groups: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Merge the (documents, hashes, offsets) of disjoint groups of documents back into document order."""
    counts = np.zeros(n_docs, dtype=np.int64)
    for docs, _, offsets in groups:
        counts[docs] = np.diff(offsets)
    merged_offsets = np.zeros(n_docs + 1, dtype=np.int64)
    np.cumsum(counts, out=merged_offsets[1:])
    out = np.empty(merged_offsets[-1], dtype=np.uint64)
    for docs, hashes, offsets in groups:
        out[np.repeat(merged_offsets[docs] - offsets[:-1], np.diff(offsets)) + np.arange(len(hashes))] = hashes
    return out, merged_offsets


@nb.njit(parallel=True, cache=True)
def _sort_unique_segments(values, offsets, counts):
    for d in nb.prange(len(offsets) - 1):
        segment = values[offsets[d] : offsets[d + 1]]
        segment.sort()
        n = 0
        for i in range(len(segment)):
            if i == 0 or segment[i] != segment[i - 1]:
                segment[n] = segment[i]
                n += 1
        counts[d] = n


@nb.njit(cache=True)
def _compact_segments(values, offsets, new_offsets):
    """Move each segment's first new_offsets[d+1] − new_offsets[d] values to new_offsets[d], in place."""
    for d in range(len(offsets) - 1):
        source = offsets[d]
        for i in range(new_offsets[d + 1] - new_offsets[d]):
            values[new_offsets[d] + i] = values[source + i]


def shingle_sets(hashes: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each document's shingle set as sorted unique uint32 (the low 32 bits of the shingle hashes).

    Used to verify candidate pairs by exact Jaccard; 32-bit values keep the stored sets small.
    """
    values = (hashes & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    counts = np.empty(len(offsets) - 1, dtype=np.int64)
    _sort_unique_segments(values, offsets, counts)
    new_offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=new_offsets[1:])
    _compact_segments(values, offsets, new_offsets)
    return values[: new_offsets[-1]], new_offsets
