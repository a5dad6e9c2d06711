"""`curate stats`: documents, characters, tokens, languages, length quantiles and null/empty counts.

One streaming pass over Arrow record batches. Lengths go into a :class:`LengthHistogram` (exact counts
below 1,024, then 64 logarithmic bins per doubling), so memory is a few thousand counters whatever the
corpus size, quantiles are within 1.1% of the exact value, and histograms of shards merge by addition.
Rows whose text is null are counted (and dropped by the shared reader) instead of stopping the run.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.io.errors import InputError
from curate.io.inputs import BadRows, Columns, InputFile, plan_units, read_unit, resolve_inputs
from curate.params import option
from curate.stages.mix.domains import TokenCounter

EXACT_BELOW = 1 << 10  # lengths below this get one bin each
BINS_PER_OCTAVE = 64  # above: 64 log-spaced bins per doubling (each bin ≤ 1.1% wide)
MAX_LOG2 = 48
QUANTILES = (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99)
SAMPLE_LIMIT = 5  # how many offending rows a report names


class LengthHistogram:
    """Bounded-memory distribution of non-negative integer lengths: mergeable, exact below 1,024."""

    size = EXACT_BELOW + (MAX_LOG2 - 10) * BINS_PER_OCTAVE

    def __init__(self) -> None:
        self.counts = np.zeros(self.size, dtype=np.int64)
        self.total = 0
        self.sum = 0
        self.min: int | None = None
        self.max: int | None = None

    @staticmethod
    def bins(lengths: np.ndarray) -> np.ndarray:
        lengths = np.asarray(lengths, dtype=np.int64)
        out = lengths.copy()
        big = lengths >= EXACT_BELOW
        if big.any():
            octaves = np.log2(lengths[big].astype(np.float64)) - 10
            out[big] = EXACT_BELOW + np.minimum(
                (octaves * BINS_PER_OCTAVE).astype(np.int64), (MAX_LOG2 - 10) * BINS_PER_OCTAVE - 1
            )
        return out

    @staticmethod
    def lower_edge(index: int) -> float:
        if index < EXACT_BELOW:
            return float(index)
        return float(2.0 ** (10 + (index - EXACT_BELOW) / BINS_PER_OCTAVE))

    def add(self, lengths: np.ndarray) -> None:
        if len(lengths) == 0:
            return
        self.counts += np.bincount(self.bins(lengths), minlength=self.size)
        self.total += len(lengths)
        self.sum += int(np.sum(lengths, dtype=np.int64))
        low, high = int(np.min(lengths)), int(np.max(lengths))
        self.min = low if self.min is None else min(self.min, low)
        self.max = high if self.max is None else max(self.max, high)

    def merge(self, other: LengthHistogram) -> None:
        self.counts += other.counts
        self.total += other.total
        self.sum += other.sum
        for name, pick in (("min", min), ("max", max)):
            mine, theirs = getattr(self, name), getattr(other, name)
            setattr(self, name, theirs if mine is None else mine if theirs is None else pick(mine, theirs))

    def quantile(self, q: float) -> float:
        """The q-quantile: exact below 1,024; above, the bin's geometric middle, clipped to [min, max]."""
        if not self.total:
            return float("nan")
        rank = max(1, int(np.ceil(q * self.total)))
        index = int(np.searchsorted(np.cumsum(self.counts), rank))
        if index < EXACT_BELOW:
            value = float(index)
        else:
            value = float(np.sqrt(self.lower_edge(index) * self.lower_edge(index + 1)))
        return float(np.clip(value, self.min, self.max))

    def octaves(self) -> list[tuple[int, int, int]]:
        """(low, high, count) per power-of-two range [2^k, 2^(k+1)) (plus [0, 1)), for charts."""
        exact = self.counts[:EXACT_BELOW]
        rows = [(0, 1, int(exact[0]))]
        for k in range(10):
            rows.append((1 << k, 1 << (k + 1), int(exact[1 << k : 1 << (k + 1)].sum())))
        logs = self.counts[EXACT_BELOW:].reshape(-1, BINS_PER_OCTAVE).sum(axis=1)
        rows += [(1 << (10 + k), 1 << (11 + k), int(c)) for k, c in enumerate(logs)]
        last = max((i for i, row in enumerate(rows) if row[2]), default=0)
        first = min((i for i, row in enumerate(rows) if row[2]), default=0)
        return rows[first : last + 1]

    def summary(self) -> dict:
        if not self.total:
            return {"count": 0}
        return {
            "count": self.total,
            "min": self.min,
            "mean": round(self.sum / self.total, 2),
            "max": self.max,
            **{f"p{round(q * 100)}": round(self.quantile(q), 1) for q in QUANTILES},
        }


