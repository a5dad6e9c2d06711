"""`curate validate`: data checks for CI, each rule passing or failing with its measured value and bound.

The rules are one dataclass, :class:`ValidateRules`: the CLI flags and the schema of ``--rules rules.yaml``
both derive from it. Every rule is evaluated in one streaming pass over Arrow record batches with bounded
memory, so a full corpus can be checked in CI:

* counts, shares and length bounds are running counters; a failing rule names up to 5 offending rows (their
  id, or file and row/line when the id is missing);
* exact duplicate texts and repeated ids use :class:`DuplicateFinder`: each key becomes a 128-bit hash (XXH64
  with seeds 0 and 1, as `curate dedup exact`) with the row's position, 24 bytes a row. Up to
  ``--memory-rows`` of them stay in memory; past that they are spilled to disk in 256 partitions by the top
  byte of the hash, and each partition is sorted on its own (split again by the next byte while it is still
  larger than ``--memory-rows``). Memory stays about ``memory_rows`` × 24 bytes (×4 while sorting) whatever
  the corpus size; disk use is 24 bytes per row plus the row labels. Counts are exact up to a 128-bit hash
  collision (probability about n²/2¹²⁹, 10⁻²¹ for a billion rows); no second pass reads the text.
  The ids of the duplicate rows are looked up afterwards in a Parquet spill of every row's label.
"""

from __future__ import annotations

import operator
import re
import shutil
import socket
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.io.errors import InputError, UsageError
from curate.io.inputs import Columns, InputFile
from curate.params import from_mapping, load_mapping, option
from curate.stages.corpus_stats import SAMPLE_LIMIT, NullTextRows, blank, char_lengths, scan
from curate.stages.dedup.store import hash128
from curate.stages.mix.domains import TokenCounter

COLUMN_TYPES: dict[str, Callable[[pa.DataType], bool]] = {
    "string": lambda t: pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t),
    "int": pa.types.is_integer,
    "float": pa.types.is_floating,
    "number": lambda t: pa.types.is_integer(t) or pa.types.is_floating(t),
    "bool": pa.types.is_boolean,
    "list": lambda t: pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t),
    "struct": pa.types.is_struct,
    "timestamp": pa.types.is_timestamp,
    "date": pa.types.is_date,
}
_OPERATORS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "==": operator.eq,
              "!=": operator.ne}
_CHECK = re.compile(r"^\s*([^<>=!@\s]+)\s*(>=|<=|==|!=|>|<)\s*([-+0-9.eE]+)\s*(?:@\s*([0-9.eE+-]+))?\s*$")


