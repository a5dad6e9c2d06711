"""Benchmark decontamination: find documents that contain word n-grams of evaluation sets, and annotate, drop
or cut them (GPT-3's appendix C, as NeMo Curator's ``TaskDecontamination`` implements it; docs/decontaminate.md).

Words: the text is split at whitespace (Unicode Z*, tab, newlines); each word is lowercased and loses its
punctuation and symbols (P*, S*); a word left empty is no word. Each word is hashed with XXH64 and each n-gram
as :func:`curate.hashing.ngram_hash` (from word-hash prefixes: O(1) an n-gram), straight from the Arrow buffers.

Benchmark n-grams: every ``--ngram``-gram of a benchmark text; a text of ``--min-ngram`` to ``--ngram`` − 1
words is one n-gram of all its words; a shorter text gives none.

Two passes through the shared runner:

- ``index`` (one unit, so one task) reads the ``--benchmarks`` files once and writes the distinct (n-gram hash,
  source) pairs sorted, as two ``.npy`` arrays, and ``_index.json`` (sources, n-gram lengths) into
  ``OUT.decontaminate-work/index``.
- ``check`` (an array pass over the input units) memory-maps the index and, per batch, finds every
  benchmark n-gram of every document in numba kernels (a bit filter first, then a binary search), adds
  ``contamination_ngrams`` and ``contamination_sources``, and in ``drop`` mode removes contaminated
  documents, in ``cut`` mode cuts ``--remove-chars`` characters around each match (out to the nearest
  ``.``, ``!`` or ``?``), keeps pieces longer than ``--min-piece-chars`` and drops a document left in more
  than ``--max-splits`` pieces (or in none).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numba as nb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.hashing import ngram_hash, ngram_hash_at, ngram_powers, ngram_prefixes, xxh64
from curate.io.errors import InputError, UsageError
from curate.io.inputs import Columns, InputFile, check_apart, iter_batches, resolve_inputs
from curate.io.options import IOOptions
from curate.io.output import TMP_DIR, OutputDir, ShardInfo, UnitRecord, json_text, merge_counters, temp_name
from curate.io.storage import require_local, work_dir_beside
from curate.params import option
from curate.runner import run_map_stage, run_units
from curate.stages.base import MapStage, Partition, Pass, StageOutput, UnitContext, UnitStage
from curate.text import string_buffers
from curate.text.codepoints import SEPARATOR, SPACE, char_class, codepoint_tables, decode_utf8, encode_utf8

MODES = ("annotate", "drop", "cut")
NGRAMS_COLUMN = "contamination_ngrams"
SOURCES_COLUMN = "contamination_sources"
INDEX_HEADER = "_index.json"
INDEX_FORMAT = "curate-decontaminate-index/1"
HASHES_SHARD = "part-00000_ngrams.npy"
SOURCES_SHARD = "part-00000_sources.npy"
_COMPACT_EVERY = 1 << 22  # n-gram hashes gathered before duplicates are dropped while building the index
_PERIOD, _BANG, _QUESTION = 46, 33, 63  # where a cut ends: NeMo Curator's ".!?"
_PIECE_SEPARATOR = b"\n\n"


@dataclass
class DecontaminateParams:
    benchmarks: list[str] = option(
        [], "Benchmark files, comma-separated: Parquet or JSON lines (the --benchmark-column), or .txt with one "
        "text per line; directories and globs of Parquet/JSON lines too. Each file is one source.", required=True)
    benchmark_column: str = option("text", "Text column of Parquet and JSON-lines benchmark files.")
    ngram: int = option(13, "Words per n-gram (GPT-3 and NeMo Curator: 13).")
    min_ngram: int = option(8, "Benchmark texts with fewer words are ignored; shorter than --ngram, a text is one "
                               "n-gram of all its words.")
    mode: str = option("cut", "annotate: keep every document; drop: remove contaminated documents; cut: remove "
                              "the text around each match, as NeMo Curator does.", choices=list(MODES))
    remove_chars: int = option(200, "cut: characters removed on each side of a match (then out to . ! or ?).")
    min_piece_chars: int = option(200, "cut: pieces of this many characters or fewer are dropped.")
    max_splits: int = option(10, "cut: a document left in more pieces than this is removed.")


# -- word n-grams (numba) -----------------------------------------------------------------------------------
@nb.njit(cache=True)
def _words(data, start, end, lower, classes, scratch, hashes, starts, ends, positions):
    """Words of data[start:end]: hash of each normalised word and, with ``positions``, its first byte and the
    byte after it."""
    n = 0
    i = start
    while i < end:
        cp, width = decode_utf8(data, i)
        if char_class(classes, cp) == SPACE:
            i += width
            continue
        first = i
        o = 0
        while i < end:
            cp, width = decode_utf8(data, i)
            kind = char_class(classes, cp)
            if kind == SPACE:
                break
            i += width
            if kind == SEPARATOR:
                continue
            if cp < len(lower):
                cp = lower[cp]
            o = encode_utf8(scratch, o, cp)
        if o:
            hashes[n] = xxh64(scratch, 0, o, np.uint64(0))
            if positions:
                starts[n] = first
                ends[n] = i
            n += 1
    return n


@nb.njit(inline="always", cache=True)
def _room(size):
    """Words a text of ``size`` bytes can hold (a word and a space at least), and scratch for one word."""
    return size // 2 + 2, 2 * size + 8


@nb.njit(cache=True)
def _word_hashes(data, start, end, lower, classes):
    """The hashes of the words of ``data[start:end]``, and how many there are."""
    words, scratch_size = _room(end - start)
    hashes = np.empty(words, np.uint64)
    scratch = np.empty(scratch_size, np.uint8)
    unused = np.empty(0, np.int64)  # no word positions wanted
    return hashes, _words(data, start, end, lower, classes, scratch, hashes, unused, unused, False)


@nb.njit(cache=True)
def _prefixes(data, start, end, lower, classes):
    """The n-gram prefix hashes of ``data[start:end]``'s words (see curate.hashing.ngram_prefixes), and the count."""
    hashes, n = _word_hashes(data, start, end, lower, classes)
    prefix = np.empty(n + 1, np.uint64)
    ngram_prefixes(hashes, n, prefix)
    return prefix, n


