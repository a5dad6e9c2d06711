"""PII scrubbing as FineWeb does it: e-mail addresses and public IPv4 addresses replaced by fixed decoys.

FineWeb runs datatrove's ``PIIFormatter`` with its defaults after deduplication; this stage reproduces it:
the same regular expressions (leftmost-first, non-overlapping, e-mails first and then IPs on the rewritten
text), the same replacements, and the same notion of a public address (``ipaddress.IPv4Address.is_global``
of the running Python; strings with leading zeros such as ``01.2.3.4`` are not addresses and are kept).
Which spans are replaced and every byte outside them are identical to datatrove's output.

The one documented difference is *which* decoy replaces a match. Both tools rotate through the decoy list,
one step per replaced match (kept private IPs do not advance it), e-mails and IPs each with their own list.
datatrove keeps one counter per formatter instance, running over every document its task reads, so a
document's decoys depend on how many matches came before it in that task's stream (and so on the task
split and the order of the files). Here each document starts its rotation at ``xxh3_64(id) mod
len(decoys)``, the id as UTF-8 text (the document text when there is no id column, the id is null or has a
type with no text form), and then advances one step per replaced match, exactly as datatrove does within a
document. The output is thus the same for any --workers, --shard-index/--num-shards split, batch size or
resume, and a document's decoy sequence is datatrove's shifted by a per-document constant.

Which IPs count as public follows the running Python, as datatrove's does: interpreters with the 2024 fix
of ``is_global`` (3.11.10+, 3.12.4+, 3.13, and distribution backports) treat 192.0.0.0/24 as non-global
except 192.0.0.9 and 192.0.0.10, older ones treat 192.0.0.8-192.0.0.255 (but .170/.171) as global.

Matching runs vectorised in polars: Rust's regex has the same leftmost-first semantics as Python's ``re``
for these patterns; only the e-mail pattern's leading ``\\b`` needs care (``split_matches``): Python's
is Unicode, polars' fast one ASCII, and the two engines' Unicode ones disagree on a few thousand code
points (combining marks, superscript digits, ``‿``, unassigned code points...). Each document is matched
by the fastest engine that is exact for it. The per-match decision (is this IP public?) is taken once per
distinct match in a batch.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from curate.io.errors import UsageError
from curate.io.inputs import Columns
from curate.params import option
from curate.stages.base import MapStage, StageOutput

# example.com and example.org are reserved for documentation (RFC 2606)
EMAIL_REPLACEMENTS = ("email@example.com", "firstname.lastname@example.org")
# FineWeb's decoy addresses
IP_REPLACEMENTS = (
    "22.214.171.124",
    "126.96.36.199",
    "188.8.131.52",
    "184.108.40.206",
    "220.127.116.11",
    "18.104.22.168",
)
MODES = ["replace", "annotate", "both"]

_LOCAL_CHAR = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"  # RFC 5322 atext
_DOMAIN_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)"
_ADDRESS_LITERAL = rf"\[(?:{_OCTET}\.){{3}}(?:{_OCTET}|[A-Za-z0-9-]*[A-Za-z0-9]:)\]"
_EMAIL_AFTER_BOUNDARY = (
    rf"{_LOCAL_CHAR}+(?:\.{_LOCAL_CHAR}+)*@(?:(?:{_DOMAIN_LABEL}\.)+{_DOMAIN_LABEL}|{_ADDRESS_LITERAL})"
)
EMAIL_PATTERN = rf"\b{_EMAIL_AFTER_BOUNDARY}"
IPV4_PATTERN = rf"(?:{_OCTET}\.){{3}}{_OCTET}"

# single characters that can mark match boundaries inside a batch (the first one absent from it is used):
# control characters, then Unicode noncharacters
_SENTINELS = [chr(c) for c in (*range(0, 9), *range(14, 21), *range(0xFDD0, 0xFDF0))]


@dataclass
class PiiParams:
    emails: bool = option(True, "Replace e-mail addresses.")
    ips: bool = option(True, "Replace IPv4 addresses (public ones only, unless --all-ips).")
    public_ips_only: bool = option(
        True,
        "Keep private, loopback, reserved and other non-global IPs (Python's ipaddress is_global).",
        flag="--public-ips-only/--all-ips",
    )
    email_replacements: list[str] = option(
        list(EMAIL_REPLACEMENTS), "Decoy addresses used in turn for e-mails (comma-separated)."
    )
    ip_replacements: list[str] = option(list(IP_REPLACEMENTS), "Decoy IPs used in turn (comma-separated).")
    mode: str = option(
        "replace",
        "replace: rewrite the text; annotate: keep the text, add pii_emails/pii_ips counts; both: rewrite and add.",
        choices=MODES,
    )


@dataclass(frozen=True)
class PiiKind:
    """One kind of personal data: where it may occur, how it is matched, which matches go, what replaces them."""

    name: str  # "emails" or "ips": counters and the pii_<name> column
    pattern: str
    hint: str  # an RE2 pattern every document with a match contains (cheap pre-selection)
    replacements: tuple[str, ...]
    replaceable: Callable[[list[str]], list[bool]] | None = None  # per distinct match; None: all go
    after_word_boundary: str | None = None  # when ``pattern`` is ``\b`` and then this (see split_matches)


def is_public_ipv4(texts: list[str]) -> list[bool]:
    return [address is not None and address.is_global for address in map(_ipv4, texts)]


def is_ipv4(texts: list[str]) -> list[bool]:
    return [_ipv4(text) is not None for text in texts]


@functools.lru_cache(maxsize=65_536)
def _ipv4(text: str) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:  # leading zeros, as datatrove's ip_address() refuses them
        return None


@functools.cache
def boundary_disagreements() -> str:
    """A regex class of the code points that Python's ``re`` and polars' regex do not agree are word characters."""
    everything = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    python_words = set(re.findall(r"\w", everything))
    rust_words = set(pl.Series([everything]).str.extract_all(r"\w").explode().to_list())
    codes = sorted(ord(c) for c in python_words ^ rust_words)
    ranges: list[list[int]] = []
    for code in codes:
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1][1] = code
        else:
            ranges.append([code, code])
    return "[" + "".join(f"\\x{{{a:X}}}-\\x{{{b:X}}}" for a, b in ranges) + "]"


@functools.cache
def _python_splitter(pattern: str) -> re.Pattern:
    return re.compile(f"({pattern})")  # the pattern's own groups are all non-capturing


class PiiStage(MapStage):
    name = "pii"

    def __init__(self, params: PiiParams):
        super().__init__(params)
        if not (params.emails or params.ips):
            raise UsageError("--no-emails and --no-ips together leave nothing to do")
        kinds = []
        if params.emails:
            if not params.email_replacements:
                raise UsageError("--email-replacements needs at least one address")
            kinds.append(
                PiiKind(
                    "emails",
                    EMAIL_PATTERN,
                    "@",
                    tuple(params.email_replacements),
                    None,
                    _EMAIL_AFTER_BOUNDARY,
                )
            )
        if params.ips:
            if not params.ip_replacements:
                raise UsageError("--ip-replacements needs at least one address")
            check = is_public_ipv4 if params.public_ips_only else is_ipv4
            kinds.append(PiiKind("ips", IPV4_PATTERN, r"[0-9]\.[0-9]", tuple(params.ip_replacements), check))
        self.kinds = kinds

    def setup(self) -> None:
        if self.params.emails:
            boundary_disagreements()

    def process(self, batch: pa.RecordBatch, columns: Columns) -> StageOutput:
        original = batch.column(columns.text)
        text = original if original.type == pa.large_string() else original.cast(pa.large_string())
        ids = batch.column(columns.id) if columns.id in batch.schema.names else None
        rotation = RotationStart(original, ids)
        found: dict[str, np.ndarray] = {}
        for kind in self.kinds:
            text, found[kind.name] = scrub(text, kind, rotation)
        touched = np.any([counts > 0 for counts in found.values()], axis=0)
        if self.params.mode != "annotate":
            batch = batch.set_column(
                batch.schema.get_field_index(columns.text), columns.text, text.cast(original.type)
            )
        if self.params.mode != "replace":
            for name, counts in found.items():
                batch = _with_column(batch, f"pii_{name}", pa.array(counts, pa.int32()))
        verb = "found" if self.params.mode == "annotate" else "replaced"
        counters = {f"{name}_{verb}": int(counts.sum()) for name, counts in found.items()}
        counters["docs_with_pii" if verb == "found" else "docs_touched"] = int(np.count_nonzero(touched))
        return StageOutput(batch, None, counters)


class RotationStart:
    """Where each document starts the decoy rotation: a hash of its id (its text when it has none)."""

    def __init__(self, text: pa.Array, ids: pa.Array | None):
        self.text = text
        self.ids = ids

    def offsets(self, rows: np.ndarray) -> np.ndarray:
        keys = [None] * len(rows) if self.ids is None else _as_text(self.ids.take(rows))
        if any(key is None for key in keys):
            texts = self.text.take(rows).to_pylist()
            keys = [text if key is None else key for key, text in zip(keys, texts, strict=True)]
        return np.array([xxhash.xxh3_64_intdigest(key.encode()) for key in keys], dtype=np.uint64)


def _as_text(ids: pa.Array) -> list[str | None]:
    try:
        return ids.cast(pa.string()).to_pylist()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # e.g. struct ids: the text decides
        return [None] * len(ids)


def scrub(text: pa.Array, kind: PiiKind, rotation: RotationStart) -> tuple[pa.Array, np.ndarray]:
    """Replace ``kind``'s matches in ``text`` (large_string); returns the new text and the count per document."""
    counts = np.zeros(len(text), dtype=np.int64)
    selected = pc.match_substring_regex(text, kind.hint)
    candidates = np.flatnonzero(selected.to_numpy(zero_copy_only=False))
    if len(candidates) == 0:
        return text, counts
    everything = len(candidates) == len(text)
    pieces = split_matches(text if everything else text.filter(selected), kind)  # text, match, ..., text
    lengths = pc.list_value_length(pieces).to_numpy(zero_copy_only=False)
    flat = pieces.flatten()
    parent = np.repeat(np.arange(len(candidates)), lengths)
    position = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    is_match = position % 2 == 1
    matches = flat.filter(pa.array(is_match))
    replace = np.ones(len(matches), dtype=bool)
    if kind.replaceable is not None and len(matches):
        distinct = pc.unique(matches)
        decided = np.array(kind.replaceable(distinct.to_pylist()), dtype=bool)
        replace = decided[pc.index_in(matches, value_set=distinct).to_numpy(zero_copy_only=False)]
    match_docs = parent[is_match][replace]  # ascending: pieces are in document order
    if len(match_docs) == 0:
        return text, counts
    rank = np.arange(len(match_docs)) - np.searchsorted(match_docs, match_docs, side="left")
    docs = np.unique(match_docs)
    n = len(kind.replacements)
    start = (rotation.offsets(candidates[docs]) % np.uint64(n)).astype(np.int64)
    choice = (start[np.searchsorted(docs, match_docs)] + rank) % n
    decoys = pc.take(pa.array(kind.replacements, pa.large_string()), pa.array(choice))
    where = np.zeros(len(flat), dtype=bool)
    where[np.flatnonzero(is_match)[replace]] = True
    rewritten = pc.replace_with_mask(flat, pa.array(where), decoys)
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    joined = pc.binary_join(pa.ListArray.from_arrays(offsets, rewritten), pa.scalar("", pa.large_string()))
    counts[candidates] = np.bincount(match_docs, minlength=len(candidates))
    return (joined if everything else pc.replace_with_mask(text, selected, joined)), counts


