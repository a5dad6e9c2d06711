"""`curate pack`: tokenize, pack with one strategy (or compare all three), write a format trainers read.

Packing is one array pass of the runner over its input units (slices of the input fixed by the plan): each unit
is tokenized and packed on its own into its own files (``[bucket_XXXXX/]part-{unit:05d}…``), so a run resumes
after a crash, splits over --workers, array tasks and Ray, and its output does not depend on any of them.
Concat and best-fit pack within a unit; ``finish`` sums the units' counts into ``_buckets.json`` and the stats.
Each worker process tokenizes with one thread (``one_tokenizer_thread``): --workers N uses about N cores.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa

from curate.io.errors import UsageError
from curate.io.inputs import Columns, Unit
from curate.io.options import IOOptions
from curate.io.output import OutputDir, ShardInfo, UnitRecord, file_checksum, json_text, merge_counters
from curate.params import option
from curate.runner import run_map_stage
from curate.stages.base import Pass, UnitContext, UnitStage
from curate.stages.pack.curriculum import bucket_name, buckets_metadata
from curate.stages.pack.packers import (
    BestFitPacker,
    ConcatPacker,
    DecomposePacker,
    DocRows,
    Emitted,
    Packer,
    document_number,
)
from curate.stages.pack.stats import compare_table, with_ratios
from curate.stages.pack.tokenize import TokenBatch, load_tokenizer, resolve_eos, token_dtype, tokenize
from curate.stages.pack.writers import MegatronSequences, NpyMatrix, ParquetSequences, list_column, unit_file

STRATEGIES = ["decompose", "concat", "bestfit"]
ORDERS = ["input", "related"]
FORMATS = ["parquet", "megatron", "npy"]
BUCKETS_FILE = "_buckets.json"
TOKENIZER_THREADS_ENV = "TOKENIZERS_PARALLELISM"


@dataclass
class PackParams:
    tokenizer: str = option("", "HF tokenizers JSON file (tokenizer.json); `curate tokenizer train` makes one.",
                            required=True)
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
    seed: int = option(0, "decompose: seed of the random piece sizes (document n of the input draws from seed and n; see docs/pack-formats.md). --order related: seed of its sample, k-means and traversal.")
    order: str = option(
        "input",
        "input: documents in input order. related: In-Context Pretraining's order (related documents next to "
        "each other: k-means clusters, nearest neighbours, greedy traversal; see docs/pack-formats.md).",
        choices=ORDERS,
    )
    cluster_docs: int = option(20_000, "--order related: documents per k-means cluster, on average (memory: one cluster's documents).")
    kmeans_sample: int = option(100_000, "--order related: documents sampled to fit the k-means clusters.")
    neighbors: int = option(9, "--order related: nearest neighbours per document that the traversal may follow.")

    def check(self) -> None:
        if not self.tokenizer:
            raise UsageError("--tokenizer is required (a tokenizer.json; `curate tokenizer train` makes one)")
        if not 1 <= self.min_log2 <= self.max_log2 <= 24:
            raise UsageError("need 1 ≤ --min-log2 ≤ --max-log2 ≤ 24")
        if self.seq_len < 1 or self.window < 1:
            raise UsageError("--seq-len and --window must be ≥ 1")
        if self.cluster_docs < 1 or self.kmeans_sample < 1 or self.neighbors < 1:
            raise UsageError("--cluster-docs, --kmeans-sample and --neighbors must be ≥ 1")
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
    """Routes one unit's emitted groups to one writer per group in the chosen format; commits them all at the end."""

    def __init__(self, out: OutputDir, unit: int, fmt: str, vocab_size: int, max_rows: int):
        self.out, self.unit, self.fmt, self.vocab_size, self.max_rows = out, unit, fmt, vocab_size, max_rows
        self.groups: dict[tuple[str, str], ParquetSequences | MegatronSequences | NpyMatrix] = {}

    def _writer(self, group: str, name: str, width: int = 0, dtype: np.dtype | None = None):
        key = (group, name)
        if key not in self.groups:
            if self.fmt == "parquet":
                self.groups[key] = ParquetSequences(self.out, group, self.unit, self.max_rows)
            elif self.fmt == "megatron":
                self.groups[key] = MegatronSequences(self.out, unit_file(group, self.unit, ""),
                                                     token_dtype(self.vocab_size, signed=True))
            else:
                self.groups[key] = NpyMatrix(self.out, unit_file(group, self.unit, f".{name}.npy"), dtype, width)
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


def one_tokenizer_thread() -> None:
    """Make this process's `encode_batch` run in its calling thread, unless the user chose otherwise.

    HF tokenizers otherwise spreads every `encode_batch` over a thread per core (rayon), so N worker processes
    would each use every core. One thread per worker makes --workers N use about N cores and scale with N;
    ``TOKENIZERS_PARALLELISM=true`` in the environment gives a lone worker the tokenizer's own threads back.
    tokenizers reads the variable at every `encode_batch`.
    """
    os.environ.setdefault(TOKENIZER_THREADS_ENV, "false")