@nb.njit(cache=True)
def _benchmark_ngrams(data, offsets, lower, classes, ngram, min_ngram, out, out_lengths, counts):
    """Every n-gram of every benchmark text into ``out`` (with its length); counts[d]: n-grams of text d."""
    o = 0
    for d in range(len(offsets) - 1):
        start, end = offsets[d], offsets[d + 1]
        hashes, n = _word_hashes(data, start, end, lower, classes)
        if n < min_ngram:
            counts[d] = 0
        elif n < ngram:
            out[o] = ngram_hash(hashes, 0, n)
            out_lengths[o] = n
            o += 1
            counts[d] = 1
        else:
            for i in range(n - ngram + 1):
                out[o] = ngram_hash(hashes, i, ngram)
                out_lengths[o] = ngram
                o += 1
            counts[d] = n - ngram + 1
    return o


@nb.njit(inline="always", cache=True)
def _find(index, bits, shift, h):
    """Position of the first index entry equal to ``h``, or -1 (most misses stop at the bit filter)."""
    b = h >> shift
    if not (bits[b >> np.uint64(3)] >> (b & np.uint64(7))) & np.uint64(1):
        return -1
    p = np.searchsorted(index, h)
    if p < len(index) and index[p] == h:
        return p
    return -1


@nb.njit(inline="always", cache=True)
def _ngram_at(index, bits, shift, prefix, powers, n, i, length):
    if i + length > n:
        return -1
    return _find(index, bits, shift, ngram_hash_at(prefix, powers, i, length))


@nb.njit(cache=True)
def _first_match(index, bits, shift, lengths, ngram, prefix, powers, n):
    """(first word, length) of the first benchmark n-gram: by position, and at one position the --ngram-gram
    first, then the shorter lengths in ascending order (NeMo Curator's order); (-1, 0) when none."""
    for i in range(n):
        if _ngram_at(index, bits, shift, prefix, powers, n, i, ngram) >= 0:
            return i, ngram
        for length in lengths:
            if length != ngram and _ngram_at(index, bits, shift, prefix, powers, n, i, length) >= 0:
                return i, length
    return -1, 0


