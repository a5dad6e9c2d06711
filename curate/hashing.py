"""Numba hashing primitives over Arrow string buffers: XXH64, 64-bit finalisers, word n-gram hashes, mod (2^61 − 1)
arithmetic; ``hash_strings`` hashes every string of an Arrow array (dedup's keys and ids, mix apply's per-document draws).

Everything here is pure uint64 arithmetic (numba promotes uint64 mixed with signed ints to float, so every
constant is an explicit `np.uint64`). `xxh64` is bit-identical to `xxhash.xxh64_intdigest` (tested).
"""

from __future__ import annotations

import numba as nb
import numpy as np
import pyarrow as pa

from curate.text import string_buffers

MERSENNE_61 = np.uint64((1 << 61) - 1)
NGRAM_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)

_P1 = np.uint64(0x9E3779B185EBCA87)
_P2 = np.uint64(0xC2B2AE3D27D4EB4F)
_P3 = np.uint64(0x165667B19E3779F9)
_P4 = np.uint64(0x85EBCA77C2B2AE63)
_P5 = np.uint64(0x27D4EB2F165667C5)
_MASK29 = np.uint64((1 << 29) - 1)
_MASK32 = np.uint64(0xFFFFFFFF)
_U8 = np.uint64(8)
_U4 = np.uint64(4)
_U1 = np.uint64(1)


@nb.njit(inline="always", cache=True)
def _rotl(x, r):
    return (x << np.uint64(r)) | (x >> np.uint64(64 - r))


@nb.njit(inline="always", cache=True)
def _round(acc, lane):
    acc = acc + lane * _P2
    acc = _rotl(acc, 31)
    return acc * _P1


@nb.njit(inline="always", cache=True)
def _merge(acc, val):
    acc = acc ^ _round(np.uint64(0), val)
    return acc * _P1 + _P4


@nb.njit(inline="always", cache=True)
def _read_le(buf, i, width):
    """The ``width`` bytes at ``i`` as a little-endian unsigned integer."""
    v = np.uint64(0)
    for k in range(width):
        v |= np.uint64(buf[i + k]) << np.uint64(8 * k)
    return v


@nb.njit(cache=True)
def xxh64(buf, start, end, seed):
    """XXH64 of `buf[start:end]` (uint8 array) with a uint64 seed."""
    length = end - start
    i = start
    if length >= 32:
        v1 = seed + _P1 + _P2
        v2 = seed + _P2
        v3 = seed
        v4 = seed - _P1
        limit = end - 32
        while i <= limit:
            v1 = _round(v1, _read_le(buf, i, 8))
            v2 = _round(v2, _read_le(buf, i + 8, 8))
            v3 = _round(v3, _read_le(buf, i + 16, 8))
            v4 = _round(v4, _read_le(buf, i + 24, 8))
            i += 32
        h = _rotl(v1, 1) + _rotl(v2, 7) + _rotl(v3, 12) + _rotl(v4, 18)
        h = _merge(h, v1)
        h = _merge(h, v2)
        h = _merge(h, v3)
        h = _merge(h, v4)
    else:
        h = seed + _P5
    h = h + np.uint64(length)
    while i + 8 <= end:
        h = h ^ _round(np.uint64(0), _read_le(buf, i, 8))
        h = _rotl(h, 27) * _P1 + _P4
        i += 8
    if i + 4 <= end:
        h = h ^ (_read_le(buf, i, 4) * _P1)
        h = _rotl(h, 23) * _P2 + _P3
        i += 4
    while i < end:
        h = h ^ (np.uint64(buf[i]) * _P5)
        h = _rotl(h, 11) * _P1
        i += 1
    h = h ^ (h >> np.uint64(33))
    h = h * _P2
    h = h ^ (h >> np.uint64(29))
    h = h * _P3
    return h ^ (h >> np.uint64(32))