def split_matches(text: pa.Array, kind: PiiKind) -> pa.ListArray:
    """Each document as alternating pieces: text between matches (even positions) and matches (odd).

    polars marks every match with a sentinel character absent from the batch, and ``split_pattern`` cuts
    there. A leading ``\\b`` is decided in three tiers, each exact where it is used. polars' ASCII ``\\b``
    (fast: its DFA handles it) agrees with Python's wherever the character before a possible match is
    ASCII. Documents where a non-ASCII character directly precedes an e-mail-like string use polars'
    Unicode ``\\b`` (tens of times slower), and those where that character is one on which the two engines
    disagree use Python's ``re``.
    """
    splitter = _python_splitter(kind.pattern)
    sentinel = next((s for s in _SENTINELS if not pc.any(pc.match_substring(text, s)).as_py()), None)
    if sentinel is None:  # every candidate character occurs in this batch: Python's re for all of it
        return pa.array([splitter.split(t) for t in text.to_pylist()], pa.list_(pa.large_string()))
    column = pl.from_arrow(text)
    marker = f"{sentinel}${{0}}{sentinel}"
    body = kind.after_word_boundary
    if body is None:
        return pc.split_pattern(column.str.replace_all(kind.pattern, marker).to_arrow(), sentinel)
    marked = column.str.replace_all(rf"(?-u:\b){body}", marker).to_arrow()
    after_non_ascii = column.str.contains(rf"[^\x00-\x7F]{body}")
    if after_non_ascii.any():
        by_python = column.str.contains(f"{boundary_disagreements()}{body}")
        by_rust = (after_non_ascii & ~by_python).to_arrow()
        if pc.any(by_rust).as_py():
            rust = column.filter(pl.Series(by_rust)).str.replace_all(kind.pattern, marker).to_arrow()
            marked = pc.replace_with_mask(marked, by_rust, rust.cast(marked.type))
        if by_python.any():
            python = [sentinel.join(splitter.split(t)) for t in column.filter(by_python).to_list()]
            marked = pc.replace_with_mask(marked, by_python.to_arrow(), pa.array(python, marked.type))
    return pc.split_pattern(marked, sentinel)


def _with_column(batch: pa.RecordBatch, name: str, values: pa.Array) -> pa.RecordBatch:
    """Add a column, or overwrite it in place (pii run again on its own output)."""
    if name in batch.schema.names:
        return batch.set_column(batch.schema.get_field_index(name), name, values)
    return batch.append_column(name, values)