@nb.njit(parallel=True, cache=True)
def _count_matches(data, offsets, lower, classes, index, bits, shift, lengths, powers, ngrams, entries):
    """Per document: positions where a benchmark n-gram starts (every length), and index entries they hit."""
    for d in nb.prange(len(offsets) - 1):
        start, end = offsets[d], offsets[d + 1]
        prefix, n = _prefixes(data, start, end, lower, classes)
        found = 0
        hit = 0
        for i in range(n):
            for length in lengths:
                p = _ngram_at(index, bits, shift, prefix, powers, n, i, length)
                if p >= 0:
                    found += 1
                    h = index[p]
                    while p < len(index) and index[p] == h:
                        hit += 1
                        p += 1
        ngrams[d] = found
        entries[d] = hit


@nb.njit(cache=True)
def _match_sources(data, offsets, docs, lower, classes, index, sources, bits, shift, lengths, powers, first, out):
    """The source of every index entry hit by documents ``docs``, from out[first[k]] on (see _count_matches)."""
    for k in range(len(docs)):
        start, end = offsets[docs[k]], offsets[docs[k] + 1]
        prefix, n = _prefixes(data, start, end, lower, classes)
        o = first[k]
        for i in range(n):
            for length in lengths:
                p = _ngram_at(index, bits, shift, prefix, powers, n, i, length)
                if p >= 0:
                    h = index[p]
                    while p < len(index) and index[p] == h:
                        out[o] = sources[p]
                        o += 1
                        p += 1


@nb.njit(inline="always", cache=True)
def _is_stop(byte):
    return byte in (_PERIOD, _BANG, _QUESTION)


@nb.njit(inline="always", cache=True)
def _chars(data, start, end):
    c = 0
    for i in range(start, end):
        if (data[i] & 0xC0) != 0x80:
            c += 1
    return c


@nb.njit(inline="always", cache=True)
def _back(data, low, p):
    """The start of the character before position p (not below ``low``)."""
    p -= 1
    while p > low and (data[p] & 0xC0) == 0x80:
        p -= 1
    return p


@nb.njit(inline="always", cache=True)
def _forward(data, high, q):
    """The start of the character after position q (at most ``high``)."""
    q += 1
    while q < high and (data[q] & 0xC0) == 0x80:
        q += 1
    return q


@nb.njit(cache=True)
def _cut(data, offsets, docs, lower, classes, index, bits, shift, lengths, powers, ngram, remove, min_chars,
         max_pieces, pieces, counts):
    """NeMo Curator's ``_remove_ngrams`` for documents ``docs``: pieces[k, j] = (start, end) bytes of piece j,
    counts[k] = pieces (stops counting past ``max_pieces``: the document is removed anyway)."""
    for k in range(len(docs)):
        a, end = offsets[docs[k]], offsets[docs[k] + 1]
        words, scratch_size = _room(end - a)
        hashes = np.empty(words, np.uint64)
        starts = np.empty(words, np.int64)
        ends = np.empty(words, np.int64)
        scratch = np.empty(scratch_size, np.uint8)
        prefix = np.empty(words + 1, np.uint64)
        count = 0
        while count <= max_pieces:
            n = _words(data, a, end, lower, classes, scratch, hashes, starts, ends, True)
            ngram_prefixes(hashes, n, prefix)
            i, length = _first_match(index, bits, shift, lengths, ngram, prefix, powers, n)
            if i < 0:  # the rest of the text is free of benchmark n-grams
                pieces[k, count, 0], pieces[k, count, 1] = a, end
                count += 1
                break
            # the piece before: from `remove` characters before the match back to a . ! or ?, which it keeps
            p = starts[i]
            for _ in range(remove):
                if p <= a:
                    break
                p = _back(data, a, p)
            while p > a and not _is_stop(data[p]):
                p = _back(data, a, p)
            if p > a and _chars(data, a, p + 1) > min_chars:
                pieces[k, count, 0], pieces[k, count, 1] = a, p + 1
                count += 1
            # the text after: from `remove` characters after the match on to a . ! or ?, which it drops
            q = ends[i + length - 1]
            for _ in range(remove):
                if q >= end:
                    break
                q = _forward(data, end, q)
            while q < end and not _is_stop(data[q]):
                q = _forward(data, end, q)
            if q + 1 >= end or _chars(data, q + 1, end) <= min_chars:
                break
            a = q + 1
        counts[k] = count


