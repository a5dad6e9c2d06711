"""The built-in proxy: a smoothed byte n-gram language model per mixture, no GPU, no training loop.

What a proxy run means here: "train" a byte-level n-gram LM on ``token_budget`` tokens drawn by the
mixture (domain d contributes ``w_d × budget`` tokens, i.e. ``w_d × budget / tokens_d`` epochs of its
training split), then measure bits per byte on held-out text of each target domain.

Why it is cheap: the expected n-gram counts of such a sample are a weighted sum of per-domain counts,
``c_w(g) = Σ_d epochs_d × c_d(g)``, so each domain's counts are computed ONCE — and only for the n-grams
(and contexts) that occur in the validation text. A mixture then costs a few small matrix products.

Model: interpolated Dirichlet-prior smoothing, order by order from a uniform byte distribution,
``P_n(x|h) = (c(h x) + β P_{n-1}(x|h')) / (c(h) + β)``. Documents are separated by ``order-1`` zero
bytes and each ends with one predicted end-of-document byte, so contexts never cross documents.
Repeated data counts like fresh data (no diminishing returns from epochs): keep --max-epochs low.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.io.errors import UsageError
from curate.io.inputs import Columns
from curate.params import option
from curate.stages.mix.domains import DomainSpec, DomainStats, TokenCounter

LOSS_PREFIX = "bpb/"
MEAN_COLUMN = LOSS_PREFIX + "mean"
_LN2 = np.log(2.0)


@dataclass
class ProxyParams:
    order: int = option(5, "Byte n-gram order of the proxy LM (2-7; contexts of order-1 bytes).")
    smoothing: float = option(1.0, "Dirichlet smoothing β: pseudo-counts given to the lower-order estimate.")
    token_budget: int | None = option(None, "Tokens each proxy trains on (default: all training tokens).")
    valid_fraction: float = option(0.05, "Share of each domain's documents held out as its validation set.")
    valid_bytes: int = option(100_000, "At most this many bytes of held-out text per target domain.")
    targets: list[str] = option([], "Domains whose held-out text is scored (default: every domain with held-out text).")
    seed: int = option(0, "Seed of the held-out split.")
    chunk: int = option(32, "Mixtures scored at a time (bounds memory).", fingerprint=False)


def held_out(row_numbers: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Deterministic pseudo-random split of row numbers (splitmix64 of row + seed)."""
    with np.errstate(over="ignore"):
        z = row_numbers.astype(np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53) < fraction


def ngram_keys(texts: pa.Array, order: int) -> np.ndarray:
    """One uint64 key per predicted byte: the ``order`` bytes ending there, little-endian (newest lowest)."""
    pad = order - 1
    binary = texts.cast(pa.large_binary())
    offsets = np.frombuffer(binary.buffers()[1], dtype=np.int64)[binary.offset : binary.offset + len(binary) + 1]
    data = binary.buffers()[2]
    body = (np.frombuffer(data, dtype=np.uint8) if data is not None else np.empty(0, np.uint8))[offsets[0] : offsets[-1]]
    lengths = np.diff(offsets)
    docs = len(lengths)
    shift = pad * np.repeat(np.arange(1, docs + 1, dtype=np.int64), lengths)
    body_positions = np.arange(len(body), dtype=np.int64) + shift
    stream = np.zeros(len(body) + pad * docs + 1, dtype=np.uint64)
    stream[body_positions] = body
    ends = offsets[1:] - offsets[0] + pad * np.arange(1, docs + 1, dtype=np.int64)  # end-of-document bytes
    positions = np.sort(np.concatenate([body_positions, ends]))
    keys = stream[positions].copy()
    for back in range(1, order):
        keys |= stream[positions - back] << np.uint64(8 * back)
    return keys


def _masks(order: int) -> list[np.uint64]:
    return [np.uint64((1 << (8 * n)) - 1) for n in range(1, order + 1)]


_EMPTY = np.uint64(0xFFFFFFFFFFFFFFFF)
_TAG_SHIFT = np.uint64(56)


def _tag(keys: np.ndarray, order: int, context: bool) -> np.ndarray:
    """Keys of all orders and kinds share one table: the top byte says (order, gram or context)."""
    return keys | (np.uint64(2 * order + int(context)) << _TAG_SHIFT)


