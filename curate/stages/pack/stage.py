"""`curate pack`: tokenize, pack with one strategy (or compare all three), write a format trainers read.

Packing is a global pass over the input in its deterministic order (documents are numbered by position), so
it runs in one process; the tokenizer parallelises `encode_batch` over its own thread pool.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

import curate
from curate.io.errors import UsageError
from curate.io.inputs import BadRows, Columns, iter_batches, resolve_inputs
from curate.io.options import IOOptions
from curate.io.output import (
    MANIFEST,
    STATS,
    OutputDir,
    ShardInfo,
    UnitRecord,
    file_checksum,
    input_descriptions,
    write_json_atomic,
)
from curate.io.progress import Progress
from curate.params import fingerprint, option
from curate.stages.base import Pass
from curate.stages.pack.curriculum import buckets_metadata
from curate.stages.pack.packers import BestFitPacker, ConcatPacker, DecomposePacker, DocRows, Emitted, Packer
from curate.stages.pack.stats import compare_table
from curate.stages.pack.tokenize import TokenBatch, load_tokenizer, resolve_eos, token_dtype, tokenize
from curate.stages.pack.writers import MegatronSequences, NpyMatrix, ParquetSequences, list_column

STRATEGIES = ["decompose", "concat", "bestfit"]
FORMATS = ["parquet", "megatron", "npy"]
BUCKETS_FILE = "_buckets.json"


@dataclass
class PackParams:
    tokenizer: str = option("", "HF tokenizers JSON file (tokenizer.json); `curate tokenizer train` makes one.")
    strategy: str = option(
        "decompose",
        "decompose: power-of-two buckets, documents never mixed (Dataset Decomposition). concat: concat-and-chunk "
        "into --seq-len + 1. bestfit: Best-Fit-Decreasing into padded --seq-len + 1 sequences.",
        choices=STRATEGIES,
    )
    eos_token: str | None = option(None, "Token appended to every document (default: the tokenizer's EOS).")
    min_log2: int = option(8, "decompose: shortest piece 2^K + 1 tokens; shorter remainders are dropped.")
    max_log2: int = option(13, "decompose: longest piece 2^K + 1 tokens; longer documents are cut.")
    no_randomize: bool = option(
        False, "decompose: cut fixed 2^max-log2 + 1 pieces from long documents instead of random bucket sizes."
    )
    seq_len: int = option(2048, "concat/bestfit: context length L; sequences hold L + 1 tokens (shifted targets).")
    window: int = option(20_000, "bestfit: documents packed together per window (memory: about 50 bytes per token of a window).")
    output_format: str = option(
        "parquet", "parquet: list<uint32> columns. megatron: .bin + .idx. npy: (n, width) matrices.",
        flag="--format", choices=FORMATS,
    )
    keep_columns: list[str] = option([], "decompose: input columns copied to every piece, e.g. mix_domain.")
    compare: bool = option(False, "Run all three strategies on the input and print their statistics side by side.")
    seed: int = option(0, "decompose: seed of the random piece sizes (document i draws from seed and i).")

    def check(self) -> None:
        if not self.tokenizer:
            raise UsageError("--tokenizer is required (a tokenizer.json; `curate tokenizer train` makes one)")
        if not 1 <= self.min_log2 <= self.max_log2 <= 24:
            raise UsageError("need 1 ≤ --min-log2 ≤ --max-log2 ≤ 24")
        if self.seq_len < 1 or self.window < 1:
            raise UsageError("--seq-len and --window must be ≥ 1")
        if self.keep_columns and (self.strategy != "decompose" or self.compare):
            raise UsageError("--keep-columns applies to --strategy decompose (a piece has one source document)")


def make_packer(strategy: str, params: PackParams, columns: Columns, eos_id: int) -> Packer:
    if strategy == "decompose":
        return DecomposePacker(
            params.min_log2, params.max_log2, not params.no_randomize, params.seed, columns.id, params.keep_columns
        )
    if strategy == "concat":
        return ConcatPacker(params.seq_len + 1)
    return BestFitPacker(params.seq_len + 1, params.window, pad_id=eos_id)


class SequenceWriter:
    """Routes emitted groups to one writer per group in the chosen format; commits them all at the end."""

    def __init__(self, root: Path, fmt: str, vocab_size: int, max_rows: int):
        self.root, self.fmt, self.vocab_size, self.max_rows = root, fmt, vocab_size, max_rows
        self.groups: dict[tuple[str, str], ParquetSequences | MegatronSequences | NpyMatrix] = {}

    def _writer(self, group: str, name: str, width: int = 0, dtype: np.dtype | None = None):
        key = (group, name)
        if key not in self.groups:
            directory = self.root / group if group else self.root
            if self.fmt == "parquet":
                self.groups[key] = ParquetSequences(directory, self.root, self.max_rows)
            elif self.fmt == "megatron":
                self.groups[key] = MegatronSequences(directory, self.root, token_dtype(self.vocab_size, signed=True))
            else:
                self.groups[key] = NpyMatrix(directory, name + ".npy", self.root, dtype, width)
        return self.groups[key]

    def write(self, item: Emitted) -> None:
        if self.fmt == "parquet":
            self._writer(item.group, "").write(_record_batch(item))
        elif self.fmt == "megatron":
            self._write_megatron(item)
        else:
            width = item.input_ids.shape[1]
            self._writer(item.group, "input_ids", width, token_dtype(self.vocab_size)).write(item.input_ids)
            if item.position_ids is not None:
                self._writer(item.group, "position_ids", width, np.dtype(np.int32)).write(item.position_ids)

    def _write_megatron(self, item: Emitted) -> None:
        writer = self._writer(item.group, "")
        rows, width = item.input_ids.shape
        if item.position_ids is None:  # one Megatron document per sequence
            writer.write(item.input_ids, np.full(rows, width), np.ones(rows, np.int64))
            return
        # best-fit: padding left out; each packed row is a document whose sequences are its chunks
        assert item.boundaries is not None and item.boundary_offsets is not None
        real = item.input_ids[item.position_ids >= 0]
        steps = np.diff(item.boundaries.astype(np.int64))
        chunk_lengths = np.delete(steps, item.boundary_offsets[1:-1] - 1)  # drop steps across rows
        writer.write(real, chunk_lengths, np.diff(item.boundary_offsets) - 1)

    def commit(self) -> list[ShardInfo]:
        shards: list[ShardInfo] = []
        for key in sorted(self.groups):
            shards.extend(self.groups[key].commit())
        return shards

    def abort(self) -> None:
        for writer in self.groups.values():
            writer.abort()


def _record_batch(item: Emitted) -> pa.RecordBatch:
    arrays = {"input_ids": list_column(item.input_ids, pa.uint32())}
    if item.position_ids is not None:
        assert item.boundaries is not None and item.boundary_offsets is not None
        arrays["position_ids"] = list_column(item.position_ids, pa.int32())
        arrays["doc_boundaries"] = pa.ListArray.from_arrays(
            pa.array(item.boundary_offsets.astype(np.int32)), pa.array(item.boundaries, pa.int32())
        )
    arrays.update(item.columns)
    return pa.RecordBatch.from_pydict(arrays)


def _remove_previous_outputs(out: OutputDir) -> None:
    """A rerun into its own directory starts over: packing is one global pass, not resumable units."""
    for name in out.files.names():
        if name.startswith(("bucket_", "part-")) or name.endswith((".bin", ".idx", ".npy")) or name == BUCKETS_FILE:
            out.files.remove(name)


def _read_ahead(
    batches: Iterator[pa.RecordBatch], work: Callable[[pa.RecordBatch], TokenBatch]
) -> Iterator[tuple[pa.RecordBatch, TokenBatch]]:
    """Read and tokenize the next batch in a thread while the caller packs and writes the current one."""
    def step() -> tuple[pa.RecordBatch, TokenBatch] | None:
        batch = next(batches, None)
        return None if batch is None else (batch, work(batch))

    with ThreadPoolExecutor(1) as reader:
        pending = reader.submit(step)
        while (item := pending.result()) is not None:
            pending = reader.submit(step)
            yield item


def run_pack(params: PackParams, io: IOOptions) -> dict:
    """Tokenize and pack `io.inputs` into `io.output`; returns the run summary (the --json output)."""
    io.check()
    params.check()
    started = time.perf_counter()
    if io.output == "-":
        raise UsageError("curate pack writes a directory of token files; -o - is not supported")
    if io.task()[1] > 1:
        raise UsageError("curate pack is one global pass; run it without --num-shards / array jobs")
    columns = Columns(io.text_column, io.id_column)
    bad = BadRows(skip=io.on_error == "skip")
    files = resolve_inputs(io.inputs, bad)
    tokenizer = load_tokenizer(params.tokenizer)
    eos_id = resolve_eos(tokenizer, params.eos_token)
    vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
    strategies = STRATEGIES if params.compare else [params.strategy]
    packers = {name: make_packer(name, params, columns, eos_id) for name in strategies}

    plan = {
        "curate_version": curate.__version__,
        "stage": "pack",
        "parameters": {**fingerprint(params), "tokenizer_checksum": file_checksum(params.tokenizer),
                       "io": fingerprint(io)},
        "inputs": input_descriptions(files),
        "units": [],
    }
    out = OutputDir(io.output)
    out.prepare(plan, io.overwrite)
    if out.files.read_text(MANIFEST) is not None:  # this very run finished before (same plan): nothing to redo
        finished = json.loads(out.files.read_text(STATS) or "{}")
        return {"output": out.location, "complete": True, "already_done": True, **finished}
    _remove_previous_outputs(out)
    writer = None if params.compare else SequenceWriter(out.path, params.output_format, vocab_size,
                                                        io.max_rows_per_shard)
    total_rows = sum(f.num_rows or 0 for f in files) if all(f.num_rows is not None for f in files) else None
    progress = Progress("pack", 1, total_rows, enabled=not io.quiet)
    ordinal = 0
    try:
        batches = iter_batches(files, columns, io.batch_size, io.max_rows_per_shard, bad)

        def encode(batch: pa.RecordBatch) -> TokenBatch:
            return tokenize(tokenizer, batch.column(columns.text), eos_id)

        for batch, tokens in _read_ahead(batches, encode):
            missing = [c for c in params.keep_columns if c not in batch.schema.names]
            if missing:
                raise UsageError(f"--keep-columns: no column {', '.join(missing)} in the input "
                                 f"(columns: {', '.join(batch.schema.names)})")
            rows = DocRows(batch, ordinal)
            for packer in packers.values():
                for item in packer.add(tokens, rows):
                    if writer is not None:
                        writer.write(item)
            ordinal += batch.num_rows
            progress.update(docs=batch.num_rows, nbytes=batch.column(columns.text).nbytes)
        for packer in packers.values():
            for item in packer.finish():
                if writer is not None:
                    writer.write(item)
        shards = writer.commit() if writer is not None else []
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    progress.close()

    by_strategy = {name: packer.stats.as_dict() for name, packer in packers.items()}
    if params.compare:
        stats: dict = {"compare": by_strategy}
        if not io.quiet:
            print(compare_table(by_strategy), file=sys.stderr)
    else:
        stats = dict(by_strategy[params.strategy])
        packer = packers[params.strategy]
        if isinstance(packer, DecomposePacker):
            meta = buckets_metadata(packer.bucket_sequences, params.min_log2, params.max_log2, params.output_format)
            write_json_atomic(out.path / BUCKETS_FILE, meta)
            stats["buckets"] = {b["name"]: {"sequences": b["sequences"], "tokens": b["tokens"]}
                                for b in meta["buckets"]}
    seconds = time.perf_counter() - started
    counts = {"docs_in": ordinal}
    if not params.compare:  # documents with at least one token in the output
        counts["docs_out"] = ordinal - stats["documents"]["dropped"]
    record = UnitRecord(0, shards, {**counts, **stats}, bad.records)
    out.publish_staged()
    final_stats = out.finalize(plan, [record], sys.argv, seconds)
    shutil.rmtree(out.path / ".tmp", ignore_errors=True)
    summary = {"output": out.location, "complete": True, **final_stats, "errors_skipped": len(bad.records)}
    if not params.compare:
        summary.update(strategy=params.strategy, format=params.output_format)
    tokens_in = sum(s["tokens"]["in"] for s in by_strategy.values()) / len(by_strategy)
    summary["tokens_per_s"] = round(tokens_in / seconds, 1) if seconds else None
    return summary


def pack_passes(params: PackParams, io: IOOptions) -> list[Pass]:
    return [Pass("", Path(io.output), False, lambda task_io: run_pack(params, task_io))]
