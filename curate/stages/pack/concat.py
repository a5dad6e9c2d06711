"""Concat-and-chunk, the usual baseline: documents (EOS-separated) joined into one stream, cut every L + 1 tokens.

Sequences never overlap; the final partial sequence is dropped and counted. A document whose tokens land in
two or more sequences is "split" (what Ding et al. call a truncation).
"""

from __future__ import annotations

import numpy as np

from curate.stages.pack.tokenize import TokenBatch


class ConcatChunker:
    """Cuts the token stream into sequences of `width` tokens, carrying the unfinished one across batches."""

    def __init__(self, width: int):
        self.width = width
        self.carry = np.zeros(0, np.uint32)
        self.position = 0  # tokens seen so far (global stream position)
        self.docs_split = 0
        # first sequence index of each document whose last token is in the unfinished sequence
        self.pending_firsts = np.zeros(0, np.int64)

    def add(self, batch: TokenBatch) -> np.ndarray:
        """The sequences completed by this batch, as an (n, width) matrix."""
        starts = self.position + batch.offsets[:-1]
        ends = self.position + batch.offsets[1:]
        nonempty = ends > starts
        first, last = starts[nonempty] // self.width, (ends[nonempty] - 1) // self.width
        self.docs_split += int(np.count_nonzero(first != last))
        unfinished = (self.position + len(batch.tokens)) // self.width
        if unfinished > self.position // self.width:
            self.pending_firsts = first[last == unfinished]
        else:
            self.pending_firsts = np.concatenate([self.pending_firsts, first[last == unfinished]])
        self.position += len(batch.tokens)
        stream = np.concatenate([self.carry, batch.tokens])
        cut = len(stream) // self.width * self.width
        self.carry = stream[cut:]
        return stream[:cut].reshape(-1, self.width)

    def finish(self) -> dict:
        """Account for the dropped final partial sequence: counters for the documents it touches."""
        tail = self.position // self.width  # index of the unfinished sequence (pending is empty when none)
        whole = int(np.count_nonzero(self.pending_firsts == tail))
        partial = self.pending_firsts[self.pending_firsts < tail]
        # a document counted as split that only kept one full sequence is not split after all
        self.docs_split -= int(np.count_nonzero(partial == tail - 1))
        return {
            "tail_tokens": int(self.carry.size),
            "docs_dropped": whole,
            "docs_partially_dropped": int(partial.size),
        }
