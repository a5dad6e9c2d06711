"""Finding inputs, planning work units, and streaming them as Arrow record batches.

Inputs are Parquet files, JSON-lines files (optionally .gz / .zst), WARC files (.warc, .warc.gz: one row per
record, see ``curate.io.warc``), directories (searched recursively for those), globs, and ``-`` for JSON lines on stdin. They are sorted by real path (symlinks and relative paths
resolved), so the plan never depends on listing order or spelling. A Parquet file is cut into units of at most
``max_rows_per_shard`` rows (from its footer, without reading data); a JSON-lines or WARC file is one unit. Unit ``i``
becomes output shard ``part-{i:05d}``. Every unit of a run shares one ``Layout``: the inputs' schemas unified
(from footers and the first rows of JSON lines), so all shards of an output have the same columns and types,
and the text column reaches stages as ``TEXT_TYPE`` whichever string type the file has.
"""

from __future__ import annotations

import glob
import gzip
import io
import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json
import pyarrow.parquet as pq
import zstandard

from curate.io.errors import InputError, UsageError
from curate.io.storage import filesystem, is_remote, open_remote, overlapping, retrying
from curate.io.warc import DEFAULT_MAX_PAYLOAD, WARC_SCHEMA, warc_batches

STDIN = "-"
T = TypeVar("T")
R = TypeVar("R")
_REMOTE_STAT_THREADS = 16
_JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
_COMPRESSIONS = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd"}
_TEXT_TYPES = (pa.string(), pa.large_string(), pa.string_view())
TEXT_TYPE = pa.string()  # what stages see, whichever string type (or dictionary of strings) the input has
_MAX_BLOCK_BYTES = 64 << 20  # a JSON-lines block never holds more than this, however big the batch size