@numba.njit(cache=True)
def _count_positions(keys, order, table, slots, counts):  # pragma: no cover - compiled
    """For each position and each order, count its n-gram and its context if the table holds them."""
    bits = np.uint64(64 - int(np.log2(len(table))))
    last = np.uint64(len(table) - 1)
    for i in range(len(keys)):
        full = keys[i]
        for n in range(1, order + 1):
            gram = full & ((np.uint64(1) << np.uint64(8 * n)) - np.uint64(1))
            for kind in range(2 if n > 1 else 1):
                key = (gram >> np.uint64(8 * kind)) | (np.uint64(2 * n + kind) << np.uint64(56))
                slot = (key * np.uint64(0x9E3779B97F4A7C15)) >> bits
                while table[slot] != np.uint64(0xFFFFFFFFFFFFFFFF):
                    if table[slot] == key:
                        counts[slots[slot]] += 1
                        break
                    slot = (slot + np.uint64(1)) & last


@numba.njit(cache=True)
def _fill_table(keys, table, slots):  # pragma: no cover - compiled
    bits = np.uint64(64 - int(np.log2(len(table))))
    last = np.uint64(len(table) - 1)
    for index in range(len(keys)):
        slot = (keys[index] * np.uint64(0x9E3779B97F4A7C15)) >> bits
        while table[slot] != np.uint64(0xFFFFFFFFFFFFFFFF):
            slot = (slot + np.uint64(1)) & last
        table[slot] = keys[index]
        slots[slot] = index


class _Vocab:
    """The tagged n-gram and context keys of the validation text, with per-domain counts (open addressing)."""

    def __init__(self, keys: np.ndarray, order: int, domains: int):
        masks = _masks(order)
        parts = [_tag(keys & m, n + 1, False) for n, m in enumerate(masks)]
        parts += [_tag((keys & m) >> np.uint64(8), n + 1, True) for n, m in enumerate(masks) if n]
        self.order = order
        self.keys = np.unique(np.concatenate(parts))
        size = 1 << int(np.ceil(np.log2(2 * len(self.keys) + 1)))
        self.table = np.full(size, _EMPTY, dtype=np.uint64)
        self.slots = np.zeros(size, dtype=np.int64)
        _fill_table(self.keys, self.table, self.slots)
        self.counts = np.zeros((domains, len(self.keys)), dtype=np.int64)

    def add(self, domain: int, keys: np.ndarray) -> None:
        _count_positions(keys, self.order, self.table, self.slots, self.counts[domain])

    def lookup(self, keys: np.ndarray, order: int, context: bool) -> np.ndarray:
        return self.counts[:, np.searchsorted(self.keys, _tag(keys, order, context))].astype(np.float32)


@dataclass
class _Target:
    weights: np.ndarray  # multiplicity of each distinct validation n-gram
    grams: list[np.ndarray]  # per order: (domains, distinct) counts of the n-gram
    contexts: list[np.ndarray]  # per order: (domains, distinct) counts of its context (order 1: all bytes)


class NgramProxy:
    """Per-domain n-gram statistics (computed once) and the per-mixture loss."""

    def __init__(self, domains: list[str], train_tokens: np.ndarray, targets: dict[str, _Target], params: ProxyParams):
        self.domains, self.train_tokens, self.targets, self.params = domains, train_tokens, targets, params
        self.budget = float(params.token_budget or train_tokens.sum())

    @property
    def columns(self) -> list[str]:
        return [LOSS_PREFIX + t for t in self.targets] + [MEAN_COLUMN]

    def losses(self, weights: np.ndarray) -> np.ndarray:
        """Bits per byte on each target (and their mean) for each mixture row (domains in ``self.domains`` order)."""
        epochs = (weights * self.budget / np.maximum(self.train_tokens, 1)).astype(np.float32)
        out = np.empty((len(weights), len(self.targets) + 1))
        beta = np.float32(self.params.smoothing)
        for start in range(0, len(weights), self.params.chunk):
            block = epochs[start : start + self.params.chunk]
            for column, target in enumerate(self.targets.values()):
                prob = np.full((len(block), len(target.weights)), 1 / 256, dtype=np.float32)
                for grams, contexts in zip(target.grams, target.contexts, strict=True):
                    prob = (block @ grams + beta * prob) / (block @ contexts + beta)
                nats = -(np.log(prob) @ target.weights) / target.weights.sum()
                out[start : start + len(block), column] = nats / _LN2
        out[:, -1] = out[:, :-1].mean(axis=1)
        return out