class NullTextRows(BadRows):
    """BadRows that counts rows with null text (naming a few) instead of failing; other problems as usual."""

    def __init__(self, skip: bool, text_column: str):
        super().__init__(skip)
        self.text_column = text_column
        self.null_text = 0
        self.samples: list[str] = []

    def report(self, error: InputError) -> None:
        if error.column != self.text_column:  # the shared reader reports null text, and only that, per column
            super().report(error)
            return
        self.null_text += 1
        if len(self.samples) < SAMPLE_LIMIT:
            self.samples.append(f"{error.path} {error.row_label} {error.row}")


def scan(
    inputs: Sequence[str], columns: Columns, batch_size: int, bad: BadRows
) -> Iterator[tuple[InputFile, pa.RecordBatch, np.ndarray]]:
    """(input file, batch, row number of each row) for every input row, in plan order (see read_unit)."""
    files = resolve_inputs(inputs, bad)
    for unit in plan_units(files, 1 << 62, columns, bad):
        for batch, rows in read_unit(unit, columns, batch_size, bad):
            yield unit.file, batch, rows


def char_lengths(texts: pa.Array) -> np.ndarray:
    return pc.utf8_length(texts).to_numpy(zero_copy_only=False).astype(np.int64)


def blank(texts: pa.Array) -> np.ndarray:
    """True where the text is empty or only whitespace."""
    return pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(texts)), 0).to_numpy(zero_copy_only=False)


@dataclass
class StatsParams:
    tokenizer: str | None = option(None, "Hugging Face tokenizers JSON: also count tokens per document.")
    language_column: str = option("lang", "Column with each document's language, counted when present.")
    format: str = option(
        "table", "table: for the terminal; md: markdown for PR comments; json.", choices=["table", "md", "json"]
    )


@dataclass
class CorpusStats:
    """Everything `curate stats` reports, accumulated batch by batch."""

    language_column: str = "lang"
    documents: int = 0
    characters: int = 0
    bytes: int = 0
    tokens: int | None = None
    empty_text: int = 0
    nulls: dict[str, int] = field(default_factory=dict)
    languages: dict[str, dict[str, int]] = field(default_factory=dict)
    chars: LengthHistogram = field(default_factory=LengthHistogram)
    token_lengths: LengthHistogram | None = None

    def add(self, batch: pa.RecordBatch, text_column: str, tokens: np.ndarray | None = None) -> None:
        texts = batch.column(text_column)
        lengths = char_lengths(texts)
        self.documents += batch.num_rows
        self.characters += int(lengths.sum())
        self.bytes += int(pc.sum(pc.binary_length(texts)).as_py() or 0)
        self.empty_text += int(blank(texts).sum())
        self.chars.add(lengths)
        for name, column in zip(batch.schema.names, batch.columns, strict=True):
            self.nulls[name] = self.nulls.get(name, 0) + column.null_count
        if tokens is not None:
            self.tokens = (self.tokens or 0) + int(tokens.sum())
            self.token_lengths = self.token_lengths or LengthHistogram()
            self.token_lengths.add(tokens)
        if self.language_column in batch.schema.names:
            self._add_languages(batch.column(self.language_column), lengths, tokens)

    def _add_languages(self, lang: pa.Array, lengths: np.ndarray, tokens: np.ndarray | None) -> None:
        data = {"lang": pc.cast(lang, pa.string()), "chars": lengths}
        aggregates = [("chars", "count"), ("chars", "sum")]
        if tokens is not None:
            data["tokens"] = tokens
            aggregates.append(("tokens", "sum"))
        grouped = pa.table(data).group_by("lang", use_threads=False).aggregate(aggregates)
        for row in grouped.to_pylist():
            entry = self.languages.setdefault(row["lang"] if row["lang"] is not None else "(null)", {})
            entry["documents"] = entry.get("documents", 0) + row["chars_count"]
            entry["characters"] = entry.get("characters", 0) + row["chars_sum"]
            if tokens is not None:
                entry["tokens"] = entry.get("tokens", 0) + row["tokens_sum"]

    def as_dict(self, null_text: int, tokenizer: str | None, seconds: float) -> dict:
        nulls = {k: v for k, v in sorted(self.nulls.items()) if v}
        result: dict = {
            "documents": self.documents + null_text,
            "characters": self.characters,
            "bytes": self.bytes,
            "null_text": null_text,
            "empty_text": self.empty_text,
            "null_values": nulls,
            "chars_per_doc": self.chars.summary(),
        }
        if tokenizer is not None:
            result.update(tokenizer=tokenizer, tokens=self.tokens or 0)
            result["tokens_per_doc"] = (self.token_lengths or LengthHistogram()).summary()
        if self.languages:
            ordered = sorted(self.languages.items(), key=lambda kv: (-kv[1]["documents"], kv[0]))
            result["languages"] = {
                lang: {**row, "share": round(row["documents"] / max(self.documents, 1), 6)} for lang, row in ordered
            }
        result["seconds"] = round(seconds, 3)
        return result


