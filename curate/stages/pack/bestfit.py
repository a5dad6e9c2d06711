"""Best-Fit-Decreasing packing (Ding et al. 2024, "Fewer Truncations Improve Language Modeling").

Documents longer than the sequence width W are split into W-token chunks (the only truncations left); the
chunks of a window are sorted longest first and each goes into the open bin with the least remaining room that
still fits. A segment tree over remaining capacities 1..W finds that bin in O(log W), so a window of N chunks
packs in O(N log W). Sequences are padded to W; `position_ids` restart at 0 for every chunk (-1 on padding) and
`doc_boundaries` lists where each chunk starts plus where the real tokens end, so a trainer can mask attention
across documents and ignore padding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from curate.stages.pack.tokenize import TokenBatch


@numba.njit(cache=True, nogil=True)
def _tree_add(tree, leaves, capacity, delta):  # pragma: no cover - jit
    node = leaves + capacity
    while node >= 1:
        tree[node] += delta
        node >>= 1


@numba.njit(cache=True, nogil=True)
def _smallest_open_capacity(tree, leaves, need):  # pragma: no cover - jit
    """Smallest capacity c ≥ need held by some open bin, or -1 (leftmost non-empty leaf at or after `need`)."""
    node = leaves + need
    if tree[node] > 0:
        return need
    while node > 1:
        if node % 2 == 0 and tree[node + 1] > 0:
            node += 1
            while node < leaves:
                node = 2 * node if tree[2 * node] > 0 else 2 * node + 1
            return node - leaves
        node >>= 1
    return -1


@numba.njit(cache=True, nogil=True)
def best_fit_decreasing(lengths, width):  # pragma: no cover - jit
    """Bin and offset of every chunk (lengths ≤ width) under Best-Fit-Decreasing, and the number of bins."""
    n = len(lengths)
    order = np.argsort(-lengths, kind="mergesort")  # longest first; ties keep input order
    leaves = 1
    while leaves < width + 1:
        leaves *= 2
    tree = np.zeros(2 * leaves, np.int64)
    head = np.full(width + 1, -1, np.int64)  # open bins by remaining capacity, as linked stacks
    next_bin = np.empty(n, np.int64)
    bin_of = np.empty(n, np.int64)
    offset_of = np.empty(n, np.int64)
    bins = 0
    for j in order:
        size = lengths[j]
        capacity = _smallest_open_capacity(tree, leaves, size) if size < width else -1
        if capacity < 0:
            b = bins
            bins += 1
            capacity = width
        else:
            b = head[capacity]
            head[capacity] = next_bin[b]
            _tree_add(tree, leaves, capacity, -1)
        bin_of[j] = b
        offset_of[j] = width - capacity
        left = capacity - size
        if left > 0:
            next_bin[b] = head[left]
            head[left] = b
            _tree_add(tree, leaves, left, 1)
    return bin_of, offset_of, bins


@numba.njit(cache=True, nogil=True)
def _place_chunks(tokens, lengths, destinations, input_ids, position_ids):  # pragma: no cover - jit
    """Copy chunk i (the next lengths[i] tokens) to destinations[i] with positions 0, 1, …: no per-token index
    arrays, so a window holding a huge document costs only its output."""
    source = 0
    for i in range(len(lengths)):
        start = destinations[i]
        for k in range(lengths[i]):
            input_ids[start + k] = tokens[source + k]
            position_ids[start + k] = k
        source += lengths[i]


@dataclass
class PackedBins:
    input_ids: np.ndarray  # (bins, width), padded
    position_ids: np.ndarray  # (bins, width) int32, -1 on padding
    boundaries: np.ndarray  # flat int32 chunk starts and real-token end of every bin
    boundary_offsets: np.ndarray  # int64, bins + 1: bin i's boundaries are boundaries[o[i]:o[i+1]]
    docs_split: int
    padding: int


def chunk_lengths(doc_lengths: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(chunk lengths in document order, chunk count per document): documents cut into width-token chunks."""
    counts = np.maximum((doc_lengths + width - 1) // width, 0)
    total = int(counts.sum())
    lengths = np.full(total, width, np.int64)
    last = np.cumsum(counts) - 1
    has = counts > 0
    lengths[last[has]] = doc_lengths[has] - (counts[has] - 1) * width
    return lengths, counts


def pack_window(batch: TokenBatch, width: int, pad_id: int) -> PackedBins:
    """Best-fit pack every document of `batch` (one window) into padded sequences of `width` tokens."""
    lengths, counts = chunk_lengths(batch.lengths, width)
    bin_of, offset_of, bins = best_fit_decreasing(lengths, width)
    input_ids = np.full(bins * width, pad_id, batch.tokens.dtype)
    position_ids = np.full(bins * width, -1, np.int32)
    _place_chunks(batch.tokens, lengths, bin_of * width + offset_of, input_ids, position_ids)
    # boundaries: per bin its chunk offsets in order, then its used length
    order = np.lexsort((offset_of, bin_of))
    per_bin = np.bincount(bin_of, minlength=bins)
    used = np.bincount(bin_of, weights=lengths, minlength=bins).astype(np.int64)
    boundary_offsets = np.zeros(bins + 1, np.int64)
    np.cumsum(per_bin + 1, out=boundary_offsets[1:])
    boundaries = np.empty(int(boundary_offsets[-1]), np.int32)
    sorted_bins = bin_of[order]
    boundaries[np.arange(len(order)) + sorted_bins] = offset_of[order]
    boundaries[boundary_offsets[1:] - 1] = used
    return PackedBins(
        input_ids.reshape(bins, width),
        position_ids.reshape(bins, width),
        boundaries,
        boundary_offsets,
        docs_split=int(np.count_nonzero(counts > 1)),
        padding=int(bins * width - len(batch.tokens)),
    )
