"""Tokenization with HF `tokenizers`: whole record batches through `encode_batch`, EOS appended per document.

The result is a flat token array plus document offsets (CSR layout), the form every packer works on.
"""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from curate.io.errors import InputError, UsageError

# Names that tokenizers use for their end-of-document token, most common first. A tokenizer.json does not say
# which token is the EOS (that lives in tokenizer_config.json), so we look these up in the vocabulary.
EOS_CANDIDATES = ("<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>", "<|end|>", "[SEP]")

# Megatron's rule (DType.optimal_dtype): uint16 when the vocabulary has fewer than this many tokens.
UINT16_VOCAB_LIMIT = 65_500
ENCODE_GROUP_CHARS = 1_000_000


@dataclass
class TokenBatch:
    """Tokens of a batch of documents: document i is ``tokens[offsets[i]:offsets[i + 1]]`` (EOS included)."""

    tokens: np.ndarray  # uint32
    offsets: np.ndarray  # int64, len = documents + 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def num_docs(self) -> int:
        return len(self.offsets) - 1

    def slice(self, start: int, stop: int) -> TokenBatch:
        """Documents start..stop-1 as their own batch."""
        lo, hi = int(self.offsets[start]), int(self.offsets[stop])
        return TokenBatch(self.tokens[lo:hi], self.offsets[start : stop + 1] - lo)

    @classmethod
    def concat(cls, batches: list[TokenBatch]) -> TokenBatch:
        if not batches:
            return cls(np.zeros(0, np.uint32), np.zeros(1, np.int64))
        tokens = np.concatenate([b.tokens for b in batches])
        lengths = np.concatenate([b.lengths for b in batches])
        offsets = np.zeros(len(lengths) + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return cls(tokens, offsets)


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Load a `tokenizer.json`, with a clear error for a missing or foreign file."""
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises plain Exception subclasses for both cases
        raise InputError(str(path), f"not a readable tokenizers JSON file ({exc})") from None


def resolve_eos(tokenizer: Tokenizer, eos_token: str | None) -> int:
    """The id of the token appended to every document: `--eos-token`, else the tokenizer's own EOS."""
    if eos_token:
        token_id = tokenizer.token_to_id(eos_token)
        if token_id is None:
            raise UsageError(f"--eos-token {eos_token!r} is not in the tokenizer's vocabulary")
        return token_id
    for name in EOS_CANDIDATES:
        token_id = tokenizer.token_to_id(name)
        if token_id is not None:
            return token_id
    raise UsageError(
        f"the tokenizer has no end-of-document token (looked for {', '.join(EOS_CANDIDATES)}); "
        "name one with --eos-token"
    )


def token_dtype(vocab_size: int, signed: bool = False) -> np.dtype:
    """Smallest dtype for token ids: uint16 under Megatron's limit, else int32 (Megatron) or uint32."""
    if vocab_size < UINT16_VOCAB_LIMIT:
        return np.dtype(np.uint16)
    return np.dtype(np.int32 if signed else np.uint32)


def tokenize(tokenizer: Tokenizer, texts: list[str], eos_id: int) -> TokenBatch:
    """Encode a batch with the tokenizer's own thread pool and append `eos_id` to each document.

    `add_special_tokens=True` keeps the tokenizer's post-processor (e.g. a BOS), as `tokenizer(text)` does in
    transformers and as the Dataset Decomposition reference tokenizes. Texts go to `encode_batch_fast` (the
    same ids as `encode_batch`, without character offsets) in groups of about ENCODE_GROUP_CHARS characters
    (a tokenizers Encoding holds far more than its ids: memory stays bounded whatever --batch-size is), the
    next group encoding while the ids of the previous one are copied out.
    """
    lengths = np.fromiter(map(len, texts), np.int64, len(texts))
    group_of = np.cumsum(lengths) // ENCODE_GROUP_CHARS
    cuts = np.flatnonzero(np.diff(group_of)) + 1
    bounds = list(zip(np.concatenate([[0], cuts]), np.concatenate([cuts, [len(texts)]]), strict=True))
    parts = []
    with ThreadPoolExecutor(1) as encoder:  # encodes the next group (GIL released) while ids are copied out

        def encode(i: int):
            lo, hi = bounds[i]
            return encoder.submit(tokenizer.encode_batch_fast, texts[lo:hi], add_special_tokens=True)

        pending = encode(0)
        for i in range(len(bounds)):
            encodings = pending.result()
            if i + 1 < len(bounds):
                pending = encode(i + 1)
            parts.append(_ids_with_eos([e.ids for e in encodings], eos_id))
            del encodings
    return TokenBatch.concat(parts)


def _ids_with_eos(ids: list[list[int]], eos_id: int) -> TokenBatch:
    counts = np.fromiter(map(len, ids), np.int64, len(ids)) + 1
    offsets = np.zeros(len(ids) + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    eos = (eos_id,)
    tokens = np.fromiter(
        itertools.chain.from_iterable(itertools.chain(doc, eos) for doc in ids), np.uint32, int(offsets[-1])
    )
    return TokenBatch(tokens, offsets)
