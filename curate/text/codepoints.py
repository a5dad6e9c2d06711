"""Per-code-point tables and UTF-8 decoding for numba kernels that read text straight from Arrow buffers
(dedup's normalisation, decontamination's word n-grams).

Classes: digit (Unicode Nd), separator (punctuation and symbols, P* and S*), space (Z*, tab, newlines,
U+0085), combining mark (Mn), other. Tables cover planes 0 and 1; code points beyond are letters, unchanged.
"""

from __future__ import annotations

import functools
import unicodedata

import numba as nb
import numpy as np

TABLE_SIZE = 0x20000  # code points in the tables (planes 0 and 1); beyond: letters, unchanged
OTHER, DIGIT, SEPARATOR, SPACE, MARK = 0, 1, 2, 3, 4


@functools.lru_cache(maxsize=1)
def codepoint_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per code point: lowercase (when one code point), accent-free base (NFKD without Mn, when one code point),
    and class (see the module docstring)."""
    lower = np.arange(TABLE_SIZE, dtype=np.int32)
    base = np.arange(TABLE_SIZE, dtype=np.int32)
    classes = np.zeros(TABLE_SIZE, dtype=np.uint8)
    for cp in range(TABLE_SIZE):
        char = chr(cp)
        low = char.lower()
        if len(low) == 1:
            lower[cp] = ord(low)
        category = unicodedata.category(char)
        if category == "Nd":
            classes[cp] = DIGIT
        elif category[0] in "PS":
            classes[cp] = SEPARATOR
        elif category[0] == "Z" or cp in (9, 10, 11, 12, 13, 0x85):
            classes[cp] = SPACE
        elif category == "Mn":
            classes[cp] = MARK
        decomposed = [c for c in unicodedata.normalize("NFKD", char) if unicodedata.category(c) != "Mn"]
        if len(decomposed) == 1:
            base[cp] = ord(decomposed[0])
    return lower, base, classes


@nb.njit(inline="always", cache=True)
def decode_utf8(data, i):
    """(code point, byte length) of the UTF-8 sequence at data[i] (invalid bytes read as themselves)."""
    b0 = np.int32(data[i])
    if b0 < 0x80:
        return b0, 1
    if b0 >= 0xF0 and i + 3 < len(data):
        return ((b0 & 0x07) << 18) | ((np.int32(data[i + 1]) & 0x3F) << 12) | \
            ((np.int32(data[i + 2]) & 0x3F) << 6) | (np.int32(data[i + 3]) & 0x3F), 4
    if b0 >= 0xE0 and i + 2 < len(data):
        return ((b0 & 0x0F) << 12) | ((np.int32(data[i + 1]) & 0x3F) << 6) | (np.int32(data[i + 2]) & 0x3F), 3
    if b0 >= 0xC0 and i + 1 < len(data):
        return ((b0 & 0x1F) << 6) | (np.int32(data[i + 1]) & 0x3F), 2
    return b0, 1


@nb.njit(inline="always", cache=True)
def encode_utf8(out, o, cp):
    """Write code point ``cp`` as UTF-8 at out[o]; returns the position after it."""
    if cp < 0x80:
        out[o] = cp
        return o + 1
    if cp < 0x800:
        out[o] = 0xC0 | (cp >> 6)
        out[o + 1] = 0x80 | (cp & 0x3F)
        return o + 2
    if cp < 0x10000:
        out[o] = 0xE0 | (cp >> 12)
        out[o + 1] = 0x80 | ((cp >> 6) & 0x3F)
        out[o + 2] = 0x80 | (cp & 0x3F)
        return o + 3
    out[o] = 0xF0 | (cp >> 18)
    out[o + 1] = 0x80 | ((cp >> 12) & 0x3F)
    out[o + 2] = 0x80 | ((cp >> 6) & 0x3F)
    out[o + 3] = 0x80 | (cp & 0x3F)
    return o + 4


@nb.njit(inline="always", cache=True)
def char_class(classes, cp):
    return classes[cp] if cp < len(classes) else OTHER
