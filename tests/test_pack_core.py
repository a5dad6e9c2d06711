"""Packing algorithms on plain arrays: Dataset Decomposition, concat-and-chunk, Best-Fit-Decreasing, writers;
the tokenizer threads of a pack worker."""

from __future__ import annotations

import errno
import io
import itertools
import math
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer, models

from curate.io.errors import OutputError, UsageError
from curate.io.output import OutputDir, file_checksum
from curate.stages.pack.bestfit import best_fit_decreasing, pack_window
from curate.stages.pack.concat import ConcatChunker
from curate.stages.pack.curriculum import buckets_metadata, grow_p2_schedule
from curate.stages.pack.decompose import decompose
from curate.stages.pack.stage import PackParams, PackStage
from curate.stages.pack.tokenize import TokenBatch, resolve_eos
from curate.stages.pack.writers import MegatronSequences, NpyMatrix


def reference_get_binary(seq: list[int], min_log2: int, max_log2: int, rng=None) -> list[tuple[int, list[int]]]:
    """Straight transcription of apple/ml-dataset-decomposition's get_binary (pieces in cutting order)."""
    out = []
    ps = 2 ** np.arange(max_log2 + 1 - min_log2)
    ps = ps / ps.sum()
    while len(seq) > 1:
        k = int(math.log2(len(seq) - 1))
        if k < min_log2:
            break
        if k > max_log2:
            k = int(rng.choice(np.arange(max_log2, min_log2 - 1, -1), p=ps)) if rng is not None else max_log2
        out.append((k, seq[: (1 << k) + 1]))
        seq = seq[(1 << k) + 1 :]
    return out


def batch_of(lengths: list[int], seed: int = 0) -> TokenBatch:
    rng = np.random.default_rng(seed)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return TokenBatch(rng.integers(0, 50_000, int(offsets[-1])).astype(np.uint32), offsets)


def pieces_by_doc(batch: TokenBatch, pieces) -> list[list[tuple[int, list[int]]]]:
    out: list[list[tuple[int, list[int]]]] = [[] for _ in range(batch.num_docs)]
    for d, s, k in zip(pieces.doc, pieces.start, pieces.log2, strict=True):
        out[d].append((int(k), batch.tokens[s : s + (1 << int(k)) + 1].tolist()))
    return out


@pytest.mark.parametrize(("length", "sizes", "dropped"), [(1_000, [513, 257], 230), (10_000, [8193, 1025, 513, 257], 12)])
def test_decompose_reference_examples(length, sizes, dropped):
    batch = batch_of([length])
    pieces = decompose(batch.lengths, batch.offsets, np.zeros(1, np.int64), randomize=False)
    got = [(1 << int(k)) + 1 for k in pieces.log2]
    assert got == sizes
    assert length - sum(got) == dropped
    assert list(pieces.start) == list(np.concatenate([[0], np.cumsum(got)[:-1]]))


@pytest.mark.parametrize("randomize", [False, True])
def test_decompose_matches_independent_reference(randomize):
    lengths = [1, 2, 256, 257, 258, 513, 514, 1_000, 10_000, 16_385, 16_386, 16_387, 40_000, 123_457, 300_001]
    lengths += list(np.random.default_rng(1).integers(1, 70_000, 40))
    batch = batch_of(lengths)
    ordinals = np.arange(len(lengths)) + 1_000
    pieces = decompose(batch.lengths, batch.offsets, ordinals, min_log2=8, max_log2=13, randomize=randomize, seed=5)
    got = pieces_by_doc(batch, pieces)
    for i, doc in enumerate(got):
        seq = batch.tokens[batch.offsets[i] : batch.offsets[i + 1]].tolist()
        rng = np.random.default_rng([5, int(ordinals[i])]) if randomize else None
        assert doc == reference_get_binary(seq, 8, 13, rng), f"document {i} (length {lengths[i]})"


def test_randomized_caps_give_equal_expected_tokens_per_bucket():
    batch = batch_of([2_000_000])
    pieces = decompose(batch.lengths, batch.offsets, np.zeros(1, np.int64), randomize=True, seed=3)
    tokens = np.bincount(pieces.log2, weights=(1 << pieces.log2.astype(np.int64)) + 1, minlength=14)[8:]
    share = tokens / tokens.sum()
    assert np.all(np.abs(share - 1 / 6) < 0.04), share  # each of the 6 buckets gets ~1/6 of the tokens


def test_decompose_other_bounds_and_batch_independence():
    lengths = list(np.random.default_rng(2).integers(1, 5_000, 200))
    whole = batch_of(lengths)
    ref = decompose(whole.lengths, whole.offsets, np.arange(200), min_log2=5, max_log2=9, seed=9)
    parts = []
    for lo, hi in [(0, 70), (70, 71), (71, 200)]:
        part = whole.slice(lo, hi)
        p = decompose(part.lengths, part.offsets, np.arange(lo, hi), min_log2=5, max_log2=9, seed=9)
        parts.append(p.log2)
    assert np.array_equal(np.concatenate(parts), ref.log2)
    assert ref.log2.min() >= 5 and ref.log2.max() <= 9