@nb.njit(cache=True)
def _assemble(data, pieces, counts, separator, new_offsets, out):
    """The text of each cut document: its pieces joined by ``separator``."""
    for k in range(len(counts)):
        o = new_offsets[k]
        for j in range(counts[k]):
            if j:
                for s in range(len(separator)):
                    out[o] = separator[s]
                    o += 1
            for i in range(pieces[k, j, 0], pieces[k, j, 1]):
                out[o] = data[i]
                o += 1


# -- benchmarks and the index --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Benchmark:
    """One benchmark source: a file, and the name its matches are reported under."""

    name: str
    file: InputFile

    @property
    def is_text(self) -> bool:
        return self.file.format == "txt"


def find_benchmarks(specs: list[str]) -> list[Benchmark]:
    """Each benchmark file (``.txt`` files as given; Parquet/JSON lines through curate's input resolution),
    named by its file name without extensions (with its folder when two files share a name)."""
    if not specs:
        raise UsageError("--benchmarks: give at least one benchmark file")
    files: dict[str, InputFile] = {}
    for spec in specs:
        if spec.lower().endswith(".txt"):
            path = os.path.realpath(require_local(spec, "--benchmarks (.txt)"))
            try:
                stat = os.stat(path)
            except OSError as exc:
                raise InputError(spec, f"cannot read ({exc.strerror})") from None
            files[path] = InputFile(path, "txt", None, stat.st_size, None, stat.st_mtime_ns)
        else:
            files.update((f.path, f) for f in resolve_inputs([spec]))
    paths = sorted(files)
    stems = [Path(path).name.split(".")[0] for path in paths]
    names = [stem if stems.count(stem) == 1 else f"{Path(path).parent.name}/{stem}"
             for path, stem in zip(paths, stems, strict=True)]
    if len(set(names)) < len(names):
        names = paths
    return [Benchmark(name, files[path]) for name, path in zip(names, paths, strict=True)]