@dataclass
class ValidateRules:
    required_columns: list[str] = option(
        [],
        "Columns that must exist in every file, each optionally with a type: id,text:string,quality_score:float "
        f"(types: {', '.join(COLUMN_TYPES)}).",
    )
    allow_null_text: bool = option(False, "Do not fail on rows whose text is null or missing.")
    allow_empty_text: bool = option(False, "Do not fail on texts that are empty or only whitespace.")
    unique_ids: bool = option(False, "Fail when two rows share an id (--id-column) or an id is null.")
    languages: list[str] = option([], "Allowed languages (values of --language-column); any other fails.")
    min_language_share: list[str] = option(
        [], "Minimum share of the rows per language, LANG:SHARE, e.g. en:0.5,de:0.1 (YAML: a mapping)."
    )
    language_column: str = option("lang", "Column holding each row's language (from `curate langid`).")
    max_duplicate_ratio: float | None = option(
        None, "Maximum share of rows whose text exactly repeats an earlier row's text."
    )
    min_chars: int | None = option(None, "Every text has at least this many characters.")
    max_chars: int | None = option(None, "Every text has at most this many characters.")
    min_tokens: int | None = option(None, "Every text has at least this many tokens (needs --tokenizer).")
    max_tokens: int | None = option(None, "Every text has at most this many tokens (needs --tokenizer).")
    tokenizer: str | None = option(None, "Hugging Face tokenizers JSON for --min-tokens/--max-tokens.")
    min_rows: int | None = option(None, "At least this many rows in all inputs together.")
    max_rows: int | None = option(None, "At most this many rows in all inputs together.")
    check: list[str] = option(
        [],
        "Numeric column bounds, COLUMN OP VALUE[@SHARE]: at least SHARE (default 1: every row) of the rows "
        "satisfy it; OP is >=, >, <=, <, == or !=; nulls never satisfy it. E.g. 'quality_score>=0.5@0.9'.",
    )
    memory_rows: int = option(
        1_000_000, "Hashes the duplicate and id checks keep in memory (24 bytes each) before spilling to disk.",
        fingerprint=False,
    )
    tmp_dir: str | None = option(None, "Where the duplicate and id checks spill (default: $TMPDIR).",
                                 fingerprint=False)

    def checks(self) -> list[ColumnCheck]:
        return [ColumnCheck.parse(text) for text in self.check]

    def language_shares(self) -> dict[str, float]:
        shares = {}
        for item in self.min_language_share:
            lang, sep, share = item.rpartition(":")
            try:
                value = float(share)
            except ValueError:
                value = -1.0
            if not sep or not lang or not 0 <= value <= 1:
                raise UsageError(f"--min-language-share: expected LANG:SHARE with SHARE in [0, 1], got {item!r}")
            shares[lang] = value
        return shares

    def required(self) -> dict[str, str | None]:
        """Column → required type name (None: any type)."""
        out: dict[str, str | None] = {}
        for item in self.required_columns:
            name, sep, kind = item.partition(":")
            if sep and kind not in COLUMN_TYPES:
                raise UsageError(f"--required-columns: unknown type {kind!r} for {name} "
                                 f"(types: {', '.join(COLUMN_TYPES)})")
            out[name] = kind if sep else None
        return out

    def check_values(self) -> None:
        """Usage errors for contradictory or malformed rules, before reading any data."""
        self.checks()
        self.language_shares()
        self.required()
        if (self.min_tokens is not None or self.max_tokens is not None) and not self.tokenizer:
            raise UsageError("--min-tokens/--max-tokens need --tokenizer tokenizer.json")
        if self.max_duplicate_ratio is not None and not 0 <= self.max_duplicate_ratio <= 1:
            raise UsageError("--max-duplicate-ratio must be in [0, 1]")
        if self.memory_rows < 1000:
            raise UsageError("--memory-rows must be ≥ 1000")
        for low, high in (("min_chars", "max_chars"), ("min_tokens", "max_tokens"), ("min_rows", "max_rows")):
            lo, hi = getattr(self, low), getattr(self, high)
            if lo is not None and hi is not None and lo > hi:
                raise UsageError(f"--{low.replace('_', '-')} {lo} is above --{high.replace('_', '-')} {hi}")


def load_rules(path: str | None, overrides: dict[str, Any]) -> ValidateRules:
    """Rules from a YAML file (keys as the flags, without --), then every flag that differs from its default."""
    values: dict[str, Any] = {}
    if path:
        data = load_mapping(path, "--rules")
        values = {key.replace("-", "_"): value for key, value in data.items()}
        shares = values.get("min_language_share")
        if isinstance(shares, dict):
            values["min_language_share"] = [f"{lang}:{share}" for lang, share in shares.items()]
    rules = from_mapping(ValidateRules, values, f"--rules {path}" if path else "rules")
    defaults = ValidateRules()
    for name, value in overrides.items():
        if value != getattr(defaults, name):
            setattr(rules, name, value)
    rules.check_values()
    return rules


