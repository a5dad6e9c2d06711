"""Dataset Decomposition (Pouransari et al. 2024): cut each document into pieces of 2^k + 1 tokens.

Matches the reference `get_binary` of apple/ml-dataset-decomposition: while the remaining tokens r give
k = floor(log2(r - 1)) ≥ min_log2, take the first 2^k + 1 tokens (the +1 is the shifted target); what is left
below 2^min_log2 + 1 tokens is dropped. When k > max_log2 the piece size is capped: with `randomize`, k is drawn
from max_log2..min_log2 with probability ∝ 2^(max_log2 − k) (equal expected tokens per bucket), else k = max_log2.

Random draws are reproducible and independent of batching: the document numbered `ordinal` (curate pack numbers
them per unit, see `packers.document_number`) draws from ``numpy.random.default_rng([seed, ordinal])``, one
``rng.random()`` per capped piece, turned into k exactly as ``rng.choice(range(max_log2, min_log2 - 1, -1),
p=...)`` does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np


@dataclass
class Pieces:
    """Pieces of a batch: piece j is ``tokens[start[j]:start[j] + 2**log2[j] + 1]`` of document ``doc[j]``."""

    doc: np.ndarray  # int64 index of the document in the batch
    start: np.ndarray  # int64 offset into the batch's flat token array
    log2: np.ndarray  # int8


def capped_choice_cdf(min_log2: int, max_log2: int) -> tuple[np.ndarray, np.ndarray]:
    """(k values from max to min, cumulative probabilities) as the reference's `np.random.choice` uses them."""
    ks = np.arange(max_log2, min_log2 - 1, -1, dtype=np.int64)
    weights = 2.0 ** np.arange(max_log2 + 1 - min_log2)
    cdf = np.cumsum(weights / weights.sum())
    return ks, cdf / cdf[-1]


def _capped_uniforms(
    lengths: np.ndarray, ordinals: np.ndarray, min_log2: int, max_log2: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Uniform draws for documents long enough to need a capped piece (rare), as (flat draws, offsets)."""
    needs = np.flatnonzero(lengths - 1 >= (1 << (max_log2 + 1)))
    counts = np.zeros(len(lengths), np.int64)
    # Upper bound on capped pieces: every piece has at least 2^min + 1 tokens.
    counts[needs] = lengths[needs] // ((1 << min_log2) + 1) + 1
    offsets = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    draws = np.empty(int(offsets[-1]), np.float64)
    for i in needs:
        draws[offsets[i] : offsets[i + 1]] = np.random.default_rng([seed, int(ordinals[i])]).random(int(counts[i]))
    return draws, offsets


@numba.njit(cache=True, nogil=True)
def _cut(lengths, doc_offsets, min_log2, max_log2, randomize, draws, draw_offsets, ks, cdf):  # pragma: no cover - jit
    capacity = 0
    for n in lengths:
        capacity += n // ((1 << min_log2) + 1)
    doc = np.empty(capacity, np.int64)
    start = np.empty(capacity, np.int64)
    log2 = np.empty(capacity, np.int8)
    count = 0
    for i in range(len(lengths)):
        remaining = lengths[i]
        pos = doc_offsets[i]
        draw = draw_offsets[i]
        while remaining > 1:
            k = 0
            m = remaining - 1
            while m > 1:
                m >>= 1
                k += 1
            if k < min_log2:
                break
            if k > max_log2:
                if randomize:
                    j = np.searchsorted(cdf, draws[draw], side="right")
                    draw += 1
                    k = ks[j]
                else:
                    k = max_log2
            size = (1 << k) + 1
            doc[count] = i
            start[count] = pos
            log2[count] = k
            count += 1
            pos += size
            remaining -= size
    return doc[:count], start[:count], log2[:count]


def decompose(
    lengths: np.ndarray,
    doc_offsets: np.ndarray,
    ordinals: np.ndarray,
    *,
    min_log2: int = 8,
    max_log2: int = 13,
    randomize: bool = True,
    seed: int = 0,
) -> Pieces:
    """Pieces of every document of a batch (`lengths` include the EOS; `ordinals` number the documents)."""
    lengths = np.ascontiguousarray(lengths, dtype=np.int64)
    ks, cdf = capped_choice_cdf(min_log2, max_log2)
    if randomize:
        draws, draw_offsets = _capped_uniforms(lengths, np.asarray(ordinals), min_log2, max_log2, seed)
    else:
        draws, draw_offsets = np.zeros(0), np.zeros(len(lengths) + 1, np.int64)
    doc, start, log2 = _cut(
        lengths, np.asarray(doc_offsets, np.int64), min_log2, max_log2, randomize, draws, draw_offsets, ks, cdf
    )
    return Pieces(doc, start, log2)


def piece_matrix(tokens: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
    """The (n, width) matrix of tokens of n equal-length pieces (one fancy-indexing gather)."""
    return tokens[starts[:, None] + np.arange(width, dtype=np.int64)]