@nb.njit(inline="always", cache=True)
def fmix64(h):
    """splitmix64/murmur3 finaliser: full avalanche of a 64-bit value."""
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


@nb.njit(inline="always", cache=True)
def ngram_hash(words, start, width):
    """Hash of the word n-gram ``words[start:start + width]`` (uint64 word hashes): fmix64(Σ w_t·M^(width−1−t)
    mod 2^64), so no n-gram string is ever built."""
    h = np.uint64(0)
    for t in range(width):
        h = h * NGRAM_MULTIPLIER + words[start + t]
    return fmix64(h)


@nb.njit(cache=True)
def ngram_prefixes(words, n, prefix):
    """prefix[k] = Σ_{j<k} words[j]·M^(k−1−j) for k ≤ n, so that every n-gram hash costs O(1):
    ``ngram_hash(words, i, L) == ngram_hash_at(prefix, powers, i, L)``."""
    h = np.uint64(0)
    prefix[0] = h
    for k in range(n):
        h = h * NGRAM_MULTIPLIER + words[k]
        prefix[k + 1] = h


@nb.njit(cache=True)
def ngram_powers(max_width):
    """M^L for L = 0 … max_width (mod 2^64)."""
    powers = np.empty(max_width + 1, np.uint64)
    powers[0] = np.uint64(1)
    for width in range(1, max_width + 1):
        powers[width] = powers[width - 1] * NGRAM_MULTIPLIER
    return powers


@nb.njit(inline="always", cache=True)
def ngram_hash_at(prefix, powers, start, width):
    """:func:`ngram_hash` of the n-gram at ``start`` from the prefixes of :func:`ngram_prefixes`."""
    return fmix64(prefix[start + width] - prefix[start] * powers[width])


@nb.njit(inline="always", cache=True)
def mod61(x):
    """x mod (2^61 − 1) for any uint64 x."""
    r = (x & MERSENNE_61) + (x >> np.uint64(61))
    if r >= MERSENNE_61:
        r -= MERSENNE_61
    return r


@nb.njit(inline="always", cache=True)
def affine61(a, x, b):
    """(a·x + b) mod (2^61 − 1) exactly, for a, x, b < 2^61 (122-bit product from 32-bit halves)."""
    a_hi = a >> np.uint64(32)
    a_lo = a & _MASK32
    x_hi = x >> np.uint64(32)
    x_lo = x & _MASK32
    lo = a_lo * x_lo
    mid = a_hi * x_lo + a_lo * x_hi
    hi = a_hi * x_hi
    total = (
        (hi << np.uint64(3))
        + (mid >> np.uint64(29))
        + ((mid & _MASK29) << np.uint64(32))
        + (lo & MERSENNE_61)
        + (lo >> np.uint64(61))
        + b
    )
    r = (total & MERSENNE_61) + (total >> np.uint64(61))
    if r >= MERSENNE_61:
        r -= MERSENNE_61
    return r


@nb.njit(parallel=True, cache=True)
def _hash_strings(data, offsets, seed, out):
    for i in nb.prange(len(offsets) - 1):
        out[i] = xxh64(data, offsets[i], offsets[i + 1], seed)


def hash_strings(values: pa.Array, seed: int) -> np.ndarray:
    """XXH64 of each string's UTF-8 bytes (nulls hash as the empty string)."""
    data, offsets = string_buffers(values)
    out = np.empty(len(offsets) - 1, dtype=np.uint64)
    _hash_strings(data, offsets, np.uint64(seed), out)
    return out


def mix64(values: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser over a uint64 array (wrapping arithmetic): full avalanche of each value, for
    seeded per-document draws."""
    values = values ^ (values >> np.uint64(30))
    values = values * np.uint64(0xBF58476D1CE4E5B9)
    values = values ^ (values >> np.uint64(27))
    values = values * np.uint64(0x94D049BB133111EB)
    return values ^ (values >> np.uint64(31))
