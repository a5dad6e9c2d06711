"""Domains of a mixture: from a column (``--domain-column source``) or one input per domain (``web=path/``).

Also per-domain statistics (documents, bytes, tokens) and token counting: exact with a Hugging Face
``tokenizer.json``, else the approximation tokens = ceil(UTF-8 bytes / 4) (≈ GPT-2/NeoX BPE on English).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.io.errors import InputError, UsageError
from curate.io.inputs import BadRows, Columns, iter_batches
from curate.io.output import write_text_atomic
from curate.stages.mix.tables import read_versioned_json

BYTES_PER_TOKEN = 4
STATS_FORMAT = "curate-mix-stats/1"


@dataclass(frozen=True)
class DomainSpec:
    """Where the domains come from: ``(name, input)`` pairs; name None means "split by ``column``"."""

    sources: list[tuple[str | None, str]]
    column: str | None = None

    @classmethod
    def parse(cls, inputs: list[str], column: str | None) -> DomainSpec:
        if not inputs:
            raise UsageError("no INPUT given: pass name=path per domain, or inputs plus --domain-column")
        sources: list[tuple[str | None, str]] = []
        for spec in inputs:
            name, sep, path = spec.partition("=")
            if sep and name and "/" not in name:
                sources.append((name, path))
            elif column:
                sources.append((None, spec))
            else:
                raise UsageError(
                    f"{spec}: say which domain it is (web={spec}) or name a domain column (--domain-column source)"
                )
        names = [n for n, _ in sources if n is not None]
        if len(names) != len(set(names)):
            raise UsageError("each domain may appear once as name=path (use a directory or glob for several files)")
        return cls(sources, column)

    def batches(self, columns: Columns, batch_size: int = 10_000) -> Iterator[tuple[str, pa.RecordBatch]]:
        """(domain, batch) in a deterministic order; a batch with several domains is split by domain."""
        bad = BadRows(skip=False)
        for name, path in self.sources:
            for batch in iter_batches([path], columns, batch_size=batch_size, bad=bad):
                if name is not None:
                    yield name, batch
                    continue
                yield from _split_by_column(batch, self.column, path)  # type: ignore[arg-type]


def _split_by_column(batch: pa.RecordBatch, column: str, path: str) -> Iterator[tuple[str, pa.RecordBatch]]:
    names, codes = domain_codes(batch, column, path)
    for code in np.argsort(names):
        yield names[code], batch.filter(pa.array(codes == code))


def domain_codes(batch: pa.RecordBatch, column: str, path: str) -> tuple[list[str], np.ndarray]:
    """Each row's domain from ``column``: (the batch's domain names, each row's index into them)."""
    if column not in batch.schema.names:
        raise InputError(path, f"missing domain column '{column}' (columns: {', '.join(batch.schema.names)})")
    values = batch.column(column)
    if values.null_count:
        row = int(np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0])
        raise InputError(path, "expected a domain name, found null", row=row, column=column)
    encoded = pc.dictionary_encode(values.cast(pa.string()))
    return encoded.dictionary.to_pylist(), encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)


class TokenCounter:
    """Tokens per document: a ``tokenizers`` JSON when given, else ceil(bytes / 4)."""

    def __init__(self, tokenizer: str | None = None):
        self.name = tokenizer or f"bytes/{BYTES_PER_TOKEN}"
        self._tokenizer = None
        if tokenizer:
            from tokenizers import Tokenizer

            try:
                self._tokenizer = Tokenizer.from_file(str(tokenizer))
            except Exception as exc:
                raise UsageError(f"{tokenizer}: not a tokenizers JSON file ({exc})") from None

    def count(self, texts: pa.Array) -> np.ndarray:
        nbytes = pc.binary_length(texts).to_numpy(zero_copy_only=False).astype(np.int64)
        if self._tokenizer is None:
            return -(-nbytes // BYTES_PER_TOKEN)
        encodings = self._tokenizer.encode_batch_fast(texts.to_pylist(), add_special_tokens=False)
        return np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))


@dataclass
class DomainStats:
    """Documents, bytes and tokens per domain (in first-seen order)."""

    tokenizer: str
    domains: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, domain: str, documents: int, nbytes: int, tokens: int) -> None:
        row = self.domains.setdefault(domain, {"documents": 0, "bytes": 0, "tokens": 0})
        row["documents"] += documents
        row["bytes"] += nbytes
        row["tokens"] += tokens

    @property
    def names(self) -> list[str]:
        return list(self.domains)

    def tokens(self, names: list[str] | None = None) -> np.ndarray:
        return np.array([self.domains[n]["tokens"] for n in (names or self.names)], dtype=np.float64)

    def to_json(self) -> dict:
        total = sum(r["tokens"] for r in self.domains.values()) or 1
        rows = {n: {**r, "token_share": round(r["tokens"] / total, 6)} for n, r in self.domains.items()}
        return {"format": STATS_FORMAT, "tokenizer": self.tokenizer, "domains": rows}

    def save(self, path: str | Path) -> None:
        write_text_atomic(path, json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> DomainStats:
        data = read_versioned_json(path, STATS_FORMAT, "write it with `curate mix stats -o FILE`")
        stats = cls(data["tokenizer"])
        for name, row in data["domains"].items():
            stats.add(name, int(row["documents"]), int(row["bytes"]), int(row["tokens"]))
        return stats

    def check_domains(self, names: list[str], where: str) -> None:
        if set(names) != set(self.names):
            raise UsageError(
                f"{where}: domains {', '.join(sorted(names))} do not match the data's {', '.join(sorted(self.names))}"
            )


def compute_stats(spec: DomainSpec, columns: Columns, counter: TokenCounter, batch_size: int = 10_000) -> DomainStats:
    stats = DomainStats(counter.name)
    for domain, batch in spec.batches(columns, batch_size):
        texts = batch.column(columns.text)
        nbytes = int(pc.sum(pc.binary_length(texts)).as_py() or 0)
        stats.add(domain, batch.num_rows, nbytes, int(counter.count(texts).sum()))
    if not stats.domains:
        raise InputError(", ".join(p for _, p in spec.sources), "no documents in the inputs")
    return stats