@dataclass(frozen=True)
class ColumnCheck:
    """``quality_score>=0.5@0.9``: at least 90% of rows have quality_score ≥ 0.5."""

    text: str
    column: str
    op: str
    value: float
    min_share: float

    @classmethod
    def parse(cls, text: str) -> ColumnCheck:
        match = _CHECK.match(text)
        try:
            value = float(match.group(3)) if match else None
            share = float(match.group(4)) if match and match.group(4) else 1.0
        except ValueError:
            value = None
        if match is None or value is None or not 0 <= share <= 1:
            raise UsageError(f"--check: expected COLUMN OP VALUE[@SHARE] (e.g. 'quality_score>=0.5@0.9'), got {text!r}")
        return cls(text.strip(), match.group(1), match.group(2), value, share)

    def passes(self, values: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            return _OPERATORS[self.op](values, self.value) & ~np.isnan(values)

    @property
    def name(self) -> str:
        return f"check:{self.column}{self.op}{self.value:g}"


# -- duplicates with bounded memory ------------------------------------------------------------------------
_RECORD = np.dtype([("hi", "<u8"), ("lo", "<u8"), ("ordinal", "<i8")])
_KEY_BYTES = 16


@dataclass
class Duplicates:
    """How many rows repeat an earlier key, and the first few as (row ordinal, ordinal of the first copy)."""

    count: int = 0
    samples: list[tuple[int, int]] = field(default_factory=list)

    def merge(self, other: Duplicates) -> Duplicates:
        return Duplicates(self.count + other.count, sorted(self.samples + other.samples)[:SAMPLE_LIMIT])


def _key_byte(records: np.ndarray, depth: int) -> np.ndarray:
    half = records["hi"] if depth < 8 else records["lo"]
    return ((half >> np.uint64(56 - 8 * (depth % 8))) & np.uint64(0xFF)).astype(np.int64)


def _duplicates_in(records: np.ndarray) -> Duplicates:
    """Exact duplicates among records held in memory: sort by (key, ordinal), compare neighbours."""
    if len(records) < 2:
        return Duplicates()
    order = np.lexsort((records["ordinal"], records["lo"], records["hi"]))
    hi, lo, ordinal = records["hi"][order], records["lo"][order], records["ordinal"][order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = (hi[1:] != hi[:-1]) | (lo[1:] != lo[:-1])
    start = np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))
    repeated = np.flatnonzero(~first)
    chosen = repeated[np.argsort(ordinal[repeated], kind="stable")[:SAMPLE_LIMIT]]
    return Duplicates(len(repeated), [(int(ordinal[i]), int(ordinal[start[i]])) for i in chosen])


class DuplicateFinder:
    """Counts rows whose 128-bit key repeats an earlier row's, with memory bounded by ``memory_rows``."""

    def __init__(self, directory: Path, memory_rows: int):
        self.directory, self.memory_rows = directory, memory_rows
        self.buffer: list[np.ndarray] = []
        self.buffered = 0
        self.spilled = False

    def add(self, hi: np.ndarray, lo: np.ndarray, ordinals: np.ndarray) -> None:
        records = np.empty(len(hi), _RECORD)
        records["hi"], records["lo"], records["ordinal"] = hi, lo, ordinals
        self.buffer.append(records)
        self.buffered += len(records)
        if self.buffered >= self.memory_rows:
            self._spill()

    def _spill(self) -> None:
        if self.buffer:
            self.directory.mkdir(parents=True, exist_ok=True)
            _append_partitions(np.concatenate(self.buffer), self.directory, 0)
        self.buffer, self.buffered, self.spilled = [], 0, True

    def finish(self) -> Duplicates:
        if not self.spilled:
            return _duplicates_in(np.concatenate(self.buffer) if self.buffer else np.empty(0, _RECORD))
        self._spill()
        result = Duplicates()
        for path in sorted(self.directory.glob("*.bin")):
            result = result.merge(self._reduce(path, 1))
        return result

    def _chunks(self, path: Path):
        total = path.stat().st_size // _RECORD.itemsize
        for start in range(0, total, self.memory_rows):
            yield np.fromfile(path, _RECORD, count=self.memory_rows, offset=start * _RECORD.itemsize)

    def _reduce(self, path: Path, depth: int) -> Duplicates:
        """Duplicates within one partition file (all its keys share their first ``depth`` bytes)."""
        rows = path.stat().st_size // _RECORD.itemsize
        if rows <= self.memory_rows:
            return _duplicates_in(np.fromfile(path, _RECORD))
        if depth >= _KEY_BYTES or self._single_key(path):
            return self._identical(path)
        sub = path.with_suffix("")
        sub.mkdir()
        for chunk in self._chunks(path):
            _append_partitions(chunk, sub, depth)
        path.unlink()
        result = Duplicates()
        for part in sorted(sub.glob("*.bin")):
            result = result.merge(self._reduce(part, depth + 1))
        return result

    def _single_key(self, path: Path) -> bool:
        keys = set()
        for chunk in self._chunks(path):
            for half in ("hi", "lo"):
                keys.add((half, int(chunk[half].min())))
                keys.add((half, int(chunk[half].max())))
        return len(keys) == 2

    def _identical(self, path: Path) -> Duplicates:
        """Every record has the same key: all but the earliest row are duplicates."""
        smallest = np.empty(0, np.int64)
        rows = 0
        for chunk in self._chunks(path):
            rows += len(chunk)
            smallest = np.sort(np.concatenate([smallest, chunk["ordinal"]]))[: SAMPLE_LIMIT + 1]
        first = int(smallest[0])
        return Duplicates(rows - 1, [(int(o), first) for o in smallest[1:]])


