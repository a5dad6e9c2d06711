"""URL filtering as datatrove's ``URLFilter`` does it, on user-supplied block and allow lists.

A document is removed, in this order of reasons, when

- ``blocked_domain``: its host or any parent domain of it (``a.b.example.com`` → ``b.example.com``,
  ``example.com``, ``com``) is on a block list;
- ``blocked_url``: the URL, or a prefix of it ending at a path segment, is on a block list (scheme and a
  leading ``www.`` are ignored on both sides, as squidGuard does for UT1's ``urls`` files);
- ``banned_word``: a word of ``--banned-words`` is one of the URL's words (maximal runs of ASCII letters
  and digits, as datatrove splits them: case is kept, so a list word, lowercased like datatrove's, matches
  only lowercase occurrences);
- ``soft_banned_words``: at least ``--soft-threshold`` distinct words of ``--soft-banned-words`` are;
- ``banned_subword``: an entry of ``--banned-subwords`` occurs anywhere in the URL with everything but
  ASCII letters and digits removed and lowercased (datatrove's ``normalize``).

A URL whose host (or a parent domain) or URL prefix is on an allow list is always kept. A document whose
URL is null or empty is kept and counted as ``no_url``. Hosts are lowercased and lose their port, user
info and trailing dot. Datatrove matches only the registered domain (from the public suffix list) and the
full host, case-sensitively; every decision it takes is taken here too, and the differences are that
intermediate domains on a list (``b.example.com`` for ``a.b.example.com``), IP addresses and upper-case
hosts also match here. Domain and URL lists are sets of 128-bit keys (two XXH64 hashes); every host suffix
and URL prefix of a batch is hashed in place (numba) and looked up at once with a binary search. Word
lists are matched with polars' Aho–Corasick (``contains_any``, ``extract_many``) on the URL's words.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numba as nb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from curate.hashing import xxh64
from curate.io.errors import InputError, UsageError
from curate.io.inputs import Columns
from curate.io.output import file_checksum
from curate.params import option
from curate.stages.base import MapStage, StageOutput
from curate.text import string_buffers

REASONS = ("blocked_domain", "blocked_url", "banned_word", "soft_banned_words", "banned_subword")
REASON_COLUMN = "url_blocked_reason"
_SEEDS = (0x5EED_0F_0A11, 0x0DD_5EED_2)
_SCHEME = r"^[a-zA-Z][a-zA-Z0-9+.\-]*://"
_HOSTS_ADDRESSES = r"^(?:0\.0\.0\.0|127\.0\.0\.1|255\.255\.255\.255|::1?|fe80::1%lo0|ff0\d::\d+)\s+"
_NON_WORD = r"[^a-zA-Z0-9]+"
_LINES_PER_SLICE = 500_000  # list lines parsed at once (bounds the memory of parsing a large list)


@dataclass
class UrlFilterParams:
    block: list[str] = option([], "Block lists (comma-separated files): UT1 domains/urls files, hosts files, "
                              "one domain or URL a line, # comments.")
    allow: list[str] = option([], "Allow lists (comma-separated files, same formats): always kept.")
    banned_words: str | None = option(None, "File of words: a URL with one of them as a whole word is removed.")
    soft_banned_words: str | None = option(None, "File of words: a URL with --soft-threshold of them is removed.")
    soft_threshold: int = option(2, "Distinct soft-banned words that remove a URL (datatrove's default: 2).")
    banned_subwords: str | None = option(None, "File of strings removed when found anywhere in the URL with "
                                         "non-alphanumerics removed and lowercased.")
    url_column: str = option("url", "Column holding the URL.")
    mode: str = option("filter", "filter: drop blocked documents. annotate: keep all, add url_blocked_reason.",
                       choices=["filter", "annotate"])


def read_lines(path: str, flag: str) -> pl.Series:
    """A list file's lines (``.gz`` is decompressed; bytes that are not UTF-8 are replaced)."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"{flag} {path}: cannot read ({exc.strerror})") from None
    if path.endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise UsageError(f"{flag} {path}: not a readable gzip file ({exc})") from None
    text = pa.LargeStringArray.from_buffers(1, pa.py_buffer(np.array([0, len(raw)], np.int64)), pa.py_buffer(raw))
    try:
        text.validate(full=True)
    except pa.ArrowInvalid:  # not UTF-8: decoded with replacement characters
        text = pa.array([raw.decode("utf-8", errors="replace")], pa.large_string())
    return pl.Series(pc.split_pattern(text, "\n").flatten())


