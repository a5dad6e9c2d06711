"""MinHash signatures and LSH band keys, vectorised over whole batches of documents.

Permutation j maps a shingle hash h (reduced mod p = 2^61 − 1) to (a_j·h + b_j) mod p, computed exactly
(no 64-bit wrap-around); a_j ∈ [1, p), b_j ∈ [0, p) come from numpy's PCG64 seeded with --seed, so the
signatures depend only on the text, the normalisation, the shingling and the seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np
from datasketch.lsh import _optimal_param

from curate.hashing import MERSENNE_61, affine61, fmix64, mod61

EMPTY_SIGNATURE = MERSENNE_61  # larger than every permuted value: marks a document without shingles


def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The (a, b) coefficients of the `num_perm` permutations for `seed`."""
    rng = np.random.Generator(np.random.PCG64(seed))
    p = int(MERSENNE_61)
    a = rng.integers(1, p, size=num_perm, dtype=np.uint64)
    b = rng.integers(0, p, size=num_perm, dtype=np.uint64)
    return a, b


@nb.njit(parallel=True, cache=True)
def _signatures(hashes, offsets, a, b, out):
    n_docs = len(offsets) - 1
    num_perm = len(a)
    for d in nb.prange(n_docs):
        start = offsets[d]
        end = offsets[d + 1]
        reduced = np.empty(end - start, dtype=np.uint64)
        for i in range(end - start):
            reduced[i] = mod61(hashes[start + i])
        for j in range(num_perm):
            aj = a[j]
            bj = b[j]
            best = MERSENNE_61
            for i in range(end - start):
                v = affine61(aj, reduced[i], bj)
                if v < best:
                    best = v
            out[d, j] = best


def signatures(hashes: np.ndarray, offsets: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """MinHash signature matrix (documents × permutations, uint64); EMPTY_SIGNATURE rows for empty docs."""
    out = np.empty((len(offsets) - 1, len(a)), dtype=np.uint64)
    _signatures(hashes, offsets, a, b, out)
    return out


@nb.njit(cache=True)
def _band_keys(sigs, bands, rows, out):
    for d in range(sigs.shape[0]):
        for band in range(bands):
            h = np.uint64(band + 1)
            for r in range(rows):
                h = fmix64(h * np.uint64(0x9E3779B97F4A7C15) + sigs[d, band * rows + r])
            out[band, d] = h


def band_keys(sigs: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One 64-bit key per band per document (bands × documents): the hash of that band's `rows` values."""
    out = np.empty((bands, sigs.shape[0]), dtype=np.uint64)
    _band_keys(sigs, bands, rows, out)
    return out


@dataclass(frozen=True)
class LshParams:
    """Bands × rows for a threshold, from datasketch's weighted false-positive/false-negative minimisation."""

    threshold: float
    num_perm: int
    bands: int
    rows: int

    @classmethod
    def choose(
        cls, threshold: float, num_perm: int, fp_weight: float = 0.5, fn_weight: float = 0.5,
        bands: int | None = None, rows: int | None = None,
    ) -> LshParams:
        """The given geometry, or datasketch's choice for the threshold when none is given."""
        if bands is None or rows is None:
            bands, rows = _optimal_param(threshold, num_perm, fp_weight, fn_weight)
        return cls(threshold, num_perm, bands, rows)

    def candidate_probability(self, jaccard: float) -> float:
        """P(a pair with this Jaccard similarity shares at least one band) = 1 − (1 − s^r)^b."""
        return 1.0 - (1.0 - jaccard**self.rows) ** self.bands

    def describe(self) -> str:
        curve = ", ".join(f"P({s})={self.candidate_probability(s):.3f}" for s in (0.5, 0.7, 0.8, 0.9))
        return (f"LSH: {self.bands} bands x {self.rows} rows ({self.bands * self.rows} of {self.num_perm} "
                f"hashes) for threshold {self.threshold}; candidate probability {curve}")