def _append_partitions(records: np.ndarray, directory: Path, depth: int) -> None:
    part = _key_byte(records, depth)
    order = np.argsort(part, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(part, minlength=256))])
    for p in np.flatnonzero(np.diff(bounds)):
        with open(directory / f"{p:02x}.bin", "ab") as handle:
            records[order[bounds[p] : bounds[p + 1]]].tofile(handle)


class LabelSpill:
    """Every row's label (its id, else file and row) in a Parquet file, to name rows found by position."""

    schema = pa.schema([("label", pa.string())])

    def __init__(self, path: Path):
        self.path = path
        self.writer = pq.ParquetWriter(path, self.schema, compression="zstd")

    def write(self, labels: pa.Array) -> None:
        self.writer.write_table(pa.table([labels], schema=self.schema))

    def lookup(self, ordinals: Sequence[int]) -> dict[int, str]:
        self.writer.close()
        wanted = sorted(set(ordinals))
        if not wanted:
            return {}
        parquet = pq.ParquetFile(self.path)
        starts = np.cumsum([0] + [parquet.metadata.row_group(i).num_rows for i in range(parquet.num_row_groups)])
        found = {}
        for group in sorted({int(np.searchsorted(starts, o, side="right")) - 1 for o in wanted}):
            labels = parquet.read_row_group(group).column("label").to_pylist()
            for o in wanted:
                if starts[group] <= o < starts[group + 1]:
                    found[o] = labels[o - starts[group]]
        return found


# -- rule evaluation -----------------------------------------------------------------------------------------
@dataclass
class RuleResult:
    rule: str
    passed: bool
    measured: Any
    bound: str
    detail: str
    sample_ids: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"rule": self.rule, "passed": self.passed, "measured": self.measured, "bound": self.bound,
                "detail": self.detail, "sample_ids": self.sample_ids}


class RowLabels:
    """Names rows of a batch for reports: the id when present, else the file and row (or line) number."""

    def __init__(self, file: InputFile, batch: pa.RecordBatch, rows: np.ndarray, id_column: str):
        self.file, self.rows = file, rows
        self.ids = batch.column(id_column) if id_column in batch.schema.names else None
        self.word = "line" if file.format == "jsonl" else "row"

    def one(self, i: int) -> str:
        if self.ids is not None and self.ids[i].is_valid:
            return str(self.ids[i].as_py())
        return f"{self.file.path} {self.word} {int(self.rows[i])}"

    def all(self) -> pa.Array:
        where = pc.binary_join_element_wise(
            pa.scalar(f"{self.file.path} {self.word} "), pc.cast(pa.array(self.rows), pa.string()), ""
        )
        if self.ids is None:
            return where
        return pc.coalesce(pc.cast(self.ids, pa.string()), where)


@dataclass
class Offenders:
    """How many rows break a rule, and the labels of the first few."""

    count: int = 0
    samples: list[str] = field(default_factory=list)

    def add(self, mask: np.ndarray, labels: RowLabels, note: Callable[[int], str] | None = None) -> None:
        hits = int(np.count_nonzero(mask))
        if hits and len(self.samples) < SAMPLE_LIMIT:
            for i in np.flatnonzero(mask)[: SAMPLE_LIMIT - len(self.samples)]:
                self.samples.append(labels.one(int(i)) + (f" ({note(int(i))})" if note else ""))
        self.count += hits


def _bound_text(low: float | None, high: float | None, unit: str = "") -> str:
    if low is not None and high is not None:
        return f"{low:g}..{high:g}{unit}"
    return f"≥ {low:g}{unit}" if low is not None else f"≤ {high:g}{unit}"


def _share(count: int, total: int) -> float:
    return round(count / total, 6) if total else 0.0