def benchmark_texts(benchmark: Benchmark, column: str, batch_size: int) -> Iterator[pa.Array]:
    """The benchmark's texts, a batch at a time."""
    if not benchmark.is_text:
        for batch in iter_batches([benchmark.file], Columns(column, "id"), batch_size):
            yield batch.column(column)
        return
    try:
        with open(benchmark.file.path, encoding="utf-8") as handle:
            lines: list[str] = []
            for line in handle:
                if line.strip():
                    lines.append(line.rstrip("\r\n"))
                if len(lines) >= batch_size:
                    yield pa.array(lines, pa.string())
                    lines = []
    except UnicodeDecodeError as exc:
        raise InputError(benchmark.file.path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if lines:
        yield pa.array(lines, pa.string())


def benchmark_ngrams(texts: pa.Array, params: DecontaminateParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n-gram hashes, their lengths in words, n-grams per text) of a batch of benchmark texts."""
    data, offsets = string_buffers(texts)
    lower, _, classes = codepoint_tables()
    room = int(np.maximum(np.diff(offsets) // 2 + 2, 0).sum())
    out = np.empty(room, np.uint64)
    lengths = np.empty(room, np.uint8)
    counts = np.empty(len(offsets) - 1, np.int64)
    used = _benchmark_ngrams(data, offsets, lower, classes, params.ngram, params.min_ngram, out, lengths, counts)
    return out[:used], lengths[:used], counts


def _distinct(hashes: np.ndarray, sources: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (hash, source) pairs, sorted by hash then source."""
    order = np.lexsort((sources, hashes))
    hashes, sources = hashes[order], sources[order]
    keep = np.ones(len(hashes), bool)
    keep[1:] = (hashes[1:] != hashes[:-1]) | (sources[1:] != sources[:-1])
    return hashes[keep], sources[keep]


class IndexStage(UnitStage):
    """The index pass: one unit that reads every benchmark and writes the sorted (n-gram, source) arrays."""

    name = "decontaminate index"

    def __init__(self, params: DecontaminateParams, benchmarks: list[Benchmark]):
        super().__init__(params)
        self.benchmarks = benchmarks

    def identity(self) -> dict:
        return {"sources": [b.name for b in self.benchmarks]}

    def run_unit(self, unit: Partition, context: UnitContext) -> tuple[list[ShardInfo], dict]:
        hashes, sources = [np.zeros(0, np.uint64)], [np.zeros(0, np.uint32)]
        gathered = 0
        lengths: dict[str, int] = {}
        per_source: dict = {}
        for number, benchmark in enumerate(self.benchmarks):
            texts = short = 0
            for batch in benchmark_texts(benchmark, self.params.benchmark_column, context.io.batch_size):
                found, found_lengths, counts = benchmark_ngrams(batch, self.params)
                if context.report is not None:
                    context.report(len(batch), batch.nbytes)
                texts += len(batch)
                short += int(np.count_nonzero(counts == 0))
                values, tally = np.unique(found_lengths, return_counts=True)
                merge_counters(lengths, {str(v): int(c) for v, c in zip(values, tally, strict=True)})
                hashes.append(found)
                sources.append(np.full(len(found), number, np.uint32))
                gathered += len(found)
                if gathered > _COMPACT_EVERY:
                    merged = _distinct(np.concatenate(hashes), np.concatenate(sources))
                    hashes, sources, gathered = [merged[0]], [merged[1]], len(merged[0])
            per_source[benchmark.name] = {"texts": texts, "texts_too_short": short}
        index, source = _distinct(np.concatenate(hashes), np.concatenate(sources))
        if not len(index):
            raise UsageError(f"--benchmarks: no benchmark text has {self.params.min_ngram} words or more "
                             "(see --min-ngram): nothing to look for")
        for number, benchmark in enumerate(self.benchmarks):
            per_source[benchmark.name]["ngrams"] = int(np.count_nonzero(source == number))
        shards = [_publish_array(context.out, index, HASHES_SHARD), _publish_array(context.out, source, SOURCES_SHARD)]
        return shards, {"texts": sum(s["texts"] for s in per_source.values()), "ngrams": len(index),
                        "ngram_lengths": lengths, "sources": per_source}

    def finish(self, out: OutputDir, records: list[UnitRecord]) -> dict:
        stats = records[0].stats
        header = {
            "format": INDEX_FORMAT, "ngram": self.params.ngram, "min_ngram": self.params.min_ngram,
            "sources": [b.name for b in self.benchmarks], "entries": stats["ngrams"],
            "lengths": sorted(int(length) for length in stats["ngram_lengths"]),
            "checksums": {shard.name: shard.checksum for shard in records[0].shards},
        }
        out.files.write_text(INDEX_HEADER, json_text(header))
        return {}


def _publish_array(out: OutputDir, values: np.ndarray, name: str) -> ShardInfo:
    local = out.path / TMP_DIR / temp_name(name)
    local.parent.mkdir(exist_ok=True)
    try:
        with open(local, "wb") as handle:
            np.save(handle, values)
        return out.publish(local, len(values), name)
    except BaseException:
        local.unlink(missing_ok=True)
        raise


@dataclass
class Index:
    """The index memory-mapped: sorted n-gram hashes, each entry's source, and a bit filter over the hashes."""

    header: dict
    hashes: np.ndarray
    sources: np.ndarray
    bits: np.ndarray
    shift: np.uint64
    lengths: np.ndarray  # the n-gram lengths present, ascending
    powers: np.ndarray  # NGRAM_MULTIPLIER ** length, for hashing n-grams from word-hash prefixes

    @staticmethod
    def header_of(directory: str | Path) -> dict:
        try:
            return json.loads((Path(directory) / INDEX_HEADER).read_text())
        except FileNotFoundError:
            raise UsageError(f"{directory}: no {INDEX_HEADER}: run the index pass first (--pass index)") from None

    @classmethod
    def load(cls, directory: str | Path) -> Index:
        directory = Path(directory)
        header = cls.header_of(directory)
        hashes = np.asarray(np.load(directory / HASHES_SHARD, mmap_mode="r"))
        sources = np.asarray(np.load(directory / SOURCES_SHARD, mmap_mode="r"))
        # about 16 filter bits per entry (a miss passes with probability ~1/16), 2^20 to 2^30 bits
        width = int(min(30, max(20, np.ceil(np.log2(max(len(hashes), 1) * 16)))))
        shift = np.uint64(64 - width)
        bits = np.zeros(1 << (width - 3), np.uint8)
        top = hashes >> shift
        np.bitwise_or.at(bits, top >> np.uint64(3), (np.uint8(1) << (top & np.uint64(7)).astype(np.uint8)))
        lengths = np.array(header["lengths"], np.int64)
        return cls(header, hashes, sources, bits, shift, lengths, ngram_powers(int(lengths.max())))


# -- the check pass ------------------------------------------------------------------------------------------
class DecontaminateStage(MapStage):
    """Finds benchmark n-grams in each batch; annotates, drops or cuts (see the module docstring)."""

    name = "decontaminate"
    empty_hint = "--benchmarks, --mode and --max-splits"

    def __init__(self, params: DecontaminateParams, index_dir: str | Path):
        super().__init__(params)
        self.index_dir = str(index_dir)
        self.index: Index | None = None

    def identity(self) -> dict:
        header = Index.header_of(self.index_dir)
        return {"index": header["checksums"], "sources": header["sources"]}

    def setup(self) -> None:
        self.index = Index.load(self.index_dir)

    def process(self, batch: pa.RecordBatch, columns: Columns) -> StageOutput:
        if self.index is None:
            self.setup()
        index = self.index
        assert index is not None
        params = self.params
        text = batch.column(columns.text)
        data, offsets = string_buffers(text)
        lower, _, classes = codepoint_tables()
        rows = batch.num_rows
        ngrams = np.zeros(rows, np.int64)
        entries = np.zeros(rows, np.int64)
        _count_matches(data, offsets, lower, classes, index.hashes, index.bits, index.shift, index.lengths,
                       index.powers, ngrams, entries)
        matched = np.flatnonzero(ngrams)
        sources, per_source = self._sources(data, offsets, matched, entries)
        for name in (NGRAMS_COLUMN, SOURCES_COLUMN):
            if name in batch.schema.names:
                batch = batch.drop_columns([name])
        annotated = batch.append_column(NGRAMS_COLUMN, pa.array(ngrams.astype(np.int32))).append_column(
            SOURCES_COLUMN, sources)
        counters: dict = {"contamination": {"documents": len(matched), "ngrams": int(ngrams.sum()),
                                            "sources": per_source}}
        if params.mode == "annotate" or not len(matched):
            return StageOutput(annotated, counters=counters)
        keep = np.ones(rows, bool)
        if params.mode == "drop":
            keep[matched] = False
            counters["removed"] = {"contaminated": len(matched)}
            return self._split(annotated, keep, counters)
        pieces, counts = self._cut(data, offsets, matched)
        too_many, nothing = counts > params.max_splits, counts == 0
        keep[matched[too_many | nothing]] = False
        counters["removed"] = {"contaminated_too_many_splits": int(too_many.sum()),
                               "contaminated_nothing_left": int(nothing.sum())}
        cut = ~(too_many | nothing)
        counters["contamination"]["cut"] = int(cut.sum())
        annotated = self._replace_text(annotated, columns.text, data, matched[cut], pieces[cut], counts[cut])
        return self._split(annotated, keep, counters)

    def _sources(self, data: np.ndarray, offsets: np.ndarray, matched: np.ndarray, entries: np.ndarray
                 ) -> tuple[pa.Array, dict]:
        """The list of benchmark names each document matches, and matched documents per source."""
        index = self.index
        assert index is not None
        rows = len(offsets) - 1
        first = np.zeros(len(matched) + 1, np.int64)
        np.cumsum(entries[matched], out=first[1:])
        hit = np.empty(first[-1], np.uint32)
        lower, _, classes = codepoint_tables()
        _match_sources(data, offsets, matched, lower, classes, index.hashes, index.sources, index.bits, index.shift,
                       index.lengths, index.powers, first, hit)
        names = index.header["sources"]
        doc = np.repeat(matched, np.diff(first)).astype(np.int64)
        pairs = np.unique(doc * len(names) + hit)
        pair_doc, pair_source = pairs // len(names), pairs % len(names)
        list_offsets = np.zeros(rows + 1, np.int32)
        np.cumsum(np.bincount(pair_doc, minlength=rows), out=list_offsets[1:])
        values = pa.array(names, pa.string()).take(pa.array(pair_source))
        per_source = np.bincount(pair_source, minlength=len(names))
        return (pa.ListArray.from_arrays(pa.array(list_offsets), values),
                {name: int(count) for name, count in zip(names, per_source, strict=True) if count})

    def _cut(self, data: np.ndarray, offsets: np.ndarray, matched: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        index, params = self.index, self.params
        assert index is not None
        pieces = np.zeros((len(matched), params.max_splits + 1, 2), np.int64)
        counts = np.zeros(len(matched), np.int64)
        lower, _, classes = codepoint_tables()
        _cut(data, offsets, matched, lower, classes, index.hashes, index.bits, index.shift, index.lengths,
             index.powers, params.ngram, params.remove_chars, params.min_piece_chars, params.max_splits, pieces, counts)
        return pieces, counts

    @staticmethod
    def _replace_text(batch: pa.RecordBatch, column: str, data: np.ndarray, docs: np.ndarray, pieces: np.ndarray,
                      counts: np.ndarray) -> pa.RecordBatch:
        """The batch with the text of ``docs`` replaced by their pieces joined by a blank line."""
        if not len(docs):
            return batch
        separator = np.frombuffer(_PIECE_SEPARATOR, np.uint8)
        used = np.arange(pieces.shape[1]) < counts[:, None]
        sizes = ((pieces[:, :, 1] - pieces[:, :, 0]) * used).sum(axis=1) + len(separator) * np.maximum(counts - 1, 0)
        new_offsets = np.zeros(len(docs) + 1, np.int64)
        np.cumsum(sizes, out=new_offsets[1:])
        out = np.empty(new_offsets[-1], np.uint8)
        _assemble(data, pieces, counts, separator, new_offsets, out)
        texts = pa.LargeStringArray.from_buffers(len(docs), pa.py_buffer(new_offsets), pa.py_buffer(out))
        where = batch.schema.get_field_index(column)
        position = np.full(batch.num_rows, -1, np.int64)
        position[docs] = np.arange(len(docs))
        cut = pa.array(position >= 0)
        new_text = pc.if_else(cut, texts.cast(pa.string()).take(pa.array(np.maximum(position, 0))), batch.column(where))
        return batch.set_column(where, batch.schema.field(where), new_text)

    @staticmethod
    def _split(batch: pa.RecordBatch, keep: np.ndarray, counters: dict) -> StageOutput:
        mask = pa.array(keep)
        return StageOutput(batch.filter(mask), batch.filter(pc.invert(mask)), counters)


# -- entry point ---------------------------------------------------------------------------------------------
def decontaminate_passes(params: DecontaminateParams, io: IOOptions, rejected: str | None = None) -> list[Pass]:
    """index → check, both array passes: the index pass has one unit (task 0 builds the index; another task
    goes on to check its units once the index is there), into ``OUT.decontaminate-work/index``."""
    if params.ngram < 1 or not 1 <= params.min_ngram <= params.ngram:
        raise UsageError(f"--ngram {params.ngram}, --min-ngram {params.min_ngram}: need 1 ≤ --min-ngram ≤ --ngram")
    if params.ngram > 255:
        raise UsageError(f"--ngram {params.ngram}: at most 255 words")
    if min(params.remove_chars, params.min_piece_chars, params.max_splits) < 0:
        raise UsageError("--remove-chars, --min-piece-chars and --max-splits must be ≥ 0")
    if not io.output or io.output == "-":
        raise UsageError("decontaminate needs an output directory (-o DIR), not -")
    index_dir = Path(work_dir_beside(io.output, "decontaminate-work")) / "index"

    def build(task_io: IOOptions) -> dict:
        check_apart(task_io.inputs, resolve_inputs(task_io.inputs), task_io.output)  # before the index is written
        benchmarks = find_benchmarks(params.benchmarks)
        return run_units(IndexStage(params, benchmarks), replace(task_io, output=str(index_dir)), [Partition(0, 1)],
                         [b.file.describe() for b in benchmarks])

    def check(task_io: IOOptions) -> dict:
        return run_map_stage(DecontaminateStage(params, index_dir), task_io, rejected_dir=rejected)

    return [Pass("index", index_dir, True, build), Pass("check", Path(io.output), True, check)]


def decontamination_lines(summary: dict) -> list[str]:
    """What the summary line does not say: contaminated documents per benchmark."""
    found = summary.get("contamination", {})
    if not found:
        return []
    sources = ", ".join(f"{name} {count:,}" for name, count in sorted(found.get("sources", {}).items()))
    cut = f", {found['cut']:,} cut" if found.get("cut") else ""
    return [f"contaminated: {found.get('documents', 0):,} documents, {found.get('ngrams', 0):,} n-gram matches{cut}"
            + (f" ({sources})" if sources else "")]