@dataclass(frozen=True)
class InputFile:
    path: str  # absolute path, or "-" for stdin
    format: str  # "parquet" | "jsonl" | "warc"
    compression: str | None  # None | "gzip" | "zstd"
    size: int
    num_rows: int | None  # known for Parquet (footer), unknown for JSON lines
    mtime_ns: int | None = None  # last modification (local files): a rerun notices a rewritten input

    def describe(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Layout:
    """The columns every batch of a run has, whichever input it comes from.

    ``schema`` is the inputs' schemas unified (missing columns become nulls, types promoted safely); None
    when it is not known before reading (JSON lines on stdin). ``keep``/``drop`` come from --columns and
    --drop-columns; the text and id columns are always kept.
    """

    schema: pa.Schema | None = None
    keep: tuple[str, ...] | None = None
    drop: tuple[str, ...] = ()
    max_payload: int = DEFAULT_MAX_PAYLOAD  # WARC: payload bytes of a record kept; the rest is skipped unread


@dataclass(frozen=True)
class Unit:
    """A slice of one input file that one task processes into one output shard (plus overflow shards)."""

    index: int
    file: InputFile
    row_start: int = 0
    row_stop: int | None = None  # None: to the end of the file
    layout: Layout = field(default_factory=Layout, compare=False)

    @property
    def rows(self) -> int | None:
        return None if self.row_stop is None else self.row_stop - self.row_start

    def describe(self) -> dict:
        return {
            "index": self.index,
            "path": self.file.path,
            "row_start": self.row_start,
            "row_stop": self.row_stop,
        }


@dataclass(frozen=True)
class Columns:
    """The column names chosen by --text-column / --id-column."""

    text: str = "text"
    id: str = "id"


class BadRows:
    """Where readers report bad files and rows: raise (``--on-error fail``) or record and go on (``skip``)."""

    def __init__(self, skip: bool):
        self.skip = skip
        self.records: list[dict] = []

    def report(self, error: InputError) -> None:
        if not self.skip:
            raise error
        self.records.append(
            {"path": error.path, "row": error.row, "column": error.column, "error": error.problem}
        )


def _classify(path: str) -> tuple[str, str | None] | None:
    name = path.lower()
    compression = None
    for suffix, kind in _COMPRESSIONS.items():
        if name.endswith(suffix):
            compression, name = kind, name[: -len(suffix)]
            break
    if name.endswith(".parquet") and compression is None:
        return "parquet", None
    if name.endswith(_JSONL_SUFFIXES):
        return "jsonl", compression
    if name.endswith(".warc") and compression in (None, "gzip"):
        return "warc", compression
    return None


def _hidden(relative: Path) -> bool:
    return any(part.startswith(("_", ".")) for part in relative.parts)


def _expand_remote(spec: str) -> dict[str, int]:
    """Objects under a prefix (one paginated listing), matching a glob, or one object: {url: size}."""
    fs, path = filesystem(spec)
    if any(ch in path for ch in "*?["):
        listing = retrying(spec, lambda: fs.glob(path, detail=True))
        if not listing:
            raise InputError(spec, "no object matches this pattern")
        root = None
    else:
        try:
            listing = retrying(spec, lambda: fs.find(path, detail=True))
        except FileNotFoundError:  # no such bucket
            listing = {}
        if not listing:
            raise InputError(spec, "no such object or prefix")
        root = path.rstrip("/")
    found = {}
    for key, info in listing.items():
        if info.get("type") == "directory":
            continue
        if key == path:  # the spec names one object: taken whatever its name says (checked later)
            return {spec: int(info.get("size") or 0)}
        relative = Path(key[len(root) :].lstrip("/")) if root else Path(key).name
        if not _hidden(Path(relative)) and _classify(key) is not None:
            found[fs.unstrip_protocol(key)] = int(info.get("size") or 0)
    if not found:
        raise InputError(spec, "prefix holds no .parquet, .jsonl[.gz|.zst] or .warc[.gz] objects")
    return found


def _expand(spec: str) -> list[str] | dict[str, int]:
    if spec == STDIN:
        return [STDIN]
    if is_remote(spec):
        return _expand_remote(spec)
    if os.path.isdir(spec):
        root = Path(spec)
        found = [
            str(p)
            for p in root.rglob("*")
            if p.is_file() and not _hidden(p.relative_to(root)) and _classify(str(p)) is not None
        ]
        if not found:
            raise InputError(spec, "directory holds no .parquet, .jsonl[.gz|.zst] or .warc[.gz] files")
        return found
    if any(ch in spec for ch in "*?["):
        found = [p for p in glob.glob(spec, recursive=True) if os.path.isfile(p)]
        if not found:
            raise InputError(spec, "no file matches this pattern")
        return found
    if not os.path.exists(spec):
        raise InputError(spec, "no such file or directory")
    return [spec]


def _stat(path: str, size: int | None = None) -> InputFile:
    if path == STDIN:
        return InputFile(STDIN, "jsonl", None, 0, None)
    kind = _classify(path)
    if kind is None:
        raise InputError(
            path, "unknown input format: expected .parquet, .jsonl/.json/.ndjson (optionally .gz or .zst), "
            ".warc or .warc.gz"
        )
    fmt, compression = kind
    mtime_ns = None
    if not is_remote(path):
        path = os.path.realpath(path)  # one spelling per file: symlinks, "..", relative paths resolved
        info = os.stat(path)
        size, mtime_ns = info.st_size, info.st_mtime_ns
    num_rows = None
    if fmt == "parquet":
        num_rows = parquet_file(path, size).metadata.num_rows
    return InputFile(path, fmt, compression, size, num_rows, mtime_ns)


def parquet_file(path: str, size: int | None = None) -> pq.ParquetFile:
    """Open a Parquet file (local or remote), turning a truncated or foreign file into a clear InputError."""
    source: Any = open_remote(path, size) if is_remote(path) else path
    if (source.size if is_remote(path) else os.path.getsize(path)) == 0:
        raise InputError(path, "not a Parquet file (0 bytes)")
    try:
        return pq.ParquetFile(source)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(path, f"not a readable Parquet file, truncated or corrupt ({exc})") from None


def _map_files(function: Callable[[T], R], items: Sequence[T], paths: Sequence[str]) -> list[R]:
    """``function`` over ``items`` in order; many at once when a path is remote (a footer is a round trip)."""
    if not any(is_remote(p) for p in paths):
        return [function(item) for item in items]
    with ThreadPoolExecutor(_REMOTE_STAT_THREADS, thread_name_prefix="curate-footers") as pool:
        return list(pool.map(function, items))


def resolve_inputs(specs: Sequence[str], bad: BadRows | None = None) -> list[InputFile]:
    """Expand INPUT arguments into a sorted, de-duplicated list of files (stdin stays where it is: alone)."""
    if not specs:
        raise UsageError("no INPUT given (a file, directory, glob, or - for JSON lines on stdin)")
    paths: dict[str, int | None] = {}
    for spec in specs:
        found = _expand(spec)
        paths.update(found if isinstance(found, dict) else dict.fromkeys(found))
    if STDIN in paths and len(paths) > 1:
        raise UsageError("- (stdin) cannot be combined with other inputs")

    def stat(path: str) -> InputFile | InputError:
        try:
            return _stat(path, paths[path])
        except InputError as exc:
            if bad is None:
                raise
            return exc

    stated = _map_files(stat, list(paths), list(paths))
    by_path: dict[str, InputFile] = {}
    for item in stated:
        if isinstance(item, InputError):
            bad.report(item)  # type: ignore[union-attr]
        else:
            by_path[item.path] = item  # two spellings of one file are one input
    files = [by_path[path] for path in sorted(by_path)]
    if not files:
        raise InputError(", ".join(specs), "no readable input files")
    return files


def _decoded(kind: pa.DataType) -> pa.DataType:
    """The type of the values: dictionary-encoded columns (polars' categoricals, pandas') are decoded."""
    return kind.value_type if pa.types.is_dictionary(kind) else kind


def check_apart(specs: Sequence[str], files: Sequence[InputFile], output: str) -> None:
    """Refuse an output that is an input, lies inside one, or holds one: a run would read its own shards."""
    if output in ("", STDIN):
        return
    places = [spec for spec in specs if spec != STDIN and not any(c in spec for c in "*?[")]
    for place in [*places, *(f.path for f in files if f.path != STDIN)]:
        if overlapping(output, place):
            raise UsageError(
                f"-o {output} overlaps the input {place}: a run would read its own output; "
                "choose an output outside the inputs"
            )


def check_schema(file: InputFile, schema: pa.Schema, columns: Columns) -> None:
    """The text column must exist and hold strings; everything else passes through untouched."""
    if columns.text not in schema.names:
        raise InputError(
            file.path,
            f"missing text column '{columns.text}' (columns: {', '.join(schema.names)}; see --text-column)",
        )
    text_type = _decoded(schema.field(columns.text).type)
    if text_type == pa.null():
        return  # JSON lines whose first rows all have null text: the null check names the row
    if text_type not in _TEXT_TYPES:
        raise InputError(file.path, f"expected strings, found {text_type}", column=columns.text)


def plan_units(
    files: Sequence[InputFile],
    max_rows_per_shard: int,
    columns: Columns,
    bad: BadRows | None = None,
    keep: Sequence[str] | None = None,
    drop: Sequence[str] = (),
    batch_size: int = 10_000,
    max_payload: int = DEFAULT_MAX_PAYLOAD,
) -> list[Unit]:
    """Cut files into units (Parquet by row count from the footer, JSON lines and WARC one unit per file),
    all with one layout: the files' schemas unified and narrowed to ``keep`` (--columns) minus ``drop``;
    ``max_payload`` bounds what a WARC record's payload keeps."""
    def schema_of(file: InputFile) -> pa.Schema | InputError:
        try:
            schema = parquet_file(file.path, file.size).schema_arrow
            check_schema(file, schema, columns)
        except InputError as exc:
            if bad is None:
                raise
            return exc
        return schema

    parquet = [f for f in files if f.format == "parquet"]
    schemas = dict(zip(map(id, parquet), _map_files(schema_of, parquet, [f.path for f in parquet]), strict=True))
    jsonl = [f for f in files if f.format == "jsonl"] if len(files) > 1 else []  # one file: nothing to unify
    found_schemas = _map_files(lambda f: _jsonl_schema(f, batch_size), jsonl, [f.path for f in jsonl])
    schemas.update(zip(map(id, jsonl), found_schemas, strict=True))
    schemas.update((id(f), WARC_SCHEMA) for f in files if f.format == "warc")
    found = []
    for file in files:
        problem = schemas.get(id(file))
        if isinstance(problem, InputError):
            bad.report(problem)  # type: ignore[union-attr]
        elif file.path == STDIN or file.size > 0:
            found.append(file)
    if not found:
        raise InputError(
            ", ".join(f.path for f in files) or "input", "input is empty: no documents to process"
        )
    if all(f.num_rows == 0 for f in found):  # e.g. a stage that removed every row: its shards are valid input
        more = f" and {len(found) - 1} more" if len(found) > 1 else ""
        print(f"curate: warning: {found[0].path}{more}: no rows to process", file=sys.stderr)
    known = [(f.path, schemas[id(f)]) for f in found if isinstance(schemas.get(id(f)), pa.Schema)]
    layout = replace(_layout(known if len(known) == len(found) else [], columns, keep, drop), max_payload=max_payload)
    units: list[Unit] = []
    for file in found:
        if file.format == "parquet":
            assert file.num_rows is not None
            if file.num_rows == 0:  # an empty shard in, an empty shard (with the stage's columns) out
                units.append(Unit(len(units), file, 0, 0, layout))
            for start in range(0, file.num_rows, max_rows_per_shard):
                stop = min(start + max_rows_per_shard, file.num_rows)
                units.append(Unit(len(units), file, start, stop, layout))
        else:
            units.append(Unit(len(units), file, layout=layout))
    return units


def _jsonl_schema(file: InputFile, batch_size: int) -> pa.Schema | None:
    """The columns a JSON-lines file's first rows give it (None when they do not parse: reading says why)."""
    parser = _JsonlBlockParser(file, BadRows(skip=True))
    try:
        for lines, numbers in _jsonl_blocks(file, batch_size):
            parser.parse(lines, numbers)
            break
    except InputError:
        return None
    return parser.schema


def _normalised(schema: pa.Schema, columns: Columns) -> pa.Schema:
    """Dictionaries decoded, the text column as TEXT_TYPE, no metadata: what schemas are unified on."""
    fields = [
        pa.field(f.name, TEXT_TYPE if f.name == columns.text else _decoded(f.type), f.nullable) for f in schema
    ]
    return pa.schema(fields)


def _layout(
    schemas: list[tuple[str, pa.Schema]], columns: Columns, keep: Sequence[str] | None, drop: Sequence[str]
) -> Layout:
    """Unify the inputs' schemas (missing columns become nulls, int32→int64, int→float, string→large_string);
    a column whose types cannot be reconciled is a clear error naming both files."""
    if columns.text in drop:
        raise UsageError(f"--drop-columns: cannot drop the text column '{columns.text}'")
    selection = Layout(None, tuple(keep) if keep else None, tuple(drop))
    if not schemas:
        return selection
    merged: pa.Schema | None = None
    origin: dict[str, str] = {}
    for path, schema in schemas:
        schema = _normalised(schema, columns)
        merged = schema if merged is None else _merge(merged, schema, path, origin)
        for name in schema.names:
            origin.setdefault(name, path)
    assert merged is not None
    if keep:
        missing = [name for name in keep if name not in merged.names]
        if missing:
            raise UsageError(f"--columns: no input has column(s) {', '.join(missing)} (columns: {', '.join(merged.names)})")
    wanted = [
        name for name in merged.names
        if (not keep or name in keep or name in (columns.text, columns.id)) and name not in drop
    ]
    return replace(selection, schema=pa.schema([merged.field(name) for name in wanted]))


def _merge(merged: pa.Schema, schema: pa.Schema, path: str, origin: dict[str, str]) -> pa.Schema:
    try:
        return pa.unify_schemas([merged, schema], promote_options="permissive")
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        for new in schema:
            if new.name not in merged.names:
                continue
            old = merged.field(new.name)
            try:
                pa.unify_schemas([pa.schema([old]), pa.schema([new])], promote_options="permissive")
            except (pa.ArrowTypeError, pa.ArrowInvalid):
                raise InputError(
                    path,
                    f"type {new.type} does not fit type {old.type} of the same column in {origin[new.name]}; "
                    "convert one of them, or leave the column out (--drop-columns)",
                    column=new.name,
                ) from None
        raise


def conform(batch: pa.RecordBatch, layout: Layout, columns: Columns, path: str) -> pa.RecordBatch:
    """A batch in the run's layout: columns in the unified order and types (nulls where an input lacks one),
    the text column as TEXT_TYPE, and only the selected columns."""
    if layout.schema is None:
        names = [
            name for name in batch.schema.names
            if (layout.keep is None or name in layout.keep or name in (columns.text, columns.id))
            and name not in layout.drop
        ]
        target = pa.schema([
            pa.field(n, TEXT_TYPE) if n == columns.text else batch.schema.field(n) for n in names
        ])
    else:
        target = layout.schema
    if batch.schema.equals(target):
        return batch
    arrays = []
    for wanted in target:
        if wanted.name not in batch.schema.names:
            arrays.append(pa.nulls(batch.num_rows, wanted.type))
            continue
        column = batch.column(wanted.name)
        try:
            arrays.append(column if column.type == wanted.type else column.cast(wanted.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise InputError(path, f"cannot convert {column.type} to {wanted.type} ({exc})", column=wanted.name) from None
    return pa.RecordBatch.from_arrays(arrays, schema=target)


def _parquet_batches(unit: Unit, batch_size: int) -> Iterator[tuple[pa.RecordBatch, np.ndarray]]:
    pf = parquet_file(unit.file.path, unit.file.size)
    stop = unit.row_stop if unit.row_stop is not None else pf.metadata.num_rows
    groups, first_row, offset = [], None, 0
    for i in range(pf.metadata.num_row_groups):
        n = pf.metadata.row_group(i).num_rows
        if offset < stop and offset + n > unit.row_start:
            groups.append(i)
            first_row = offset if first_row is None else first_row
        offset += n
    if not groups:
        if unit.rows == 0:
            yield pa.RecordBatch.from_pylist([], schema=pf.schema_arrow), np.zeros(0, np.int64)
        return
    row = first_row
    try:
        for batch in pf.iter_batches(batch_size=batch_size, row_groups=groups, use_threads=False):
            lo, hi = max(unit.row_start - row, 0), min(stop - row, batch.num_rows)
            if hi > lo:
                part = batch if (lo, hi) == (0, batch.num_rows) else batch.slice(lo, hi - lo)
                yield part, np.arange(row + lo, row + hi, dtype=np.int64)
            row += batch.num_rows
            if row >= stop:
                return
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(unit.file.path, f"cannot read Parquet data ({exc})", row=row) from None


def open_binary(file: InputFile) -> BinaryIO:
    """A decompressed binary stream for a JSON-lines input (compression from the name, or sniffed on stdin)."""
    if file.path == STDIN:
        raw: BinaryIO = sys.stdin.buffer
        head = raw.peek(4)[:4] if hasattr(raw, "peek") else b""
        compression = "zstd" if head == b"\x28\xb5\x2f\xfd" else "gzip" if head[:2] == b"\x1f\x8b" else None
    elif is_remote(file.path):
        raw = open_remote(file.path, file.size)  # type: ignore[assignment]
        compression = file.compression
    else:
        raw = open(file.path, "rb")  # noqa: SIM115 - closed by the caller through the returned stream
        compression = file.compression
    if compression == "gzip":
        return gzip.GzipFile(fileobj=raw)  # type: ignore[return-value]
    if compression == "zstd":
        return io.BufferedReader(_ZstdFrames(raw))
    return raw


class _ZstdFrames(io.RawIOBase):
    """Decompressed zstd frames, one after another; a stream that ends inside a frame raises EOFError.

    zstandard's stream reader returns end-of-file for a truncated frame, which would drop data silently.
    """

    def __init__(self, raw: BinaryIO):
        self.raw = raw
        self.frame = zstandard.ZstdDecompressor().decompressobj()
        self.pending = b""
        self.offset = 0  # bytes of ``pending`` already handed out
        self.started = False  # bytes of the current frame were fed

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while self.offset == len(self.pending):
            chunk = self.raw.read(1 << 20)
            if not chunk:
                if self.started and not self.frame.eof:
                    raise EOFError("zstd stream ended inside a frame")
                return 0
            while chunk:
                if self.frame.eof:
                    self.frame = zstandard.ZstdDecompressor().decompressobj()
                self.started = True
                self.pending, self.offset = self.pending[self.offset :] + self.frame.decompress(chunk), 0
                chunk = self.frame.unused_data if self.frame.eof else b""
        size = min(len(buffer), len(self.pending) - self.offset)
        buffer[:size] = self.pending[self.offset : self.offset + size]
        self.offset += size
        return size

    def close(self) -> None:
        self.raw.close()
        super().close()


def _diagnose_line(line: bytes) -> str | None:
    """Why one JSON line is unusable, or None when it parses on its own."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"invalid UTF-8 at byte {exc.start}"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"invalid JSON ({exc.msg} at column {exc.colno})"
    if not isinstance(value, dict):
        return f"expected a JSON object, got {type(value).__name__}"
    return None


class _JsonlBlockParser:
    """Parses blocks of JSON lines with pyarrow, the first block fixing the file's schema.

    pyarrow's JSON reader accepts invalid UTF-8 and reports errors per block, so a block that fails (or does
    not decode) is re-checked line by line to name the exact line. Columns typed null in the first block
    (every value null there) are read as strings.
    """

    def __init__(self, file: InputFile, bad: BadRows):
        self.file, self.bad = file, bad
        self.schema: pa.Schema | None = None

    def _parse(self, data: bytes, schema: pa.Schema | None = None) -> pa.Table:
        options = pa_json.ParseOptions(explicit_schema=schema or self.schema, unexpected_field_behavior="infer")
        read = pa_json.ReadOptions(block_size=len(data) + 1, use_threads=False)
        return pa_json.read_json(io.BytesIO(data), read_options=read, parse_options=options)

    def parse(self, lines: list[bytes], line_numbers: list[int]) -> tuple[pa.Table, list[int]]:
        """Table of the block's good lines and their line numbers."""
        data = b"".join(lines)
        try:
            data.decode("utf-8")
            table = self._parse(data)
        except (UnicodeDecodeError, pa.ArrowInvalid):
            table, line_numbers = self._parse_line_by_line(lines, line_numbers)
        if self.schema is None and table.num_columns:
            fields = [pa.field(f.name, pa.string()) if f.type == pa.null() else f for f in table.schema]
            self.schema = pa.schema(fields)
            table = table.cast(self.schema)
        extra = [
            name for name in table.column_names if self.schema is not None and name not in self.schema.names
        ]
        if extra:
            problem = (
                f"field(s) {', '.join(extra)} first appear after the first rows, which fix a JSON-lines file's "
                "columns; put every field in the first rows or convert the file to Parquet"
            )
            self.bad.report(InputError(self.file.path, problem, row=line_numbers[0], row_label="line"))
            table = table.drop_columns(extra)
        return table, line_numbers

    def _parse_line_by_line(self, lines: list[bytes], line_numbers: list[int]) -> tuple[pa.Table, list[int]]:
        """The block's lines one at a time, to name each bad line. In the first block, which fixes the file's
        columns, a line must also agree with the lines before it (int then float is promoted; int then
        string is an error naming the line and column)."""
        good, good_numbers = [], []
        schema = self.schema
        for line, number in zip(lines, line_numbers, strict=True):
            problem, column = _diagnose_line(line), None
            if problem is None:
                try:
                    parsed = self._parse(line)
                except pa.ArrowInvalid as exc:
                    problem, column = _type_change(exc)
                else:
                    if self.schema is None:
                        schema, problem, column = _agree(schema, parsed.schema)
            if problem is None:
                good.append(line)
                good_numbers.append(number)
            else:
                self.bad.report(InputError(self.file.path, problem, row=number, column=column, row_label="line"))
        if not good:
            return (pa.table({}) if self.schema is None else self.schema.empty_table()), []
        return self._parse(b"".join(good), schema), good_numbers


def _type_change(error: pa.ArrowInvalid) -> tuple[str, str | None]:
    """pyarrow's "Column(/x) changed from number to string" as (problem, column)."""
    found = re.search(r"Column\(/([^)]*)\) changed from (\w+) to (\w+)", str(error))
    if found is None:
        return f"does not match the columns of the first rows ({error})", None
    column, old, new = found.groups()
    return f"{new} here, {old} in the first rows (they fix a JSON-lines file's columns)", column


def _agree(schema: pa.Schema | None, line: pa.Schema) -> tuple[pa.Schema | None, str | None, str | None]:
    """(schema so far, problem, column): a line's columns merged into those of the lines before it."""
    if schema is None:
        return line, None, None
    try:
        return pa.unify_schemas([schema, line], promote_options="permissive"), None, None
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        for field in line:
            if field.name in schema.names:
                old = schema.field(field.name).type
                try:
                    pa.unify_schemas([pa.schema([schema.field(field.name)]), pa.schema([field])], promote_options="permissive")
                except (pa.ArrowTypeError, pa.ArrowInvalid):
                    problem = f"{field.type} here, {old} in the lines before (the first rows fix a JSON-lines file's columns)"
                    return schema, problem, field.name
        raise


def _jsonl_blocks(file: InputFile, batch_size: int) -> Iterator[tuple[list[bytes], list[int]]]:
    """Blocks of non-empty lines (with their line numbers) of at most ``batch_size`` lines or 64 MiB."""
    block: list[bytes] = []
    numbers: list[int] = []
    block_bytes = 0
    line_no = 0
    with open_binary(file) as stream:
        lines = enumerate(stream, start=1)
        while True:
            try:
                line_no, line = next(lines)
            except StopIteration:
                break
            except (EOFError, OSError, zstandard.ZstdError) as exc:
                if block:
                    yield block, numbers
                kind = file.compression or "compressed"
                raise InputError(
                    file.path, f"truncated or corrupt {kind} data after line {line_no} ({exc or type(exc).__name__})"
                ) from None
            if not line.strip():
                continue
            block.append(line if line.endswith(b"\n") else line + b"\n")
            numbers.append(line_no)
            block_bytes += len(line)
            if len(block) >= batch_size or block_bytes >= _MAX_BLOCK_BYTES:
                yield block, numbers
                block, numbers, block_bytes = [], [], 0
    if block:
        yield block, numbers


def _jsonl_batches(unit: Unit, batch_size: int, bad: BadRows) -> Iterator[tuple[pa.RecordBatch, np.ndarray]]:
    parser = _JsonlBlockParser(unit.file, bad)
    try:
        for lines, numbers in _jsonl_blocks(unit.file, batch_size):
            yield from _table_batches(*parser.parse(lines, numbers))
    except InputError as error:  # a truncated file: with --on-error skip, the lines before it are kept
        bad.report(error)


def _table_batches(table: pa.Table, line_numbers: list[int]) -> Iterator[tuple[pa.RecordBatch, np.ndarray]]:
    if table.num_rows:
        yield table.combine_chunks().to_batches()[0], np.asarray(line_numbers, dtype=np.int64)


def read_unit(
    unit: Unit, columns: Columns, batch_size: int, bad: BadRows
) -> Iterator[tuple[pa.RecordBatch, np.ndarray]]:
    """Stream a unit as (batch, row number of each row), with the text column checked and as TEXT_TYPE,
    in the run's layout (see ``conform``).

    Rows whose text is null are reported (and dropped when skipping). Row numbers are 0-based rows for
    Parquet, 1-based line numbers for JSON lines and 0-based record numbers for WARC, as error messages say.
    """
    if unit.file.format == "parquet":
        batches = _parquet_batches(unit, batch_size)
    elif unit.file.format == "warc":
        raw = open_remote(unit.file.path, unit.file.size) if is_remote(unit.file.path) else open(unit.file.path, "rb")  # noqa: SIM115 - closed by the reader
        batches = warc_batches(unit.file.path, raw, unit.file.compression == "gzip", batch_size,
                               unit.layout.max_payload, bad.report)
    else:
        batches = _jsonl_batches(unit, batch_size, bad)
    schema_checked = False
    for batch, rows in batches:
        if not schema_checked:
            check_schema(unit.file, batch.schema, columns)
            schema_checked = True
        text = batch.column(columns.text)
        if text.type == pa.null() or text.null_count:
            batch, rows = _drop_null_text(unit, batch, rows, columns, bad)
        if batch.num_rows or unit.rows == 0:
            yield conform(batch, unit.layout, columns, unit.file.path), rows


def _drop_null_text(
    unit: Unit, batch: pa.RecordBatch, rows: np.ndarray, columns: Columns, bad: BadRows
) -> tuple[pa.RecordBatch, np.ndarray]:
    is_null = pc.is_null(batch.column(columns.text))
    label = "line" if unit.file.format == "jsonl" else "row"
    null_mask = is_null.to_numpy(zero_copy_only=False)
    for row in rows[null_mask]:
        problem = "expected a string, found null or a missing value"
        bad.report(InputError(unit.file.path, problem, row=int(row), column=columns.text, row_label=label))
    return batch.filter(pc.invert(is_null)), rows[~null_mask]


def iter_batches(
    specs: Sequence[str] | Sequence[InputFile],
    columns: Columns,
    batch_size: int = 10_000,
    max_rows_per_shard: int = 1 << 62,
    bad: BadRows | None = None,
) -> Iterator[pa.RecordBatch]:
    """Every input row in plan order, for global passes (calibration, statistics, clustering)."""
    bad = bad or BadRows(skip=False)
    files = [s for s in specs if isinstance(s, InputFile)] or resolve_inputs(specs, bad)  # type: ignore[arg-type]
    for unit in plan_units(files, max_rows_per_shard, columns, bad):
        for batch, _ in read_unit(unit, columns, batch_size, bad):
            yield batch
