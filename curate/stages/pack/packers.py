"""The three packing strategies as streaming packers: token batches in, groups of equal-width sequences out.

A packer never writes: it returns `Emitted` groups (a bucket, or the whole output) that a writer turns into
Parquet, Megatron or .npy, or that `--compare` only counts. Each keeps its own `PackStats`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from curate.stages.pack.bestfit import pack_window
from curate.stages.pack.concat import ConcatChunker
from curate.stages.pack.curriculum import bucket_name
from curate.stages.pack.decompose import decompose, piece_matrix
from curate.stages.pack.stats import PackStats
from curate.stages.pack.tokenize import TokenBatch


@dataclass
class Emitted:
    group: str  # "" for the output root, else a bucket directory name
    input_ids: np.ndarray  # (n, width)
    columns: dict[str, pa.Array] = field(default_factory=dict)  # per-row extras (doc_id, --keep-columns)
    position_ids: np.ndarray | None = None  # best-fit: (n, width) int32, -1 on padding
    boundaries: np.ndarray | None = None  # best-fit: flat chunk starts + real-token end per row (int32)
    boundary_offsets: np.ndarray | None = None  # best-fit: row i's boundaries are boundaries[o[i]:o[i+1]]


def document_number(unit: int, row: int) -> int:
    """How pack numbers a document: unit index × 2^32 + row within the unit (the row, in a one-unit input).

    It depends only on the plan's units, not on workers or array tasks; it seeds Dataset Decomposition's draws
    and is the ``doc_id`` of inputs without an id column."""
    return (unit << 32) + row


@dataclass
class DocRows:
    """The input rows behind a token batch: for doc ids and pass-through columns."""

    batch: pa.RecordBatch
    first_ordinal: int  # document number of the batch's first document (see `document_number`)

    def ordinals(self) -> np.ndarray:
        return self.first_ordinal + np.arange(self.batch.num_rows, dtype=np.int64)


class Packer:
    """Common accounting: documents and tokens in."""

    def __init__(self) -> None:
        self.stats = PackStats()

    def add(self, tokens: TokenBatch, rows: DocRows) -> list[Emitted]:
        self.stats.docs_in += tokens.num_docs
        self.stats.tokens_in += len(tokens.tokens)
        return self._add(tokens, rows)

    def _add(self, tokens: TokenBatch, rows: DocRows) -> list[Emitted]:
        raise NotImplementedError

    def finish(self) -> list[Emitted]:
        return []


class DecomposePacker(Packer):
    """Dataset Decomposition: one bucket per piece length 2^k + 1; documents are never mixed."""

    def __init__(
        self, min_log2: int, max_log2: int, randomize: bool, seed: int, id_column: str, keep_columns: list[str]
    ):
        super().__init__()
        self.min_log2, self.max_log2, self.randomize, self.seed = min_log2, max_log2, randomize, seed
        self.id_column, self.keep_columns = id_column, keep_columns
        self.bucket_sequences: dict[int, int] = {}

    def _add(self, tokens: TokenBatch, rows: DocRows) -> list[Emitted]:
        lengths = tokens.lengths
        pieces = decompose(
            lengths, tokens.offsets, rows.ordinals(),
            min_log2=self.min_log2, max_log2=self.max_log2, randomize=self.randomize, seed=self.seed,
        )
        sizes = (np.int64(1) << pieces.log2.astype(np.int64)) + 1
        kept = np.bincount(pieces.doc, weights=sizes, minlength=tokens.num_docs).astype(np.int64)
        count = np.bincount(pieces.doc, minlength=tokens.num_docs)
        left = lengths - kept
        s = self.stats
        s.tokens_out += int(kept.sum())
        s.sequences += len(sizes)
        s.docs_split += int(np.count_nonzero(count > 1))
        s.docs_dropped += int(np.count_nonzero(count == 0))
        s.docs_partially_dropped += int(np.count_nonzero((count > 0) & (left > 0)))
        s.drop("shorter_than_min_piece", int(lengths[count == 0].sum()))
        s.drop("remainder_below_min_piece", int(left[count > 0].sum()))
        emitted = []
        for k in np.unique(pieces.log2):
            selected = np.flatnonzero(pieces.log2 == k)
            docs = pa.array(pieces.doc[selected])
            self.bucket_sequences[int(k)] = self.bucket_sequences.get(int(k), 0) + len(selected)
            emitted.append(
                Emitted(
                    bucket_name(int(k)),
                    piece_matrix(tokens.tokens, pieces.start[selected], (1 << int(k)) + 1),
                    {"doc_id": self._doc_ids(rows, docs), **{c: rows.batch.column(c).take(docs) for c in self.keep_columns}},
                )
            )
        return emitted

    def _doc_ids(self, rows: DocRows, docs: pa.Array) -> pa.Array:
        if self.id_column in rows.batch.schema.names:
            return rows.batch.column(self.id_column).take(docs)
        return pa.array(rows.ordinals()).take(docs)  # no id column: the document's number


class ConcatPacker(Packer):
    """Concat-and-chunk into sequences of `width` tokens; the final partial sequence is dropped."""

    def __init__(self, width: int):
        super().__init__()
        self.chunker = ConcatChunker(width)

    def _add(self, tokens: TokenBatch, rows: DocRows) -> list[Emitted]:
        matrix = self.chunker.add(tokens)
        self.stats.tokens_out += matrix.size
        self.stats.sequences += len(matrix)
        return [Emitted("", matrix)] if len(matrix) else []

    def finish(self) -> list[Emitted]:
        tail = self.chunker.finish()
        s = self.stats
        s.docs_split = self.chunker.docs_split
        s.docs_dropped += tail["docs_dropped"]
        s.docs_partially_dropped += tail["docs_partially_dropped"]
        s.drop("final_partial_sequence", tail["tail_tokens"])
        return []


class BestFitPacker(Packer):
    """Best-Fit-Decreasing per window of `window` documents; padded sequences of `width` tokens."""

    def __init__(self, width: int, window: int, pad_id: int):
        super().__init__()
        self.width, self.window, self.pad_id = width, window, pad_id
        self.pending: list[TokenBatch] = []
        self.pending_docs = 0

    def _add(self, tokens: TokenBatch, rows: DocRows) -> list[Emitted]:
        self.pending.append(tokens)
        self.pending_docs += tokens.num_docs
        emitted = []
        while self.pending_docs >= self.window:
            merged = TokenBatch.concat(self.pending)
            emitted.append(self._pack(merged.slice(0, self.window)))
            rest = merged.slice(self.window, merged.num_docs)
            self.pending, self.pending_docs = ([rest] if rest.num_docs else []), rest.num_docs
        return emitted

    def finish(self) -> list[Emitted]:
        if not self.pending_docs:
            return []
        merged = TokenBatch.concat(self.pending)
        self.pending, self.pending_docs = [], 0
        return [self._pack(merged)]

    def _pack(self, window: TokenBatch) -> Emitted:
        packed = pack_window(window, self.width, self.pad_id)
        s = self.stats
        s.tokens_out += len(window.tokens)
        s.padding += packed.padding
        s.sequences += len(packed.input_ids)
        s.docs_split += packed.docs_split
        return Emitted("", packed.input_ids, {}, packed.position_ids, packed.boundaries, packed.boundary_offsets)