def brute_force_bfd(lengths: np.ndarray, width: int) -> list[int]:
    caps: list[int] = []
    for j in np.argsort(-lengths, kind="stable"):
        fits = [i for i, c in enumerate(caps) if c >= lengths[j]]
        best = min(fits, key=lambda i: caps[i]) if fits else None
        if best is None:
            caps.append(width)
            best = len(caps) - 1
        caps[best] -= int(lengths[j])
    return sorted(caps)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_best_fit_decreasing_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    width = 257
    lengths = np.minimum(rng.geometric(1 / 80, 1_500), width).astype(np.int64)
    bin_of, offset_of, bins = best_fit_decreasing(lengths, width)
    fill = np.bincount(bin_of, weights=lengths, minlength=bins)
    assert sorted((width - fill).astype(int).tolist()) == brute_force_bfd(lengths, width)
    # chunks in one bin never overlap and stay inside the bin
    order = np.lexsort((offset_of, bin_of))
    ends = offset_of[order] + lengths[order]
    same_bin = bin_of[order][1:] == bin_of[order][:-1]
    assert np.all(offset_of[order][1:][same_bin] >= ends[:-1][same_bin]) and ends.max() <= width


def test_pack_window_keeps_every_token_and_marks_boundaries():
    lengths = [5, 300, 1, 64, 64, 129, 700, 2, 33]
    batch = batch_of(lengths, seed=4)
    width = 129
    packed = pack_window(batch, width, pad_id=7)
    assert packed.padding == packed.input_ids.size - len(batch.tokens)
    assert packed.docs_split == 2  # 300 and 700 tokens exceed 129
    segments = []
    for row in range(len(packed.input_ids)):
        bounds = packed.boundaries[packed.boundary_offsets[row] : packed.boundary_offsets[row + 1]]
        assert bounds[0] == 0 and np.all(np.diff(bounds) > 0)
        used = bounds[-1]
        assert np.all(packed.position_ids[row, used:] == -1) and np.all(packed.input_ids[row, used:] == 7)
        for a, b in itertools.pairwise(bounds):
            assert packed.position_ids[row, a:b].tolist() == list(range(b - a))
            segments.append(tuple(packed.input_ids[row, a:b].tolist()))
    expected = []
    for i in range(batch.num_docs):
        doc = batch.tokens[batch.offsets[i] : batch.offsets[i + 1]].tolist()
        expected += [tuple(doc[j : j + width]) for j in range(0, len(doc), width)]
    assert sorted(segments) == sorted(expected)


def test_concat_chunker_streams_like_one_array_and_counts_splits():
    lengths = list(np.random.default_rng(5).integers(1, 40, 300))
    batch = batch_of(lengths)
    width = 17
    chunker = ConcatChunker(width)
    rows = [chunker.add(batch.slice(lo, hi)) for lo, hi in [(0, 1), (1, 120), (120, 121), (121, 300)]]
    tail = chunker.finish()
    full = len(batch.tokens) // width
    assert np.array_equal(np.concatenate(rows), batch.tokens[: full * width].reshape(full, width))
    assert tail["tail_tokens"] == len(batch.tokens) - full * width
    seq_of = np.arange(len(batch.tokens)) // width
    split = dropped = partial = 0
    for i in range(batch.num_docs):
        seqs = set(seq_of[batch.offsets[i] : batch.offsets[i + 1]].tolist())
        kept = {s for s in seqs if s < full}
        split += len(kept) > 1
        dropped += not kept
        partial += bool(kept) and len(kept) < len(seqs)
    assert (chunker.docs_split, tail["docs_dropped"], tail["docs_partially_dropped"]) == (split, dropped, partial)