class Validator:
    """Consumes batches once and evaluates every rule at the end."""

    def __init__(self, rules: ValidateRules, columns: Columns, work: Path):
        self.rules, self.columns = rules, columns
        self.required = rules.required()
        self.checks = rules.checks()
        self.shares = rules.language_shares()
        self.rows = 0
        self.schemas: set[tuple] = set()
        self.schema_problems: dict[str, str] = {}  # problem → first file showing it
        self.empty = Offenders()
        self.chars = Offenders()
        self.tokens = Offenders()
        self.count_tokens = TokenCounter(rules.tokenizer).count if rules.tokenizer else None
        self.other_language = Offenders()
        self.language_counts: dict[str, int] = {}
        self.language_missing: str | None = None
        self.check_failures = [Offenders() for _ in self.checks]
        self.check_missing: dict[int, str] = {}
        self.null_ids = Offenders()
        self.id_missing: str | None = None
        self.texts = DuplicateFinder(work / "texts", rules.memory_rows) if rules.max_duplicate_ratio is not None else None
        self.ids = DuplicateFinder(work / "ids", rules.memory_rows) if rules.unique_ids else None
        self.labels = LabelSpill(work / "labels.parquet") if self.texts or self.ids else None

    def add(self, file: InputFile, batch: pa.RecordBatch, rows: np.ndarray) -> None:
        labels = RowLabels(file, batch, rows, self.columns.id)
        ordinals = np.arange(self.rows, self.rows + batch.num_rows, dtype=np.int64)
        self.rows += batch.num_rows
        self._check_schema(file, batch.schema)
        texts = batch.column(self.columns.text)
        if not self.rules.allow_empty_text:
            self.empty.add(blank(texts), labels)
        if self.rules.min_chars is not None or self.rules.max_chars is not None:
            self._bounds(self.chars, char_lengths(texts), self.rules.min_chars, self.rules.max_chars, labels, "chars")
        if self.count_tokens is not None:
            self._bounds(self.tokens, self.count_tokens(texts), self.rules.min_tokens, self.rules.max_tokens,
                         labels, "tokens")
        if self.rules.languages or self.shares:
            self._languages(file, batch, labels)
        for i, check in enumerate(self.checks):
            self._column_check(i, check, file, batch, labels)
        if self.labels is not None:
            self.labels.write(labels.all())
        if self.texts is not None:
            self.texts.add(*hash128(texts), ordinals)
        if self.ids is not None:
            self._ids(file, batch, labels, ordinals)

    def _check_schema(self, file: InputFile, schema: pa.Schema) -> None:
        key = tuple((f.name, str(f.type)) for f in schema)
        if key in self.schemas:
            return
        self.schemas.add(key)
        for name, kind in self.required.items():
            if name not in schema.names:
                problem = f"missing column '{name}'"
            elif kind is not None and not COLUMN_TYPES[kind](schema.field(name).type):
                problem = f"column '{name}' is {schema.field(name).type}, expected {kind}"
            else:
                continue
            self.schema_problems.setdefault(problem, file.path)

    @staticmethod
    def _bounds(offenders: Offenders, lengths: np.ndarray, low: int | None, high: int | None,
                labels: RowLabels, unit: str) -> None:
        outside = np.zeros(len(lengths), dtype=bool)
        if low is not None:
            outside |= lengths < low
        if high is not None:
            outside |= lengths > high
        offenders.add(outside, labels, lambda i: f"{lengths[i]:,} {unit}")

    def _languages(self, file: InputFile, batch: pa.RecordBatch, labels: RowLabels) -> None:
        name = self.rules.language_column
        if name not in batch.schema.names:
            self.language_missing = self.language_missing or file.path
            return
        lang = pc.cast(batch.column(name), pa.string())
        for item in pc.value_counts(lang).to_pylist():
            key = item["values"] if item["values"] is not None else "(null)"
            self.language_counts[key] = self.language_counts.get(key, 0) + item["counts"]
        if self.rules.languages:
            allowed = pc.is_in(lang, value_set=pa.array(self.rules.languages, pa.string()))
            other = pc.invert(pc.fill_null(allowed, False)).to_numpy(zero_copy_only=False)
            self.other_language.add(other, labels, lambda i: f"{name}={lang[i].as_py()}")

    def _column_check(self, index: int, check: ColumnCheck, file: InputFile, batch: pa.RecordBatch,
                      labels: RowLabels) -> None:
        if check.column not in batch.schema.names:
            self.check_missing.setdefault(index, f"no column '{check.column}' in {file.path}")
            values = np.full(batch.num_rows, np.nan)
        else:
            column = batch.column(check.column)
            if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)
                    or pa.types.is_boolean(column.type)):
                raise InputError(file.path, f"--check {check.text}: expected numbers, found {column.type}",
                                 column=check.column)
            values = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
        failing = ~check.passes(values)
        self.check_failures[index].add(failing, labels, lambda i: f"{check.column}={values[i]:g}")

    def _ids(self, file: InputFile, batch: pa.RecordBatch, labels: RowLabels, ordinals: np.ndarray) -> None:
        assert self.ids is not None
        if self.columns.id not in batch.schema.names:
            self.id_missing = self.id_missing or file.path
            return
        ids = batch.column(self.columns.id)
        null = ids.is_null().to_numpy(zero_copy_only=False)
        self.null_ids.add(null, labels, lambda _: "null id")
        if null.any():
            ids, ordinals = ids.filter(pc.invert(ids.is_null())), ordinals[~null]
        if not pa.types.is_string(ids.type) and not pa.types.is_large_string(ids.type):
            ids = pc.cast(ids, pa.string())
        self.ids.add(*hash128(ids), ordinals)

    # -- results ---------------------------------------------------------------------------------------
    def results(self, null_text: int, null_samples: list[str]) -> list[RuleResult]:
        rules, total = self.rules, self.rows + null_text
        out: list[RuleResult] = []
        if rules.min_rows is not None or rules.max_rows is not None:
            ok = (rules.min_rows is None or total >= rules.min_rows) and (rules.max_rows is None or total <= rules.max_rows)
            out.append(RuleResult("rows", ok, total, _bound_text(rules.min_rows, rules.max_rows), f"{total:,} rows"))
        if self.required:
            problems = [f"{p} ({path})" for p, path in self.schema_problems.items()]
            out.append(RuleResult("required_columns", not problems, len(problems), "0 problems",
                                  f"{len(problems)} missing or mistyped column(s)" if problems
                                  else "all present: " + ", ".join(rules.required_columns),
                                  problems[:SAMPLE_LIMIT]))
        if not rules.allow_null_text:
            out.append(self._count_rule("text_not_null", Offenders(null_text, null_samples), total, "null texts"))
        if not rules.allow_empty_text:
            out.append(self._count_rule("text_not_empty", self.empty, total, "empty or whitespace-only texts"))
        if self.ids is not None:
            out.append(self._unique_ids(total))
        if rules.max_duplicate_ratio is not None:
            out.append(self._duplicate_ratio())
        if rules.min_chars is not None or rules.max_chars is not None:
            out.append(self._count_rule("chars", self.chars, total, "texts outside "
                                        + _bound_text(rules.min_chars, rules.max_chars, " chars")))
        if self.count_tokens is not None:
            out.append(self._count_rule("tokens", self.tokens, total, "texts outside "
                                        + _bound_text(rules.min_tokens, rules.max_tokens, " tokens")))
        if rules.languages or self.shares:
            out += self._language_results()
        for check, failures, index in zip(self.checks, self.check_failures, range(len(self.checks)), strict=True):
            share = _share(self.rows - failures.count, self.rows)
            ok = share >= check.min_share and index not in self.check_missing
            detail = self.check_missing.get(index) or (
                f"{share:.2%} of rows have {check.column} {check.op} {check.value:g}; {failures.count:,} do not")
            out.append(RuleResult(check.name, ok, share, f"≥ {check.min_share:g}", detail, failures.samples))
        return out

    @staticmethod
    def _count_rule(name: str, offenders: Offenders, total: int, what: str) -> RuleResult:
        return RuleResult(name, offenders.count == 0, offenders.count, "0",
                          f"{offenders.count:,} of {total:,} rows: {what}", offenders.samples)

    def _named(self, found: Duplicates, what: str) -> list[str]:
        assert self.labels is not None
        names = self.labels.lookup([o for pair in found.samples for o in pair])
        return [f"{names[dup]} ({what} {names[first]})" for dup, first in found.samples]

    def _unique_ids(self, total: int) -> RuleResult:
        assert self.ids is not None
        if self.id_missing:
            return RuleResult("unique_ids", False, None, "0",
                              f"no id column '{self.columns.id}' in {self.id_missing} (see --id-column)")
        found = self.ids.finish()
        count = found.count + self.null_ids.count
        detail = f"{found.count:,} rows repeat an earlier id, {self.null_ids.count:,} have a null id ({total:,} rows)"
        samples = (self._named(found, "id also on") + self.null_ids.samples)[:SAMPLE_LIMIT]
        return RuleResult("unique_ids", count == 0, count, "0", detail, samples)

    def _duplicate_ratio(self) -> RuleResult:
        assert self.texts is not None and self.rules.max_duplicate_ratio is not None
        found = self.texts.finish()
        ratio = _share(found.count, self.rows)
        detail = f"{found.count:,} of {self.rows:,} texts repeat an earlier text exactly"
        return RuleResult("duplicate_ratio", ratio <= self.rules.max_duplicate_ratio, ratio,
                          f"≤ {self.rules.max_duplicate_ratio:g}", detail, self._named(found, "same text as"))

    def _language_results(self) -> list[RuleResult]:
        missing = (f"no column '{self.rules.language_column}' in {self.language_missing} "
                   "(run `curate langid` first, or see --language-column)") if self.language_missing else None
        out = []
        if self.rules.languages:
            share = _share(self.other_language.count, self.rows)
            out.append(RuleResult(
                "languages", missing is None and self.other_language.count == 0, self.other_language.count, "0",
                missing or f"{self.other_language.count:,} rows ({share:.2%}) in a language outside "
                + ",".join(self.rules.languages), self.other_language.samples))
        for lang, minimum in self.shares.items():
            share = _share(self.language_counts.get(lang, 0), self.rows)
            out.append(RuleResult(f"language_share:{lang}", missing is None and share >= minimum, share,
                                  f"≥ {minimum:g}", missing or f"{self.language_counts.get(lang, 0):,} rows "
                                  f"({share:.2%}) have {self.rules.language_column}={lang}"))
        return out


