"""In-Context Pretraining's document order (Shi et al., 2023) on arrays: embed, cluster, find neighbours, traverse.

- ``embed``: hashed bag of words (lower-cased letter/digit runs, XXH64), sublinear term frequency
  (1 + log tf), reduced by a random ±1 projection to ``EMBED_DIMS`` dimensions whose signs are drawn from the
  word's hash (no projection matrix is stored), L2-normalised. Cosine similarity is the dot product.
- ``spherical_kmeans`` / ``nearest_centroid``: the clusters that shard the order (Lloyd's iterations on the
  unit sphere, seeded start).
- ``neighbours``: each document's k most similar others, with hnswlib (HNSW) above ``EXACT_LIMIT``
  documents, exactly below it (``exact_neighbours``).
- ``greedy_path``: the traversal of the released ICP code (``sort/sort.py`` of swj0419/in-context-pretraining):
  from the current document, go to its most similar unvisited neighbour; when every neighbour is visited,
  jump to an unvisited document (here: the next unvisited one in a seeded random order).
"""

from __future__ import annotations

import numba as nb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.hashing import fmix64, hash_strings

EMBED_DIMS = 128
EXACT_LIMIT = 4096  # clusters up to this many documents get exact neighbours (a few matrix products)
_WORD_SPLIT = r"[^\p{L}\p{N}]+"
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@nb.njit(cache=True)
def _project(hashes, offsets, seed, out):
    """Row d of ``out`` += (1 + log tf) · signs(word) for each distinct word of document d, then L2-normalise."""
    dims = out.shape[1]
    for d in range(len(offsets) - 1):
        words = np.sort(hashes[offsets[d]:offsets[d + 1]])
        i = 0
        while i < len(words):
            j = i + 1
            while j < len(words) and words[j] == words[i]:
                j += 1
            weight = np.float32(1.0 + np.log(j - i))
            for block in range(dims // 64):
                bits = fmix64(words[i] ^ (seed + np.uint64(block + 1) * _GOLDEN))
                for b in range(64):
                    if (bits >> np.uint64(b)) & np.uint64(1):
                        out[d, block * 64 + b] += weight
                    else:
                        out[d, block * 64 + b] -= weight
            i = j
        norm = np.sqrt(np.sum(out[d] * out[d]))
        if norm > 0:
            out[d] /= norm


def embed(text: pa.Array | pa.ChunkedArray, seed: int = 0, dims: int = EMBED_DIMS) -> np.ndarray:
    """(n, dims) float32 unit vectors of a text column (a text without any word gets the zero vector)."""
    words = pc.split_pattern_regex(pc.utf8_lower(text), _WORD_SPLIT)
    if isinstance(words, pa.ChunkedArray):
        words = words.combine_chunks()
    counts = pc.fill_null(pc.list_value_length(words), 0).to_numpy()
    flat = pc.list_flatten(words)
    real = pc.greater(pc.binary_length(flat), 0).to_numpy(zero_copy_only=False)
    doc = np.repeat(np.arange(len(counts)), counts)[real]
    hashes = hash_strings(flat.filter(pa.array(real)), 0)
    offsets = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(np.bincount(doc, minlength=len(counts)), out=offsets[1:])
    out = np.zeros((len(counts), dims), np.float32)
    _project(hashes, offsets, np.uint64(seed), out)
    return out


def normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.where(norms > 0, norms, 1)).astype(np.float32)


def nearest_centroid(vectors: np.ndarray, centroids: np.ndarray, chunk: int = 16_384) -> np.ndarray:
    """Index of the most similar centroid of each vector (int32)."""
    out = np.empty(len(vectors), np.int32)
    for start in range(0, len(vectors), chunk):
        out[start:start + chunk] = np.argmax(vectors[start:start + chunk] @ centroids.T, axis=1)
    return out