def build_proxy(spec: DomainSpec, columns: Columns, counter: TokenCounter, params: ProxyParams,
                batch_size: int = 10_000) -> tuple[NgramProxy, DomainStats]:
    """Two passes over the data: collect held-out text, then count the n-grams it needs per domain."""
    if not 2 <= params.order <= 7:
        raise UsageError("--order must be between 2 and 7 (keys are 64-bit, with a tag byte)")
    if not 0 < params.valid_fraction < 1 or params.valid_bytes < 1 or params.smoothing <= 0:
        raise UsageError("--valid-fraction must be in (0, 1); --valid-bytes and --smoothing > 0")
    valid_texts: dict[str, list[pa.Array]] = {}
    valid_size: dict[str, int] = {}
    for domain, batch, is_valid in _split_batches(spec, columns, params, batch_size):
        valid_size.setdefault(domain, 0)
        room = params.valid_bytes - valid_size[domain]
        texts = batch.column(columns.text).filter(pa.array(is_valid))
        if room > 0 and len(texts):
            texts = _take_bytes(texts, room)
            valid_texts.setdefault(domain, []).append(texts)
            valid_size[domain] += int(pc.sum(pc.binary_length(texts)).as_py() or 0)
    domains = list(valid_size)
    targets = params.targets or [d for d in domains if d in valid_texts]
    unknown = [t for t in targets if t not in domains]
    if unknown:
        raise UsageError(f"--targets: unknown domain(s) {', '.join(unknown)}; domains are {', '.join(domains)}")
    missing = [t for t in targets if t not in valid_texts]
    if missing:
        raise UsageError(f"no held-out text for target(s) {', '.join(missing)}: raise --valid-fraction")
    target_keys = {t: np.unique(np.concatenate([ngram_keys(a, params.order) for a in valid_texts[t]]),
                                return_counts=True) for t in targets}
    vocab = _Vocab(np.concatenate([k for k, _ in target_keys.values()]), params.order, len(domains))
    total_bytes = np.zeros(len(domains), dtype=np.int64)
    stats = DomainStats(counter.name)
    for domain, batch, is_valid in _split_batches(spec, columns, params, batch_size):
        texts = batch.column(columns.text).filter(pa.array(~is_valid))
        for piece in _pieces(texts):
            keys = ngram_keys(piece, params.order)
            vocab.add(domains.index(domain), keys)
            total_bytes[domains.index(domain)] += len(keys)
            stats.add(domain, len(piece), len(keys) - len(piece), int(counter.count(piece).sum()))
    targets_data = {}
    masks = _masks(params.order)
    for t, (keys, multiplicity) in target_keys.items():
        grams = [vocab.lookup(keys & m, n + 1, False) for n, m in enumerate(masks)]
        contexts = [np.repeat(total_bytes[:, None].astype(np.float32), len(keys), axis=1)]
        contexts += [vocab.lookup((keys & m) >> np.uint64(8), n + 1, True) for n, m in enumerate(masks) if n]
        targets_data[t] = _Target(multiplicity.astype(np.float64), grams, contexts)
    train_tokens = stats.tokens(domains) if stats.domains.keys() == set(domains) else None
    if train_tokens is None:
        raise UsageError("every domain needs training documents besides its held-out ones")
    return NgramProxy(domains, train_tokens, targets_data, params), stats


def _split_batches(spec: DomainSpec, columns: Columns, params: ProxyParams, batch_size: int):
    seen: dict[str, int] = {}
    for domain, batch in spec.batches(columns, batch_size):
        start = seen.get(domain, 0)
        seen[domain] = start + batch.num_rows
        rows = np.arange(start, start + batch.num_rows, dtype=np.int64)
        yield domain, batch, held_out(rows, params.valid_fraction, params.seed)


def _pieces(texts: pa.Array, max_bytes: int = 1 << 20):
    """Consecutive slices of about ``max_bytes`` of text (bounds the memory of the key arrays)."""
    ends = np.cumsum(pc.binary_length(texts).to_numpy(zero_copy_only=False))
    start = 0
    while start < len(texts):
        base = ends[start - 1] if start else 0
        stop = max(int(np.searchsorted(ends, base + max_bytes, side="right")), start + 1)
        yield texts.slice(start, stop - start)
        start = stop


def _take_bytes(texts: pa.Array, room: int) -> pa.Array:
    """Leading documents up to ``room`` UTF-8 bytes (the last one cut, never mid-character)."""
    out, used = [], 0
    for text in texts.to_pylist():
        raw = text.encode("utf-8")
        if used + len(raw) > room:
            out.append(raw[: room - used].decode("utf-8", errors="ignore"))
            break
        out.append(text)
        used += len(raw)
    return pa.array(out, type=pa.string())