def read_megatron(prefix: Path) -> tuple[list[np.ndarray], np.ndarray]:
    """Independent reader, from the .idx struct layout of Megatron-LM's indexed_dataset.py."""
    raw = (prefix.parent / (prefix.name + ".idx")).read_bytes()
    assert raw[:9] == b"MMIDIDX\x00\x00"
    (version,) = struct.unpack_from("<Q", raw, 9)
    (code,) = struct.unpack_from("<B", raw, 17)
    seq_count, doc_count = struct.unpack_from("<QQ", raw, 18)
    assert version == 1
    dtype = {8: np.uint16, 4: np.int32}[code]
    pos = 34
    sizes = np.frombuffer(raw, np.int32, seq_count, pos)
    pos += 4 * seq_count
    pointers = np.frombuffer(raw, np.int64, seq_count, pos)
    pos += 8 * seq_count
    docs = np.frombuffer(raw, np.int64, doc_count, pos)
    assert pos + 8 * doc_count == len(raw)
    data = np.fromfile(prefix.parent / (prefix.name + ".bin"), dtype)
    itemsize = np.dtype(dtype).itemsize
    return [data[p // itemsize : p // itemsize + n] for p, n in zip(pointers, sizes, strict=True)], docs


def test_megatron_and_npy_writers_round_trip(tmp_path: Path):
    out = OutputDir(tmp_path)
    rng = np.random.default_rng(0)
    matrix = rng.integers(0, 60_000, (10, 9)).astype(np.uint32)
    writer = MegatronSequences(out, "bucket_00008/part-00003", np.dtype(np.uint16))
    writer.write(matrix[:4], np.full(4, 9), np.ones(4, np.int64))
    writer.write(matrix[4:].ravel(), np.full(6, 9), np.array([2, 4]))
    names = [s.name for s in writer.commit()]
    assert names == ["bucket_00008/part-00003.bin", "bucket_00008/part-00003.idx"]
    sequences, docs = read_megatron(tmp_path / "bucket_00008" / "part-00003")
    assert [s.tolist() for s in sequences] == matrix.tolist()
    assert docs.tolist() == [0, 1, 2, 3, 4, 6, 10]
    npy = NpyMatrix(out, "part-00003.input_ids.npy", np.dtype(np.uint16), 9)
    npy.write(matrix[:3])
    npy.write(matrix[3:])
    (shard,) = npy.commit()
    loaded = np.load(tmp_path / "part-00003.input_ids.npy")
    assert loaded.shape == (10, 9) and loaded.dtype == np.uint16 and np.array_equal(loaded, matrix)
    assert shard.rows == 10 and shard.checksum == file_checksum(tmp_path / "part-00003.input_ids.npy")
    assert not list((tmp_path / ".tmp").iterdir())


def test_buckets_metadata_and_grow_p2_schedule():
    meta = buckets_metadata({8: 4096, 9: 2048, 13: 128}, 8, 13, "parquet")
    assert meta["curriculum"]["odds"] == [32, 16, 8, 4, 2, 1] and meta["curriculum"]["cycles"] == 8
    per_step = {b["batch_multiplier"] * b["context_length"] for b in meta["buckets"]}
    assert per_step == {8192}  # tokens per step constant across buckets
    assert meta["buckets"][0]["tokens"] == 4096 * 257 and meta["buckets"][2]["sequences"] == 0
    sequences = [b["sequences"] for b in meta["buckets"]]
    multipliers = [b["batch_multiplier"] for b in meta["buckets"]]
    steps = grow_p2_schedule([4096, 2048, 1024, 512, 256, 128], multipliers, meta["curriculum"]["odds"], 2, 8, 0)
    assert np.bincount(steps, minlength=6).tolist() == [64] * 6  # every full batch used once
    cycle = steps[: len(steps) // 8]
    assert np.mean(np.flatnonzero(cycle == 0)) < np.mean(np.flatnonzero(cycle == 5))  # short first
    assert sequences == [4096, 2048, 0, 0, 0, 128]


def test_eos_from_vocabulary_flag_or_clear_error():
    tokenizer = Tokenizer(models.WordLevel({"a": 0, "b": 1, "[UNK]": 2}, unk_token="[UNK]"))
    with pytest.raises(UsageError, match="--eos-token"):
        resolve_eos(tokenizer, None)
    assert resolve_eos(tokenizer, "b") == 1
    with pytest.raises(UsageError, match="not in the tokenizer"):
        resolve_eos(tokenizer, "</s>")
    tokenizer.add_special_tokens(["</s>"])
    assert resolve_eos(tokenizer, None) == 3


@pytest.mark.parametrize(("given", "expected"), [(None, "false"), ("true", "true")])
def test_a_worker_tokenizes_with_one_thread_unless_the_user_says_otherwise(given, expected, monkeypatch, tmp_path):
    """tokenizers spreads encode_batch over every core unless TOKENIZERS_PARALLELISM is false: each pack worker
    process sets it (so --workers N uses N cores) but keeps a value the user chose."""
    tokenizer = tmp_path / "tok.json"
    Tokenizer(models.WordLevel({"a": 0, "</s>": 1, "[UNK]": 2}, unk_token="[UNK]")).save(str(tokenizer))
    if given is None:
        monkeypatch.delenv("TOKENIZERS_PARALLELISM", raising=False)
    else:
        monkeypatch.setenv("TOKENIZERS_PARALLELISM", given)
    stage = PackStage(PackParams(tokenizer=str(tokenizer)))
    stage.setup()
    assert os.environ["TOKENIZERS_PARALLELISM"] == expected and stage.eos_id == 1
    assert pickle.loads(pickle.dumps(stage)).tokenizer is None  # each worker loads its own


def test_a_full_disk_while_writing_token_files_exits_4_naming_the_file(tmp_path: Path):
    class FullDisk(io.BytesIO):
        def write(self, data) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    npy = NpyMatrix(OutputDir(tmp_path), "bucket_00256/part-00001.input_ids.npy", np.dtype(np.uint16), 4)
    npy.file.handle.close()
    npy.file.handle = FullDisk()
    with pytest.raises(OutputError, match=r"bucket_00256/part-00001.input_ids.npy: cannot write: .*rerun") as error:
        npy.write(np.zeros((3, 4), np.uint16))
    assert error.value.exit_code == 4
    npy.abort()
    assert not list((tmp_path / ".tmp").iterdir())