def spherical_kmeans(sample: np.ndarray, k: int, seed: int, iterations: int = 20) -> np.ndarray:
    """(k, dims) unit centroids: Lloyd's iterations by cosine from k distinct sample points drawn with ``seed``;
    a centroid that loses every point keeps its place."""
    k = max(1, min(k, len(sample)))
    rng = np.random.default_rng(seed)
    centroids = sample[np.sort(rng.choice(len(sample), k, replace=False))].copy()
    for _ in range(iterations):
        assigned = nearest_centroid(sample, centroids)
        order = np.argsort(assigned, kind="stable")
        present, starts = np.unique(assigned[order], return_index=True)
        sums = np.add.reduceat(sample[order], starts, axis=0)
        moved = centroids.copy()
        moved[present] = normalise(sums)
        if np.array_equal(moved, centroids):
            break
        centroids = moved
    return centroids


def exact_neighbours(vectors: np.ndarray, k: int, chunk: int = 4096) -> np.ndarray:
    """(n, k) the k most similar other documents of each, most similar first (-1 where n ≤ k)."""
    n = len(vectors)
    out = np.full((n, k), -1, np.int64)
    take = min(k, n - 1)
    if take <= 0:
        return out
    for start in range(0, n, chunk):
        sims = vectors[start:start + chunk] @ vectors.T
        rows = np.arange(len(sims))
        sims[rows, start + rows] = -np.inf
        top = np.argpartition(-sims, take - 1, axis=1)[:, :take]
        order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1, kind="stable")
        out[start:start + chunk, :take] = np.take_along_axis(top, order, axis=1)
    return out


def hnsw_neighbours(vectors: np.ndarray, k: int, seed: int, m: int = 16, ef: int = 100) -> np.ndarray:
    """(n, k) approximate most similar others by inner product with hnswlib, built and searched on one thread
    (the graph, and so the result, then depends only on the vectors and the seed)."""
    import hnswlib

    n, dims = vectors.shape
    index = hnswlib.Index(space="ip", dim=dims)
    index.init_index(max_elements=n, ef_construction=ef, M=m, random_seed=seed)
    index.set_num_threads(1)
    index.add_items(vectors, np.arange(n))
    index.set_ef(max(ef, k + 1))
    labels, _ = index.knn_query(vectors, k=k + 1)
    labels = labels.astype(np.int64)
    own = labels == np.arange(n)[:, None]
    # drop the document itself (or, where the search missed it, the least similar candidate)
    drop = np.where(own.any(axis=1), own.argmax(axis=1), k)
    keep = np.ones_like(labels, dtype=bool)
    keep[np.arange(n), drop] = False
    return labels[keep].reshape(n, k)


def neighbours(vectors: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Each document's k most similar others: exact for small sets, HNSW above ``EXACT_LIMIT``."""
    if len(vectors) <= EXACT_LIMIT:
        return exact_neighbours(vectors, k)
    return hnsw_neighbours(vectors, k, seed)


@nb.njit(cache=True)
def _greedy_path(neighbours, jumps):
    n = len(neighbours)
    visited = np.zeros(n, np.bool_)
    path = np.empty(n, np.int64)
    filled, cursor, paths = 0, 0, 0
    while filled < n:
        while visited[jumps[cursor]]:
            cursor += 1
        current = jumps[cursor]
        paths += 1
        while current >= 0:
            visited[current] = True
            path[filled] = current
            filled += 1
            following = -1
            for j in range(neighbours.shape[1]):
                candidate = neighbours[current, j]
                if candidate >= 0 and not visited[candidate]:
                    following = candidate
                    break
            current = following
    return path, paths


def greedy_path(neighbour_table: np.ndarray, seed: int) -> tuple[np.ndarray, int]:
    """(visiting order, number of paths): every document once, each followed by its most similar unvisited
    neighbour; a dead end jumps to the next unvisited document of a random order drawn with ``seed``."""
    n = len(neighbour_table)
    if n == 0:
        return np.zeros(0, np.int64), 0
    jumps = np.random.default_rng(seed).permutation(n).astype(np.int64)
    return _greedy_path(np.ascontiguousarray(neighbour_table, dtype=np.int64), jumps)


def adjacent_similarity(vectors: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Cosine similarity of each consecutive pair of documents in ``order``."""
    ordered = vectors[order]
    return np.einsum("ij,ij->i", ordered[:-1], ordered[1:])
