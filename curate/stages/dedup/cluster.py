"""Out-of-core grouping of equal keys and union-find over compact document ids (MinHash bands); grouping of
equal 128-bit keys within one hash partition (exact dedup, `equal_key_groups`).

Each band (or exact-dedup key) is grouped separately: its keys are read part by part; when a band has more
than `partition_rows` keys they are first scattered by their top bits into partition files on disk, so only
one partition is sorted in memory at a time. Documents with equal keys are unioned; the union keeps the
smaller id as root, so every cluster's root is its first document in input order whatever the band order.
Resident memory beyond one partition: the parent array (4 bytes per document below 2^31 documents).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator

import numba as nb
import numpy as np

NO_KEY = np.uint64(0)  # band key of a document without shingles: never grouped


@nb.njit(cache=True)
def find(parent, x):
    root = x
    while parent[root] != root:
        root = parent[root]
    while parent[x] != root:  # path compression
        nxt = parent[x]
        parent[x] = root
        x = nxt
    return root


@nb.njit(cache=True)
def _union(parent, x, y):
    rx = find(parent, x)
    ry = find(parent, y)
    if rx < ry:
        parent[ry] = rx
    elif ry < rx:
        parent[rx] = ry


@nb.njit(cache=True)
def run_edges(keys, secondary, ids):
    """Edges (first id of a run, other id) for runs of equal (keys, secondary) in sorted keys; NO_KEY skipped."""
    n_edges = 0
    for i in range(1, len(keys)):
        if keys[i] == keys[i - 1] and secondary[i] == secondary[i - 1] and keys[i] != NO_KEY:
            n_edges += 1
    left = np.empty(n_edges, dtype=np.int64)
    right = np.empty(n_edges, dtype=np.int64)
    e = 0
    first = 0
    for i in range(1, len(keys)):
        if keys[i] == keys[i - 1] and secondary[i] == secondary[i - 1] and keys[i] != NO_KEY:
            a, b = ids[first], ids[i]
            left[e] = min(a, b)
            right[e] = max(a, b)
            e += 1
        else:
            first = i
    return left, right


@nb.njit(cache=True)
def union_pairs(parent, left, right):
    for i in range(len(left)):
        _union(parent, left[i], right[i])


@nb.njit(cache=True)
def joins_clusters(parent, left, right):
    """Whether each edge joins two different clusters of the forest so far (the others change nothing)."""
    out = np.empty(len(left), dtype=np.bool_)
    for i in range(len(left)):
        out[i] = find(parent, left[i]) != find(parent, right[i])
    return out


@nb.njit(cache=True)
def flatten(parent):
    """Point every document straight at its root (the smallest id of its cluster)."""
    for i in range(len(parent)):
        parent[i] = parent[parent[i]]  # parents have smaller ids, so they are already flat


def new_parent(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.int32 if n < 2**31 else np.int64)


def _group_in_memory(keys: np.ndarray, secondary: np.ndarray | None, ids: np.ndarray) -> Iterator[np.ndarray]:
    if secondary is None:
        order = np.argsort(keys, kind="stable")
        sec = keys = keys[order]  # no secondary key: comparing the key twice costs no memory
    else:
        order = np.lexsort((secondary, keys))
        sec, keys = secondary[order], keys[order]
    yield run_edges(keys, sec, ids[order].astype(np.int64))


def group_equal_keys(
    chunks: Iterable[tuple[np.ndarray, np.ndarray | None]],
    total: int,
    partition_rows: int,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Edges (lower id, higher id) joining documents with equal keys, partition by partition.

    `chunks` yields (keys, secondary or None) part by part, in id order; every document with a key shared by
    others gets one edge to the group's first document.
    """
    if total <= partition_rows:
        keys, secondary = _concat(chunks)
        yield from _group_in_memory(keys, secondary, np.arange(len(keys), dtype=np.int64))
        return
    bits = int(np.ceil(np.log2(total / partition_rows))) + 1
    with tempfile.TemporaryDirectory(prefix="curate-dedup-") as tmp:
        files = [open(os.path.join(tmp, f"p{i:05d}"), "wb") for i in range(1 << bits)]  # noqa: SIM115
        has_secondary = False
        try:
            start = 0
            for keys, secondary in chunks:
                ids = np.arange(start, start + len(keys), dtype=np.int64)
                start += len(keys)
                bucket = (keys >> np.uint64(64 - bits)).astype(np.int64)
                order = np.argsort(bucket, kind="stable")
                bounds = np.searchsorted(bucket[order], np.arange((1 << bits) + 1))
                has_secondary = secondary is not None
                columns = [keys, ids.view(np.uint64)] + ([secondary] if has_secondary else [])
                rows = np.stack(columns, axis=1)[order]
                for p in np.nonzero(np.diff(bounds))[0]:
                    rows[bounds[p] : bounds[p + 1]].tofile(files[p])
        finally:
            for fh in files:
                fh.close()
        width = 3 if has_secondary else 2
        for i in range(1 << bits):
            rows = np.fromfile(os.path.join(tmp, f"p{i:05d}"), dtype=np.uint64).reshape(-1, width)
            ids = rows[:, 1].view(np.int64)
            yield from _group_in_memory(rows[:, 0].copy(), rows[:, 2].copy() if has_secondary else None, ids)