def parse_entries(lines: pl.Series) -> tuple[pl.Series, pl.Series]:
    """(domains, URL prefixes) of a block or allow list, normalised as URLs are.

    ``#`` starts a comment; a hosts-file line (``0.0.0.0 ads.example.com other.example.com``) gives its
    names, less those without a dot (``localhost``); an entry with a ``/`` after its scheme is a URL.
    """
    lines = lines.str.strip_chars()
    commented = lines.str.contains("#", literal=True)
    if commented.any():
        lines = lines.scatter(commented.arg_true(), lines.filter(commented).str.replace(r"#.*$", "").str.strip_chars())
    is_hosts = lines.str.contains(_HOSTS_ADDRESSES)
    names = (lines.filter(is_hosts).str.replace(_HOSTS_ADDRESSES, "").str.split(" ").explode()
             .str.strip_chars())
    names = names.filter(names.str.contains(".", literal=True))
    entries = pl.concat([lines.filter(~is_hosts), names])
    entries = entries.filter(entries.str.len_bytes() > 0)
    if entries.str.contains("://", literal=True).any():
        entries = entries.str.replace(_SCHEME, "")
    is_url = entries.str.contains("/", literal=True)
    domains = normalize_host(entries.filter(~is_url).str.strip_prefix("*.").str.strip_prefix("."))
    urls = url_key(*split_url(entries.filter(is_url)))
    return domains.filter(domains.str.len_bytes() > 0), urls.filter(urls.str.len_bytes() > 0)


def normalize_host(hosts: pl.Series) -> pl.Series:
    return hosts.str.to_lowercase().str.strip_chars_end(".")


def split_url(urls: pl.Series) -> tuple[pl.Series, pl.Series]:
    """(host, rest) of each URL, with or without a scheme: the host lowercased without user info, port or
    trailing dot; the rest is the path, query and fragment."""
    parts = urls.str.replace(_SCHEME, "").str.extract_groups(r"^(?:[^@/?#]*@)?([^:/?#]*)(?::[0-9]*)?(.*)$")
    return normalize_host(parts.struct.field("1").fill_null("")), parts.struct.field("2").fill_null("")


def url_key(host: pl.Series, rest: pl.Series) -> pl.Series:
    """What URL lists are matched on (from :func:`split_url`'s parts): host without ``www.``, then the path,
    without the fragment and trailing slashes."""
    return (host.str.strip_prefix("www.") + rest.str.replace(r"#.*$", "")).str.strip_chars_end("/")


@nb.njit(parallel=True, cache=True)
def _hash_spans(data, starts, ends, seed, out):
    for i in nb.prange(len(starts)):
        out[i] = xxh64(data, starts[i], ends[i], seed)