class PackStage(UnitStage):
    """Tokenize and pack one input unit into its own files; ``finish`` writes ``_buckets.json``."""

    name = "pack"

    def __init__(self, params: PackParams):
        super().__init__(params)
        self.tokenizer = None  # loaded by ``load`` (in each worker process: it is not pickled)
        self.eos_id = self.vocab_size = 0

    def __getstate__(self) -> dict:
        return {**self.__dict__, "tokenizer": None}

    def load(self) -> None:
        """Load the tokenizer and find its EOS: exits 3 (unreadable file) or 2 (no EOS) before anything is written."""
        if self.tokenizer is None:
            self.tokenizer = load_tokenizer(self.params.tokenizer)
            self.eos_id = resolve_eos(self.tokenizer, self.params.eos_token)
            self.vocab_size = self.tokenizer.get_vocab_size(with_added_tokens=True)

    def setup(self) -> None:
        one_tokenizer_thread()
        self.load()

    def identity(self) -> dict:
        return {"tokenizer_checksum": file_checksum(self.params.tokenizer)}

    def strategies(self) -> list[str]:
        return STRATEGIES if self.params.compare else [self.params.strategy]

    def run_unit(self, unit: Unit, context: UnitContext) -> tuple[list[ShardInfo], dict]:
        params, columns = self.params, context.columns
        packers = {name: make_packer(name, params, columns, self.eos_id) for name in self.strategies()}
        writer = None if params.compare else SequenceWriter(context.out, unit.index, params.output_format,
                                                            self.vocab_size, context.io.max_rows_per_shard)
        docs = 0

        def encode(batch: pa.RecordBatch) -> TokenBatch:
            return tokenize(self.tokenizer, batch.column(columns.text), self.eos_id)

        try:
            for batch, tokens in _read_ahead(context.batches(unit), encode):
                missing = [c for c in params.keep_columns if c not in batch.schema.names]
                if missing:
                    raise UsageError(f"--keep-columns: no column {', '.join(missing)} in the input "
                                     f"(columns: {', '.join(batch.schema.names)})")
                rows = DocRows(batch, document_number(unit.index, docs))
                for packer in packers.values():
                    for item in packer.add(tokens, rows):
                        if writer is not None:
                            writer.write(item)
                docs += batch.num_rows
            for packer in packers.values():
                for item in packer.finish():
                    if writer is not None:
                        writer.write(item)
            shards = writer.commit() if writer is not None else []
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        return shards, self._counters(packers, docs)

    def _counters(self, packers: dict[str, Packer], docs: int) -> dict:
        """The unit's counts (they sum across units; ``finish`` adds the ratios)."""
        if self.params.compare:
            return {"docs_in": docs, "compare": {name: p.stats.counters() for name, p in packers.items()}}
        packer = packers[self.params.strategy]
        counters = {"docs_in": docs, "docs_out": docs - packer.stats.docs_dropped, **packer.stats.counters()}
        if isinstance(packer, DecomposePacker):
            counters["buckets"] = {bucket_name(k): {"sequences": n, "tokens": n * ((1 << k) + 1)}
                                   for k, n in sorted(packer.bucket_sequences.items())}
        return counters

    def warnings(self, summary: dict) -> list[str]:
        if not summary.get("docs_in") or summary.get("docs_out") != 0:
            return []
        dropped = summary.get("tokens", {}).get("dropped", {})
        reasons = ", ".join(f"{reason} {tokens:,}" for reason, tokens in sorted(dropped.items()))
        return [f"no token of the {summary['docs_in']:,} documents reached the output (tokens dropped: {reasons}); "
                "see --min-log2, --seq-len, --strategy"]

    def finish(self, out: OutputDir, records: list[UnitRecord]) -> dict:
        """Ratios of the summed counts, and the bucket table (``_buckets.json``) of every unit together."""
        params = self.params
        total: dict = {}
        for record in records:
            merge_counters(total, record.stats)
        if params.compare:
            return {"compare": {name: with_ratios(total["compare"][name]) for name in STRATEGIES}}
        stats = with_ratios({key: total[key] for key in ("documents", "tokens", "sequences")})
        if params.strategy == "decompose":
            found = total.get("buckets", {})
            sequences = {k: found.get(bucket_name(k), {}).get("sequences", 0)
                         for k in range(params.min_log2, params.max_log2 + 1)}
            meta = buckets_metadata(sequences, params.min_log2, params.max_log2, params.output_format)
            out.files.write_text(BUCKETS_FILE, json_text(meta))
            stats["buckets"] = {b["name"]: {"sequences": b["sequences"], "tokens": b["tokens"]} for b in meta["buckets"]}
        return stats


def pack_passes(params: PackParams, io: IOOptions) -> list[Pass]:
    """`curate pack` is one array pass: its units may be shared by any number of tasks. With ``--order related``
    the passes that order the documents (:mod:`curate.stages.pack.order`) come first, and pack reads their
    ordered parts."""
    if params.order == "input":
        return [Pass("", Path(io.output), True, lambda task_io: _pack_pass(params, task_io))]
    params.check()
    from curate.stages.pack.order import related_passes

    passes, ordered = related_passes(params, io)
    ordered_io = {"inputs": [ordered], "columns": [], "drop_columns": []}
    return [*passes, Pass("pack", Path(io.output), True,
                          lambda task_io: _pack_pass(params, replace(task_io, **ordered_io)))]


def _pack_pass(params: PackParams, io: IOOptions) -> dict:
    io.check()
    params.check()
    if io.output == "-":
        raise UsageError("curate pack writes a directory of token files; -o - is not supported (give -o DIR)")
    stage = PackStage(params)
    stage.load()
    summary = run_map_stage(stage, io)
    if not params.compare:
        summary.update(strategy=params.strategy, format=params.output_format)
    summary["tokens_per_s"] = None  # known once the output is complete
    if not summary["complete"]:
        return summary
    summary["already_done"] = summary["units_processed"] == 0
    if params.compare and not io.quiet:
        print(compare_table(summary["compare"]), file=sys.stderr)
    tokens_in = (summary["compare"][params.strategy] if params.compare else summary)["tokens"]["in"]
    # the throughput of a run that made the whole output (a resumed run or the last array task made only part)
    if summary["units_processed"] == summary["units"] and summary["wall_seconds"]:
        summary["tokens_per_s"] = round(tokens_in / summary["wall_seconds"], 1)
    return summary