def _concat(chunks: Iterable[tuple[np.ndarray, np.ndarray | None]]) -> tuple[np.ndarray, np.ndarray | None]:
    keys, secondary = [], []
    for k, s in chunks:
        keys.append(k)
        secondary.append(s)
    key = np.concatenate(keys) if keys else np.zeros(0, np.uint64)
    sec = None if not secondary or secondary[0] is None else np.concatenate(secondary)  # type: ignore[arg-type]
    return key, sec


def equal_key_groups(hi: np.ndarray, lo: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows sharing a 128-bit (hi, lo) key with another row: (row, first row of its group, group size).

    Rows are in input order, so each group's first row is its first document; sorted once (no union-find:
    equal keys are already the whole group).
    """
    rows = np.arange(len(hi), dtype=np.int64)
    order = np.lexsort((rows, lo, hi))
    hi, lo, rows = hi[order], lo[order], rows[order]
    starts = np.ones(len(rows), dtype=bool)
    starts[1:] = (hi[1:] != hi[:-1]) | (lo[1:] != lo[:-1])
    group = np.cumsum(starts) - 1
    sizes = np.bincount(group)[group] if len(rows) else np.zeros(0, np.int64)
    firsts = rows[np.nonzero(starts)[0]][group]
    shared = sizes > 1
    return rows[shared], firsts[shared], sizes[shared].astype(np.int64)


def union_edges(parent: np.ndarray, edges: Iterable[tuple[np.ndarray, np.ndarray]]) -> None:
    for left, right in edges:
        union_pairs(parent, left.astype(parent.dtype), right.astype(parent.dtype))


def distinct_edges(
    edges: Iterable[tuple[np.ndarray, np.ndarray]], total: int, limit: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The distinct edges, sorted, in batches of about `limit` (encoded as left·total + right while merging).

    Batches (one per band partition: more of them the larger the corpus) are merged into the distinct edges
    once they add up to as many, so the sorting work grows as E log E, not with E times the number of batches.
    `edges` is read lazily: what the caller does with a batch can change the edges that follow.
    """
    batches: list[np.ndarray] = []  # the distinct edges merged so far, then the batches since
    distinct = pending = 0
    for left, right in edges:
        batches.append(left * total + right)
        pending += len(left)
        if pending >= distinct:
            batches = [_merge_unique(batches)]
            distinct, pending = len(batches[0]), 0
            if distinct >= limit:
                codes = batches.pop()
                distinct = 0
                yield codes // total, codes % total
    if batches:
        codes = _merge_unique(batches)
        if len(codes):
            yield codes // total, codes % total


def _merge_unique(arrays: list[np.ndarray]) -> np.ndarray:
    """Sorted distinct values of the arrays (emptying the list), sorted in place: np.union1d would hold three
    copies."""
    merged = np.concatenate(arrays)
    arrays.clear()
    merged.sort()
    distinct = np.ones(len(merged), dtype=bool)
    distinct[1:] = merged[1:] != merged[:-1]
    return merged[distinct]


@nb.njit(parallel=True, cache=True)
def edge_jaccard(flat, offsets, left, right):
    """Exact Jaccard of sorted unique uint32 sets `flat[offsets[i]:offsets[i+1]]` for each edge (row indices)."""
    out = np.empty(len(left), dtype=np.float64)
    for e in nb.prange(len(left)):
        i, j = offsets[left[e]], offsets[right[e]]
        i_end, j_end = offsets[left[e] + 1], offsets[right[e] + 1]
        inter = 0
        while i < i_end and j < j_end:
            if flat[i] == flat[j]:
                inter += 1
                i += 1
                j += 1
            elif flat[i] < flat[j]:
                i += 1
            else:
                j += 1
        union = (offsets[left[e] + 1] - offsets[left[e]]) + (offsets[right[e] + 1] - offsets[right[e]]) - inter
        out[e] = inter / union if union else 0.0
    return out


def cluster_roots(parent: np.ndarray, matched: np.ndarray, chunk: int = 1 << 22) -> np.ndarray:
    """Sorted ids of the roots of clusters of ≥ 2 documents and of matched documents' clusters (`parent` flat).

    Read a chunk at a time: one byte per document besides the parent array."""
    is_root = np.zeros(len(parent), dtype=bool)
    for start in range(0, len(parent), chunk):
        roots = parent[start : start + chunk]
        is_root[roots[roots != np.arange(start, start + len(roots), dtype=parent.dtype)]] = True
    is_root[parent[matched]] = True
    return np.flatnonzero(is_root).astype(parent.dtype)


def cluster_ranks(roots: np.ndarray, parent_chunk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(positions in the chunk of documents whose root is in `roots`, the rank of that root in `roots`)."""
    if not len(roots):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    rank = np.searchsorted(roots, parent_chunk)
    found = np.flatnonzero(roots[np.minimum(rank, len(roots) - 1)] == parent_chunk)
    return found, rank[found]


@nb.njit(cache=True)
def best_members(ranks, ids, values, best_id, best_value):
    """Per cluster, the member with the largest value, ties to the lowest id (members come in id order).

    NaN ranks below every number (as a sort puts it last), so a cluster keeps a NaN member only when all are."""
    for i in range(len(ranks)):
        r = ranks[i]
        v = values[i]
        b = best_value[r]
        if best_id[r] < 0 or v > b or (np.isnan(b) and not np.isnan(v)):
            best_id[r] = ids[i]
            best_value[r] = v