def validate(rules: ValidateRules, inputs: Sequence[str], columns: Columns, batch_size: int,
             skip_bad_rows: bool) -> dict:
    """Evaluate every rule in one streaming pass; the report dict (the --format json output)."""
    started = time.perf_counter()
    bad = NullTextRows(skip_bad_rows, columns.text)
    work = Path(tempfile.mkdtemp(prefix="curate-validate-", dir=rules.tmp_dir))
    try:
        validator = Validator(rules, columns, work)
        for file, batch, rows in scan(inputs, columns, batch_size, bad):
            validator.add(file, batch, rows)
        results = validator.results(bad.null_text, bad.samples)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    failed = [r.rule for r in results if not r.passed]
    return {
        "passed": not failed,
        "rows": validator.rows + bad.null_text,
        "rules": [r.as_dict() for r in results],
        "failed": failed,
        "errors_skipped": len(bad.records),
        "seconds": round(time.perf_counter() - started, 3),
    }


# -- report formats ------------------------------------------------------------------------------------------
def _measured(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return f"{value:,}" if isinstance(value, int) else "-" if value is None else str(value)


def format_text(report: dict) -> str:
    rules = report["rules"]
    width = max([len(r["rule"]) for r in rules] + [4])
    lines = [f"curate validate: {'PASSED' if report['passed'] else 'FAILED'} · {len(rules)} rules, "
             f"{len(report['failed'])} failed · {report['rows']:,} rows · {report['seconds']:.1f}s"]
    for r in rules:
        lines.append(f"{'PASS' if r['passed'] else 'FAIL'}  {r['rule']:<{width}}  measured {_measured(r['measured'])}"
                     f" (bound {r['bound']}) · {r['detail']}")
        if not r["passed"] and r["sample_ids"]:
            lines.append(f"      {'':<{width}}  e.g. " + "; ".join(r["sample_ids"]))
    return "\n".join(lines)


def format_junit(report: dict) -> str:
    """JUnit XML: one test case per rule, so CI systems list each rule as a passing or failing test."""
    rules = report["rules"]
    counts = {"tests": str(len(rules)), "failures": str(len(report["failed"])), "errors": "0",
              "time": f"{report['seconds']:.3f}"}
    root = ET.Element("testsuites", {"name": "curate validate", **counts})
    suite = ET.SubElement(root, "testsuite", {"name": "curate validate", "skipped": "0", **counts,
                                              "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                              "hostname": socket.gethostname()})
    properties = ET.SubElement(suite, "properties")
    ET.SubElement(properties, "property", {"name": "rows", "value": str(report["rows"])})
    for r in rules:
        case = ET.SubElement(suite, "testcase", {"classname": "curate.validate", "name": r["rule"], "time": "0"})
        if not r["passed"]:
            failure = ET.SubElement(case, "failure", {
                "type": "RuleFailed",
                "message": f"measured {_measured(r['measured'])}, bound {r['bound']}: {r['detail']}"})
            failure.text = "\n".join([r["detail"], *(f"offending row: {s}" for s in r["sample_ids"])])
        else:
            ET.SubElement(case, "system-out").text = r["detail"]
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
