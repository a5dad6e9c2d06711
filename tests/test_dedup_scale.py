"""MinHash verification out of core: the same verdicts as comparing every stored set in memory, on real text."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curate.io.options import IOOptions
from curate.stages.dedup import cluster as uf
from curate.stages.dedup import minhash_dedup, store
from curate.stages.dedup.params import SignatureParams


def _signature_store(shared_data, tmp_path):
    """Signatures of 2,000 UDHR paragraphs and 400 of their word-dropped copies, in 12 parts of 200 rows."""
    table = pq.read_table(shared_data / "udhr" / "paragraphs.parquet", columns=["id", "text"]).slice(0, 2_000)
    rng = np.random.default_rng(3)
    picked = rng.choice(table.num_rows, 400, replace=False)
    copies = []
    for row in picked:
        words = table["text"][int(row)].as_py().split()
        drop = rng.random(len(words)) < rng.uniform(0.0, 0.3)
        copies.append(" ".join(w for w, d in zip(words, drop, strict=True) if not d))
    corpus = pa.concat_tables([table, pa.table({"id": [f"copy-{i}" for i in range(len(copies))], "text": copies})])
    pq.write_table(corpus.take(rng.permutation(corpus.num_rows)), tmp_path / "corpus.parquet")
    out = tmp_path / "signatures"
    io = IOOptions(inputs=[str(tmp_path / "corpus.parquet")], output=str(out), max_rows_per_shard=200, quiet=True)
    minhash_dedup.compute_signatures(SignatureParams(), io, out)
    return store.part_files(out)


def test_out_of_core_verification_equals_comparing_all_sets_in_memory(shared_data, tmp_path, monkeypatch):
    parts = _signature_store(shared_data, tmp_path)
    assert len(parts) == 12
    total = int(store.part_rows(parts).sum())
    band_edges = [uf.group_equal_keys(((k, None) for k in store.read_column(parts, f"band_{b:03d}")), total, 1 << 20)
                  for b in range(3)]
    [(left, right)] = uf.distinct_edges((edge for edges in band_edges for edge in edges), total, 1 << 40)
    rng = np.random.default_rng(5)
    random_left = rng.integers(0, total, 3_000)
    left = np.concatenate([left, random_left])
    right = np.concatenate([right, (random_left + rng.integers(1, total, 3_000)) % total])
    sets = [minhash_dedup.part_sets(p, np.arange(n)) for p, n in zip(parts, store.part_rows(parts), strict=True)]
    values = np.concatenate([v for v, _ in sets])
    offsets = np.concatenate([[0]] + [o[1:] + sum(len(v) for v, _ in sets[:i]) for i, (_, o) in enumerate(sets)])
    expected = uf.edge_jaccard(values, offsets, left, right) >= 0.8
    assert 200 < expected.sum() < len(left) - 2_000  # band matches confirmed, random pairs refused

    monkeypatch.setattr(minhash_dedup, "SCRATCH_GROUPS", 5)  # 12 parts: groups of two and three parts
    assert np.array_equal(minhash_dedup.verified(parts, left, right, 0.8), expected)
    index = minhash_dedup.verified(parts, left, right, 0.8, right_parts=list(parts))  # --against's path
    assert np.array_equal(index, expected)


def test_checking_only_edges_that_join_clusters_gives_the_clusters_of_checking_all(shared_data, tmp_path):
    """The cluster pass checks candidate edges in bounded batches and skips those inside a cluster already:
    the clusters are those of verifying every candidate edge at once."""
    parts = _signature_store(shared_data, tmp_path)
    total = int(store.part_rows(parts).sum())

    def band_edges():
        return (edge for b in range(12) for edge in uf.group_equal_keys(
            ((k, None) for k in store.read_column(parts, f"band_{b:03d}")), total, 500))

    [(left, right)] = uf.distinct_edges(band_edges(), total, 1 << 40)
    ok = minhash_dedup.verified(parts, left, right, 0.8)
    assert 0 < ok.sum() < len(ok)  # some candidates are refused
    expected = uf.new_parent(total)
    uf.union_pairs(expected, left[ok].astype(expected.dtype), right[ok].astype(expected.dtype))
    uf.flatten(expected)
    checked = []

    def verify(a, b):
        checked.append(len(a))
        return minhash_dedup.verified(parts, a, b, 0.8)

    parent = uf.new_parent(total)
    minhash_dedup.union_verified(parent, band_edges(), verify, 40)
    uf.flatten(parent)
    assert np.array_equal(parent, expected)
    assert len(checked) > 3 and sum(checked) < len(left)  # several batches; edges inside a cluster skipped