def corpus_stats(params: StatsParams, inputs: Sequence[str], columns: Columns, batch_size: int, skip: bool) -> dict:
    """Stream every input row once and return the statistics (the --json output)."""
    started = time.perf_counter()
    count_tokens = TokenCounter(params.tokenizer).count if params.tokenizer else None
    bad = NullTextRows(skip, columns.text)
    stats = CorpusStats(params.language_column)
    for _file, batch, _rows in scan(inputs, columns, batch_size, bad):
        texts = batch.column(columns.text)
        stats.add(batch, columns.text, count_tokens(texts) if count_tokens else None)
    result = stats.as_dict(bad.null_text, params.tokenizer, time.perf_counter() - started)
    if bad.records:
        result["errors_skipped"] = len(bad.records)
    return result


# -- presentation ----------------------------------------------------------------------------------------
def _number(value) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _rows(stats: dict) -> tuple[list[tuple[str, str]], list[list[str]], list[list[str]]]:
    """(totals, length quantile rows, language rows) as strings."""
    totals = [(name.replace("_", " "), _number(stats[name]))
              for name in ("documents", "characters", "bytes", "tokens", "null_text", "empty_text") if name in stats]
    totals += [(f"null {column}", _number(n)) for column, n in stats["null_values"].items()]
    keys = ["min", *(f"p{round(q * 100)}" for q in QUANTILES), "max", "mean"]
    lengths = []
    for label, name in (("chars/doc", "chars_per_doc"), ("tokens/doc", "tokens_per_doc")):
        if stats.get(name, {}).get("count"):
            lengths.append([label, *(_number(stats[name][k]) for k in keys)])
    languages = []
    for lang, row in list(stats.get("languages", {}).items())[:30]:
        cells = [lang, _number(row["documents"]), f"{100 * row['share']:.2f}%", _number(row["characters"])]
        if "tokens" in row:
            cells.append(_number(row["tokens"]))
        languages.append(cells)
    return totals, [["length", *keys], *lengths], languages


def _language_header(stats: dict) -> list[str]:
    return ["language", "documents", "share", "characters"] + (["tokens"] if "tokens" in stats else [])


def format_table(stats: dict) -> str:
    """Aligned plain-text tables for a terminal."""
    totals, lengths, languages = _rows(stats)
    width = max(len(name) for name, _ in totals)
    lines = [f"{name:<{width}}  {value:>16}" for name, value in totals]
    for table in (lengths, [_language_header(stats), *languages] if languages else []):
        if len(table) < 2:
            continue
        widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
        lines.append("")
        lines += ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
                  for row in table]
    if len(stats.get("languages", {})) > len(languages):
        lines.append(f"… {len(stats['languages']) - len(languages)} more languages (see --json)")
    return "\n".join(lines)


def format_markdown(stats: dict) -> str:
    """GitHub-flavoured markdown tables for PR comments."""
    totals, lengths, languages = _rows(stats)

    def table(rows: list[list[str]]) -> list[str]:
        header, *body = rows
        align = ["---"] + ["---:"] * (len(header) - 1)
        return ["| " + " | ".join(r) + " |" for r in (header, align, *body)]

    lines = ["| measure | value |", "|---|---:|", *(f"| {name} | {value} |" for name, value in totals)]
    if len(lengths) > 1:
        lines += ["", *table(lengths)]
    if languages:
        lines += ["", *table([_language_header(stats), *languages])]
    return "\n".join(lines)
