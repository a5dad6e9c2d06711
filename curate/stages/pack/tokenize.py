"""Tokenization with HF `tokenizers`: whole record batches through `encode_batch`, EOS appended per document.

The result is a flat token array plus document offsets (CSR layout), the form every packer works on.

A document longer than LONG_DOCUMENT_BYTES (UTF-8) is encoded in pieces of about PIECE_BYTES, decoded from the
Arrow buffer one group at a time (a tokenizers Encoding takes over 100 bytes per character, and a Python str up
to 4, so a 100 MB document would need gigabytes at once). Pieces are cut where a run of ASCII whitespace (space,
tab, newline, CR) starts after a non-whitespace character. Pre-tokenizers
that split on whitespace (byte-level BPE as in GPT-2, GPT-NeoX, Llama 3 and `curate tokenizer train`; BERT's
whitespace split) never join tokens across such a point, so the ids equal encoding the whole document; the
tokenizer's special tokens (BOS, …) are added once around the whole document. They can differ at a cut for
tokenizers that add a prefix to every input (SentencePiece-style Metaspace with `prepend_scheme: always`, or a
`Prepend("▁")` normaliser), and where a document has no such whitespace for PIECE_BYTES (the cut
then falls between two characters: a "word" that long has no dictionary tokens anyway).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tokenizers import Tokenizer

from curate.io.errors import InputError, UsageError

# Names that tokenizers use for their end-of-document token, most common first. A tokenizer.json does not say
# which token is the EOS (that lives in tokenizer_config.json), so we look these up in the vocabulary.
EOS_CANDIDATES = ("<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>", "<|end|>", "[SEP]")

# Megatron's rule (DType.optimal_dtype): uint16 when the vocabulary has fewer than this many tokens.
UINT16_VOCAB_LIMIT = 65_500
ENCODE_GROUP_CHARS = 1_000_000
LONG_DOCUMENT_BYTES = 1 << 20
PIECE_BYTES = 1 << 18
_ASCII_SPACE = re.compile(rb"[ \t\n\r]")  # whitespace in every regex flavour; never inside a UTF-8 sequence


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


def tokenize(tokenizer: Tokenizer, texts: pa.Array, eos_id: int) -> TokenBatch:
    """Encode a batch of strings and append `eos_id` to each document; long documents go piece by piece.

    `add_special_tokens=True` keeps the tokenizer's post-processor (e.g. a BOS), as `tokenizer(text)` does in
    transformers and as the Dataset Decomposition reference tokenizes.
    """
    if not (pa.types.is_string(texts.type) or pa.types.is_large_string(texts.type)):
        texts = texts.cast(pa.large_string())  # string_view: the byte buffer of one value is needed below
    sizes = pc.binary_length(texts).to_numpy(zero_copy_only=False)
    parts, start = [], 0
    for i in np.flatnonzero(sizes > LONG_DOCUMENT_BYTES):
        if i > start:
            parts.append(_encode_documents(tokenizer, texts.slice(start, i - start).to_pylist(), eos_id))
        parts.append(_encode_long(tokenizer, memoryview(texts[i].as_buffer()), eos_id))
        start = i + 1
    if start < len(texts) or not parts:
        parts.append(_encode_documents(tokenizer, texts.slice(start).to_pylist(), eos_id))
    return parts[0] if len(parts) == 1 else TokenBatch.concat(parts)


def _encode_documents(tokenizer: Tokenizer, texts: list[str], eos_id: int) -> TokenBatch:
    """Texts go to `encode_batch_fast` (the same ids as `encode_batch`, without character offsets) in groups of
    about ENCODE_GROUP_CHARS characters (a tokenizers Encoding holds far more than its ids: memory stays
    bounded whatever --batch-size is), the next group encoding while the ids of the previous one are copied out.
    """
    return TokenBatch.concat([_ids_with_eos(ids, eos_id) for ids in _encoded_groups(tokenizer, texts, True)])


def _encoded_groups(tokenizer: Tokenizer, texts: list[str], special: bool) -> Iterator[list[list[int]]]:
    """Token ids of `texts`, one group of about ENCODE_GROUP_CHARS characters at a time."""
    if not texts:
        return
    lengths = np.fromiter(map(len, texts), np.int64, len(texts))
    group_of = np.cumsum(lengths) // ENCODE_GROUP_CHARS
    cuts = np.flatnonzero(np.diff(group_of)) + 1
    bounds = list(zip(np.concatenate([[0], cuts]), np.concatenate([cuts, [len(texts)]]), strict=True))
    with ThreadPoolExecutor(1) as encoder:  # encodes the next group (GIL released) while ids are copied out

        def encode(i: int):
            lo, hi = bounds[i]
            return encoder.submit(tokenizer.encode_batch_fast, texts[lo:hi], add_special_tokens=special)

        pending = encode(0)
        for i in range(len(bounds)):
            encodings = pending.result()
            if i + 1 < len(bounds):
                pending = encode(i + 1)
            yield [e.ids for e in encodings]
            del encodings


def piece_bounds(data: memoryview, piece_bytes: int = PIECE_BYTES) -> Iterator[tuple[int, int]]:
    """Byte ranges of the pieces of a UTF-8 text: at least `piece_bytes` each, every cut at ASCII whitespace
    after a non-whitespace character; without one within 2·piece_bytes, at the character boundary there."""
    start, end = 0, len(data)
    while end - start > 2 * piece_bytes:
        cut, limit = start + piece_bytes, start + 2 * piece_bytes
        while (found := _ASCII_SPACE.search(data, cut, limit)) and _after_space(data, found.start()):
            cut = found.start() + 1
        if found:
            cut = found.start()
        else:
            cut = limit
            while data[cut] & 0xC0 == 0x80:  # not inside a character
                cut -= 1
        yield start, cut
        start = cut
    yield start, end


def _after_space(data: memoryview, at: int) -> bool:
    """Whether the character before byte `at` is whitespace (ASCII or Unicode)."""
    before = bytes(data[max(at - 4, 0) : at]).decode("utf-8", errors="ignore")
    return not before or before[-1].isspace()


def special_tokens(tokenizer: Tokenizer) -> tuple[list[int], list[int]]:
    """The ids the post-processor puts before and after a document (e.g. BOS), found on a one-letter text."""
    plain = tokenizer.encode("a", add_special_tokens=False).ids
    full = tokenizer.encode("a", add_special_tokens=True).ids
    for at in range(len(full) - len(plain) + 1):
        if full[at : at + len(plain)] == plain:
            return full[:at], full[at + len(plain) :]
    return [], []


def _encode_long(tokenizer: Tokenizer, data: memoryview, eos_id: int) -> TokenBatch:
    """One long document (its UTF-8 bytes) encoded piece by piece, special tokens and EOS around the whole.

    Pieces are decoded a group (ENCODE_GROUP_CHARS) at a time, so the document never exists as one str."""
    prefix, suffix = special_tokens(tokenizer)
    arrays = [np.asarray(prefix, np.uint32)]
    bounds = list(piece_bounds(data))
    per_group = max(ENCODE_GROUP_CHARS // PIECE_BYTES, 1)
    for first in range(0, len(bounds), per_group):
        texts = [bytes(data[lo:hi]).decode("utf-8") for lo, hi in bounds[first : first + per_group]]
        for group in _encoded_groups(tokenizer, texts, False):
            arrays.extend(np.asarray(ids, np.uint32) for ids in group)
    arrays.append(np.asarray([*suffix, eos_id], np.uint32))
    tokens = np.concatenate(arrays)
    return TokenBatch(tokens, np.array([0, len(tokens)], np.int64))


def _ids_with_eos(ids: list[list[int]], eos_id: int) -> TokenBatch:
    counts = np.fromiter(map(len, ids), np.int64, len(ids)) + 1
    offsets = np.zeros(len(ids) + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    eos = (eos_id,)
    tokens = np.fromiter(
        itertools.chain.from_iterable(itertools.chain(doc, eos) for doc in ids), np.uint32, int(offsets[-1])
    )
    return TokenBatch(tokens, offsets)