def _span_keys(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two independent XXH64 hashes of each byte span: a 128-bit key (no collision in practice)."""
    keys = []
    for seed in _SEEDS:
        out = np.empty(len(starts), dtype=np.uint64)
        _hash_spans(data, starts.astype(np.int64), ends.astype(np.int64), np.uint64(seed), out)
        keys.append(out)
    return keys[0], keys[1]


def string_keys(values: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    data, offsets = string_buffers(values.to_arrow())
    return _span_keys(data, offsets[:-1], offsets[1:])


class StringSet:
    """A large set of strings (millions of domains) for vectorised membership of byte spans: the sorted
    128-bit keys of its strings (two XXH64 hashes), looked up with a binary search."""

    def __init__(self, keys: Iterable[tuple[np.ndarray, np.ndarray]]):
        keys = list(keys)
        first = np.concatenate([k[0] for k in keys] or [np.zeros(0, np.uint64)])
        second = np.concatenate([k[1] for k in keys] or [np.zeros(0, np.uint64)])
        order = np.argsort(first)
        first, second = first[order], second[order]
        distinct = np.ones(len(first), dtype=bool)
        distinct[1:] = (first[1:] != first[:-1]) | (second[1:] != second[:-1])  # repeated entries
        self.first, self.second = first[distinct], second[distinct]
        runs = np.flatnonzero(np.r_[True, self.first[1:] != self.first[:-1], True])
        self.repeats = int(np.diff(runs).max()) if len(self.first) else 0  # strings sharing a first hash

    def __len__(self) -> int:
        return len(self.first)

    def contains(self, data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """Whether each span ``data[starts[i]:ends[i]]`` is in the set."""
        found = np.zeros(len(starts), dtype=bool)
        if not len(self) or not len(starts):
            return found
        first, second = _span_keys(data, starts, ends)
        where = np.searchsorted(self.first, first)
        for offset in range(self.repeats):  # a first hash shared by several strings: check each one's second
            at = np.minimum(where + offset, len(self.first) - 1)
            found |= (self.first[at] == first) & (self.second[at] == second)
        return found


def _any_per_row(offsets: np.ndarray, positions: np.ndarray, hits: np.ndarray) -> np.ndarray:
    """Rows (by their byte ``offsets``) with a hit among spans starting or ending at ``positions``."""
    rows = np.searchsorted(offsets, positions[hits], side="right") - 1
    return np.bincount(rows, minlength=len(offsets) - 1) > 0


@dataclass
class UrlList:
    """The domains and URL prefixes of some list files."""

    domains: StringSet
    urls: StringSet

    @classmethod
    def load(cls, paths: list[str], flag: str) -> UrlList:
        """The lists of ``paths``, parsed a slice of lines at a time: only the entries' keys are kept."""
        domains, urls = [], []
        for path in paths:
            lines = read_lines(path, flag)
            for start in range(0, len(lines), _LINES_PER_SLICE):
                found_domains, found_urls = parse_entries(lines.slice(start, _LINES_PER_SLICE))
                domains.append(string_keys(found_domains))
                urls.append(string_keys(found_urls))
        return cls(StringSet(domains), StringSet(urls))

    def domain_hits(self, hosts: pl.Series) -> np.ndarray:
        """Whether the host or one of its parent domains is listed: every suffix after a dot is looked up."""
        if not len(self.domains):
            return np.zeros(len(hosts), dtype=bool)
        data, offsets = string_buffers(hosts.to_arrow())
        ends = offsets[1:]
        hit = self.domains.contains(data, offsets[:-1], ends) & (ends > offsets[:-1])
        dots = np.flatnonzero(data[offsets[0]:offsets[-1]] == ord(".")) + offsets[0]
        row_ends = ends[np.searchsorted(offsets, dots, side="right") - 1]
        return hit | _any_per_row(offsets, dots, self.domains.contains(data, dots + 1, row_ends))

    def url_hits(self, keys: pl.Series) -> np.ndarray:
        """Whether the URL key or a prefix of it ending before a ``/`` or ``?`` is listed."""
        if not len(self.urls):
            return np.zeros(len(keys), dtype=bool)
        data, offsets = string_buffers(keys.to_arrow())
        hit = self.urls.contains(data, offsets[:-1], offsets[1:]) & (offsets[1:] > offsets[:-1])
        body = data[offsets[0]:offsets[-1]]
        cuts = np.flatnonzero((body == ord("/")) | (body == ord("?"))) + offsets[0]
        row_starts = offsets[np.searchsorted(offsets, cuts, side="right") - 1]
        return hit | _any_per_row(offsets, cuts, self.urls.contains(data, row_starts, cuts))


def word_list(path: str | None, flag: str) -> list[str]:
    """A word list as datatrove reads it: ``#`` lines skipped, each entry lowercased with everything but
    ASCII letters and digits removed (blank entries, which would match nothing meaningful, are dropped)."""
    if path is None:
        return []
    lines = read_lines(path, flag).str.strip_chars()
    words = lines.filter(~lines.str.starts_with("#")).str.replace_all(_NON_WORD, "").str.to_lowercase()
    return words.filter(words.str.len_chars() > 0).unique().sort().to_list()


class UrlFilterStage(MapStage):
    """Removes (or annotates) documents whose URL a block list, a banned word or subword matches."""

    name = "urlfilter"
    empty_hint = "--block, --banned-words and --soft-threshold"

    def __init__(self, params: UrlFilterParams):
        super().__init__(params)
        if params.soft_threshold < 1:
            raise UsageError("--soft-threshold must be ≥ 1")
        self.files = {"block": params.block, "allow": params.allow,
                      "banned_words": [params.banned_words] if params.banned_words else [],
                      "soft_banned_words": [params.soft_banned_words] if params.soft_banned_words else [],
                      "banned_subwords": [params.banned_subwords] if params.banned_subwords else []}
        if not any(self.files[k] for k in ("block", "banned_words", "soft_banned_words", "banned_subwords")):
            raise UsageError("nothing to filter on: give --block, --banned-words, --soft-banned-words or "
                             "--banned-subwords")
        for key, paths in self.files.items():
            for path in paths:
                if not Path(path).is_file():
                    raise UsageError(f"--{key.replace('_', '-')} {path}: no such file")

    def identity(self) -> dict:
        return {"list_checksums": {key: [file_checksum(p) for p in paths] for key, paths in self.files.items()}}

    def setup(self) -> None:
        if hasattr(self, "block"):
            return
        p = self.params
        self.block = UrlList.load(p.block, "--block")
        self.allow = UrlList.load(p.allow, "--allow")
        self.banned = word_list(p.banned_words, "--banned-words")
        self.soft = word_list(p.soft_banned_words, "--soft-banned-words")
        self.subwords = word_list(p.banned_subwords, "--banned-subwords")

    def reasons(self, urls: pl.Series) -> tuple[pl.Series, np.ndarray]:
        """The removal reason of each URL (null: kept) and which URLs an allow list kept."""
        self.setup()
        present = (urls.is_not_null() & (urls.str.len_chars() > 0)).to_numpy()
        urls = urls.fill_null("")
        host, rest = split_url(urls)
        keys = url_key(host, rest)
        checks = [self.block.domain_hits(host), self.block.url_hits(keys)]
        # the URL's words between single spaces: ' word ' is then a whole word, found by Aho–Corasick
        spaced = " " + urls.str.replace_all(_NON_WORD, " ") + " "
        nothing = np.zeros(len(urls), dtype=bool)
        checks.append(spaced.str.contains_any([f" {w} " for w in self.banned]).to_numpy() if self.banned else nothing)
        checks.append(
            (spaced.str.extract_many([f" {w} " for w in self.soft], overlapping=True).list.n_unique()
             >= self.params.soft_threshold).to_numpy() if self.soft else nothing)
        checks.append(spaced.str.replace_all(" ", "", literal=True).str.to_lowercase().str.contains_any(
            self.subwords).to_numpy() if self.subwords else nothing)
        blocked = np.column_stack(checks) & present[:, None]
        allowed = self.allow.domain_hits(host) | self.allow.url_hits(keys)
        first = np.where(blocked.any(axis=1) & ~allowed, np.argmax(blocked, axis=1), len(REASONS))
        reason = pl.Series(REASON_COLUMN, [*REASONS, None], dtype=pl.String).gather(first)
        return reason, allowed & blocked.any(axis=1)

    def process(self, batch: pa.RecordBatch, columns: Columns) -> StageOutput:
        name = self.params.url_column
        if name not in batch.schema.names:
            raise InputError(self.source or "input", f"no URL column (columns: {', '.join(batch.schema.names)}; "
                             "see --url-column)", column=name)
        column = pl.from_arrow(batch.column(name))
        if column.dtype not in (pl.String, pl.Categorical, pl.Null):
            raise InputError(self.source or "input", f"expected URLs as strings, found {column.dtype}", column=name)
        urls = column.cast(pl.String)
        reason, overridden = self.reasons(urls)
        removed = reason.value_counts().drop_nulls()
        counters: dict = {
            "removed": {} if self.params.mode == "annotate" else dict(removed.iter_rows()),
            "no_url": int((urls.is_null() | (urls.str.len_chars() == 0)).sum()),
            "allowed_over_block": int(overridden.sum()),
        }
        if self.params.mode == "annotate":
            counters["blocked"] = dict(removed.iter_rows())
            return StageOutput(_with_column(batch, reason.to_arrow()), None, counters)
        keep = reason.is_null().to_arrow()
        rejected = _with_column(batch, reason.to_arrow()).filter(pc.invert(keep))
        return StageOutput(batch.filter(keep), rejected, counters)


def _with_column(batch: pa.RecordBatch, values: pa.Array) -> pa.RecordBatch:
    values = values.cast(pa.string())
    if REASON_COLUMN in batch.schema.names:
        return batch.set_column(batch.schema.get_field_index(REASON_COLUMN), REASON_COLUMN, values)
    return batch.append_column(REASON_COLUMN, values)
