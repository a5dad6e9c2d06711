"""Dedup building blocks on arrays: hashing, shingles, MinHash, LSH parameters, union-find, rehydration."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import xxhash
from datasketch.lsh import _optimal_param

from curate.hashing import MERSENNE_61, NGRAM_MULTIPLIER, affine61, fmix64, xxh64
from curate.io.errors import UsageError
from curate.stages.dedup import cluster as uf
from curate.stages.dedup.minhash import LshParams, band_keys, permutations, signatures
from curate.stages.dedup.rehydrate import parse_table, repeats
from curate.stages.dedup.shingles import (
    Normalization,
    normalize,
    shingle_hashes,
    shingle_sets,
)
from curate.text import string_buffers


def test_xxh64_matches_the_xxhash_library():
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, 300, dtype=np.uint8)
    for length in [0, 1, 3, 4, 7, 8, 15, 31, 32, 33, 63, 64, 100, 300]:
        for seed in (0, 1, 2**63 + 5):
            assert xxh64(data, 0, length, np.uint64(seed)) == xxhash.xxh64_intdigest(data[:length].tobytes(), seed)


def test_affine61_is_exact_modular_arithmetic():
    rng = np.random.default_rng(1)
    p = (1 << 61) - 1
    for _ in range(2000):
        a, x, b = (int(v) for v in rng.integers(0, p, 3, dtype=np.uint64))
        assert affine61(np.uint64(a), np.uint64(x), np.uint64(b)) == (a * x + b) % p
    assert affine61(np.uint64(p - 1), np.uint64(p - 1), np.uint64(p - 1)) == ((p - 1) ** 2 + p - 1) % p


def test_normalization_steps_and_switches():
    texts = pa.array(["Héllo,  WORLD!\n3.14 and 42\u00a0times—ok", None, ""])
    assert normalize(texts, Normalization()).to_pylist() == ["héllo world 0 and 0 times ok", None, ""]
    accents = Normalization(strip_accents=True)
    assert normalize(texts, accents).to_pylist()[0].startswith("hello world")
    raw = Normalization(lowercase=False, digits=False, punctuation=False, whitespace=False)
    assert normalize(texts, raw).to_pylist() == texts.to_pylist()


def test_word_shingles_combine_word_hashes_arithmetically():
    text = pa.array(["alpha beta gamma delta epsilon zeta", "one two", "", "solo"])
    hashes, offsets = shingle_hashes(text, "words", 5)
    assert np.diff(offsets).tolist() == [2, 1, 0, 1]
    words = [xxhash.xxh64_intdigest(w.encode()) for w in ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"]]

    def ngram(ws):
        h = 0
        for w in ws:
            h = (h * int(NGRAM_MULTIPLIER) + w) % 2**64
        return int(fmix64(np.uint64(h)))

    assert hashes[0] == ngram(words[:5]) and hashes[1] == ngram(words[1:6])
    assert hashes[2] == ngram([xxhash.xxh64_intdigest(b"one"), xxhash.xxh64_intdigest(b"two")])


def test_char_shingles_hash_code_point_windows():
    hashes, offsets = shingle_hashes(pa.array(["héllo", "ab"]), "chars", 3)
    assert np.diff(offsets).tolist() == [3, 1]
    assert hashes.tolist() == [xxhash.xxh64_intdigest(s.encode()) for s in ("hél", "éll", "llo", "ab")]


def test_shingle_sets_are_sorted_unique_low_bits():
    hashes = np.array([5, 3, 5, 2**40 + 1, 9, 9], dtype=np.uint64)
    values, offsets = shingle_sets(hashes, np.array([0, 4, 6]))
    assert values.tolist() == [1, 3, 5, 9] and offsets.tolist() == [0, 3, 4]


def test_signatures_equal_the_definition_and_are_deterministic():
    hashes, offsets = shingle_hashes(pa.array(["the quick brown fox jumps over the lazy dog", ""]), "words", 3)
    a, b = permutations(16, seed=7)
    sig = signatures(hashes, offsets, a, b)
    p = int(MERSENNE_61)
    expected = [min((int(aj) * (int(h) % p) + int(bj)) % p for h in hashes[offsets[0] : offsets[1]])
                for aj, bj in zip(a, b, strict=True)]
    assert sig[0].tolist() == expected
    assert (sig[1] == MERSENNE_61).all()  # an empty document
    assert (signatures(hashes, offsets, *permutations(16, seed=7)) == sig).all()
    assert not (signatures(hashes, offsets, *permutations(16, seed=8)) == sig).all()


def test_minhash_estimates_jaccard():
    rng = np.random.default_rng(3)
    base = rng.integers(0, 2**63, 1000, dtype=np.uint64)
    other = np.concatenate([base[:800], rng.integers(0, 2**63, 200, dtype=np.uint64)])  # J = 800/1200
    sig = signatures(np.concatenate([base, other]), np.array([0, 1000, 2000]), *permutations(512, 1))
    assert abs((sig[0] == sig[1]).mean() - 800 / 1200) < 0.06


def test_lsh_parameters_come_from_datasketch_and_report_the_s_curve():
    lsh = LshParams.choose(0.8, 112, 0.1, 0.9)
    assert (lsh.bands, lsh.rows) == _optimal_param(0.8, 112, 0.1, 0.9) == (12, 9)
    assert lsh.candidate_probability(0.8) == pytest.approx(1 - (1 - 0.8**9) ** 12)
    assert "P(0.5)=" in lsh.describe() and "P(0.9)=" in lsh.describe() and "12 bands x 9 rows" in lsh.describe()


def test_band_keys_differ_between_bands_and_mark_equal_bands():
    sig = np.array([[1, 2, 3, 4], [1, 2, 9, 9]], dtype=np.uint64)
    keys = band_keys(sig, 2, 2)
    assert keys[0, 0] == keys[0, 1] and keys[1, 0] != keys[1, 1] and keys[0, 0] != keys[1, 0]


def _clusters(keys: np.ndarray, partition_rows: int) -> np.ndarray:
    parent = uf.new_parent(len(keys))
    chunks = [(keys[i : i + 7], None) for i in range(0, len(keys), 7)]
    uf.union_edges(parent, uf.group_equal_keys(iter(chunks), len(keys), partition_rows))
    uf.flatten(parent)
    return parent


def test_out_of_core_grouping_equals_in_memory_and_roots_are_first_ids():
    rng = np.random.default_rng(5)
    keys = rng.integers(1, 40, 500).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    keys[::11] = uf.NO_KEY
    in_memory = _clusters(keys, partition_rows=10_000)
    on_disk = _clusters(keys, partition_rows=50)
    assert (in_memory == on_disk).all()
    for key in np.unique(keys[keys != uf.NO_KEY]):
        members = np.nonzero(keys == key)[0]
        assert (in_memory[members] == members.min()).all()
    assert (in_memory[::11] == np.arange(500)[::11]).all()  # no key: singleton


def test_equal_key_groups_are_the_union_find_clusters_with_first_rows_as_roots():
    rng = np.random.default_rng(8)
    hi = rng.integers(1, 30, 400).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    lo = rng.integers(0, 2, 400).astype(np.uint64)  # equal high halves, different low halves: other keys
    rows, firsts, sizes = uf.equal_key_groups(hi, lo)
    parent = uf.new_parent(400)
    uf.union_edges(parent, uf.group_equal_keys(iter([(hi, lo)]), 400, 10_000))
    uf.flatten(parent)
    members, ranks = uf.cluster_ranks(uf.cluster_roots(parent, np.zeros(0, np.int64)), parent)
    member_sizes = np.bincount(ranks)[ranks]
    order = np.argsort(rows)
    assert rows[order].tolist() == members.tolist() and sizes[order].tolist() == member_sizes.tolist()
    assert (firsts[order] == parent[members]).all()
    assert uf.equal_key_groups(np.zeros(0, np.uint64), np.zeros(0, np.uint64))[0].size == 0


def test_cluster_lookup_searches_every_part_of_a_partitioned_table(tmp_path):
    """Exact dedup writes one clusters part per hash partition, each sorted on its own."""
    from curate.io.output import OutputDir, ShardWriter, UnitRecord
    from curate.stages.dedup import store
    from curate.stages.dedup.minhash_dedup import CLUSTER_SCHEMA, CLUSTERS, ClusterLookup

    out = OutputDir(tmp_path / "clusters")
    plan = {"stage": "test", "parameters": {}, "inputs": [], "units": [{"index": 0}, {"index": 1}]}
    out.prepare(plan, False)
    parts = [[(5, 1, 50, 2, True), (9, 0, 50, 2, False)], [(1, 7, 10, 2, True), (7, 3, 10, 2, False)]]
    records = []
    for index, rows in enumerate(parts):
        writer = ShardWriter(out, index, 1 << 20)
        writer.write(pa.table(list(zip(*rows, strict=True)), schema=CLUSTER_SCHEMA))
        records.append(UnitRecord(index, writer.commit()))
    out.finalize(plan, records, [], 0.0)
    store.write_header(out.path, {"kind": CLUSTERS}, plan)
    lookup = ClusterLookup(out.path)
    hi, lo = np.array([1, 5, 7, 9, 9, 2], np.uint64), np.array([7, 1, 3, 0, 1, 0], np.uint64)
    found = lookup.find(hi, lo)
    assert lookup.cluster_id[found[:4]].tolist() == [10, 50, 10, 50] and found[4:].tolist() == [-1, -1]


def test_cluster_members_sizes_and_keep_rules():
    parent = np.array([0, 0, 2, 2, 0, 5, 6], dtype=np.int32)
    roots = uf.cluster_roots(parent, np.array([6]), chunk=2)  # 6: a singleton matching an index
    assert roots.tolist() == [0, 2, 6]
    members, ranks = uf.cluster_ranks(roots, parent)
    assert members.tolist() == [0, 1, 2, 3, 4, 6] and ranks.tolist() == [0, 0, 1, 1, 0, 2]
    assert np.bincount(ranks).tolist() == [3, 2, 1]

    def kept(values):
        best_id, best = np.full(3, -1, np.int64), np.zeros(3)
        for chunk in (slice(0, 3), slice(3, 6)):  # members arrive part by part, in id order
            uf.best_members(ranks[chunk], members[chunk], np.asarray(values, float)[chunk], best_id, best)
        return best_id.tolist()

    assert kept([1.0, 5.0, 2.0, 2.0, 5.0, 0.0]) == [1, 2, 6]  # largest value; a tie goes to the lower id
    assert kept([-np.inf, -np.inf, np.nan, 3.0, np.inf, 0.0]) == [4, 3, 6]  # NaN loses to any number
    assert kept([np.nan, np.nan, np.nan, np.nan, np.nan, np.nan]) == [0, 2, 6]  # all NaN: the first


def test_edge_jaccard_on_sorted_sets():
    values = np.array([1, 2, 3, 4, 2, 3, 4, 5, 9], dtype=np.uint32)
    offsets = np.array([0, 4, 8, 9])
    out = uf.edge_jaccard(values, offsets, np.array([0, 0]), np.array([1, 2]))
    assert out.tolist() == [3 / 5, 0.0]


def test_rehydrate_table_uses_largest_key_at_most_size():
    table = parse_table("{1:1, 2:2, 3:3, 5:5, 100:8, 1000:1}")
    assert repeats(np.array([1, 2, 3, 4, 5, 99, 100, 999, 1000, 10**6]), table).tolist() == [1, 2, 3, 3, 5, 5, 8, 8, 1, 1]
    with pytest.raises(UsageError):
        parse_table("1-1")


def test_string_buffers_handle_slices_and_nulls():
    arr = pa.array(["xx", "abc", None, "de"]).slice(1)
    data, offsets = string_buffers(arr)
    assert [bytes(data[offsets[i] : offsets[i + 1]]) for i in range(3)] == [b"abc", b"", b"de"]


def test_kernels_give_the_same_keys_compiled_and_interpreted(tmp_path):
    """The numba kernels (cached or not) and plain Python agree bit for bit: NUMBA_DISABLE_JIT=1 in a child."""
    script = (
        "import sys, numpy as np, pyarrow as pa\n"
        "from curate.stages.dedup.minhash_dedup import SignatureComputer\n"
        "from curate.stages.dedup.params import SignatureParams\n"
        "keys, sets = SignatureComputer(SignatureParams(num_perm=16)).band_keys(pa.array(\n"
        "    ['Ünïcode text, with 3.5 numbers and more words than five', 'short', '']))\n"
        "values = np.frombuffer(sets.buffers()[2], np.uint32).astype(np.uint64)\n"
        "np.save(sys.argv[1], np.concatenate([keys.ravel(), values]))\n"
    )
    outputs = []
    for jit in ("0", "1"):
        out = tmp_path / f"keys{jit}.npy"
        env = {**os.environ, "NUMBA_DISABLE_JIT": jit, "PYTHONWARNINGS": "ignore"}
        subprocess.run([sys.executable, "-c", script, str(out)], check=True, env=env, cwd=Path(__file__).parent.parent)
        outputs.append(np.load(out))
    assert len(outputs[0]) > 16 and (outputs[0] == outputs[1]).all()


def _reference_normalize(text: str) -> str:
    """The documented normalisation, written plainly with unicodedata (code point by code point)."""
    import re
    import unicodedata

    def kind(c: str) -> str:
        cat = unicodedata.category(c)
        return "digit" if cat == "Nd" else "sep" if cat[0] in "PS" or cat[0] == "Z" or c in "\t\n\v\f\r\x85" else ""

    out, i = [], 0
    while i < len(text):
        c = text[i]
        if kind(c) == "digit":
            while i < len(text) and kind(text[i]) == "digit":
                i += 1
            if i + 1 < len(text) and text[i] in ".," and kind(text[i + 1]) == "digit":
                i += 1
                while i < len(text) and kind(text[i]) == "digit":
                    i += 1
            out.append("0")
            continue
        out.append(" " if kind(c) == "sep" else (c.lower() if len(c.lower()) == 1 else c))
        i += 1
    return re.sub(" +", " ", "".join(out)).strip(" ")


def test_normalization_kernel_matches_the_documented_rules_on_real_multilingual_text(shared_data):
    import polars as pl

    texts = pl.read_parquet(shared_data / "udhr" / "documents.parquet")["text"].to_list()[::4]
    texts += pl.read_parquet(shared_data / "spamassassin" / "emails.parquet")["text"].to_list()[:100]
    got = normalize(pa.array(texts), Normalization()).to_pylist()
    assert got == [_reference_normalize(t) for t in texts]


def test_store_parts_are_in_unit_order_past_five_digits(tmp_path):
    """Compact ids follow unit order: unit 100000 comes after unit 99999, overflow parts after their unit."""
    from curate.stages.dedup import store

    names = ["part-100000.parquet", "part-99999.parquet", "part-00003_0001.parquet", "part-00003.parquet",
             "part-10000.parquet"]
    for name in names:
        (tmp_path / name).touch()
    assert [p.name for p in store.part_files(tmp_path)] == [
        "part-00003.parquet", "part-00003_0001.parquet", "part-10000.parquet", "part-99999.parquet",
        "part-100000.parquet"]
    assert [store.part_unit(p) for p in store.part_files(tmp_path)] == [3, 3, 10000, 99999, 100000]
