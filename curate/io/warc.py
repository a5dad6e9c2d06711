"""WARC files as an input format: one row per record, the HTTP payload of responses decoded to text.

A WARC file (``.warc``, or ``.warc.gz`` with one gzip member per record as Common Crawl ships them, or one
gzip stream for the whole file) is read as a stream: a record's payload is kept up to a byte limit and the
rest is skipped without being held, so one huge page costs bounded memory. Bad data is reported through
:class:`~curate.io.inputs.BadRows` with the record's number (0-based, in file order) and byte offset:

- a record whose WARC or HTTP header does not parse is reported and skipped; reading resumes at the next
  ``WARC/1.x`` line;
- a corrupt gzip member is reported and skipped; reading resumes at the next gzip member;
- a file that ends inside a record (truncated) is reported; the records before it are kept.

Payloads of textual content types are decoded: UTF-8 when the bytes are valid UTF-8, else the charset the
HTTP header or a ``<meta>`` tag declares when it decodes them (read as browsers read it: ISO-8859-1 as
windows-1252, GB2312 as GB18030, …), else the charset resiliparse detects (which
also covers mislabelled pages). Other payloads (PDFs, images) are not decoded: their ``html`` is empty.
"""

from __future__ import annotations

import codecs
import io
import re
from collections.abc import Callable, Iterator
from typing import BinaryIO

import numpy as np
import pyarrow as pa
from isal import isal_zlib  # zlib's interface, inflating about twice as fast

from curate.io.errors import InputError

WARC_SCHEMA = pa.schema([
    pa.field("id", pa.string()),  # WARC-Record-ID
    pa.field("url", pa.string()),  # WARC-Target-URI
    pa.field("date", pa.string()),  # WARC-Date, as written (ISO 8601)
    pa.field("warc_type", pa.string()),  # response, request, warcinfo, metadata, …
    pa.field("status", pa.int32()),  # HTTP status of a response (null otherwise)
    pa.field("content_type", pa.string()),  # the payload's MIME type, lower case, without parameters
    pa.field("html", pa.string()),  # the decoded payload of a textual response ("" otherwise)
    pa.field("truncated", pa.bool_()),  # the payload was cut (WARC-Truncated, or longer than the limit)
    pa.field("source", pa.string()),  # the WARC file
])
DEFAULT_MAX_PAYLOAD = 2 << 20  # twice Common Crawl's own limit on a fetched page (1 MiB)
_MAX_BATCH_BYTES = 8 << 20  # a batch never holds more payload than this, whatever the batch size
_MAX_HEADER_BYTES = 1 << 16  # WARC and HTTP headers longer than this are a bad record
_CHUNK = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b\x08"
_TEXT_TYPES = re.compile(r"^(text/|application/(xhtml\+xml|xml|rss\+xml|atom\+xml)$)")
# Labels that browsers read as a larger charset (the WHATWG Encoding Standard): a page labelled ISO-8859-1 with
# a byte 0x97 means an em dash, as in windows-1252, not a control character.
_WEB_CHARSETS = {"ascii": "cp1252", "iso8859-1": "cp1252", "iso8859-9": "cp1254", "iso8859-11": "cp874",
                 "tis-620": "cp874", "gb2312": "gb18030", "gbk": "gb18030", "euc_kr": "cp949", "shift_jis": "cp932",
                 "big5": "big5hkscs"}
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_.:-]+)""", re.IGNORECASE)


class _BadRecord(Exception):
    """A record that cannot be read; reading resumes at the next record."""


class _Truncated(Exception):
    """The file ends inside a record or a gzip member; nothing after it can be read."""


class _GzipMembers(io.RawIOBase):
    """Decompressed gzip members one after another, able to skip a corrupt member.

    Python's gzip module stops at the first corrupt member; this reader raises :class:`_BadRecord` there and,
    on :meth:`resync`, goes on at the next gzip header after it. A stream that ends inside a member raises
    :class:`_Truncated`. ``member_start`` is the compressed offset of the member being read.
    """

    def __init__(self, raw: BinaryIO):
        self.raw = raw
        self.member = isal_zlib.decompressobj(31)
        self.input = b""  # compressed bytes not yet fed
        self.consumed = 0  # compressed offset of ``input``'s first byte
        self.member_start = 0
        self.started = False  # bytes of the current member were fed

    def readable(self) -> bool:
        return True

    def _fill(self) -> bool:
        chunk = self.raw.read(_CHUNK)
        self.input += chunk
        return bool(chunk)

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while True:
            if not self.input and not self._fill():
                if self.started and not self.member.eof:
                    raise _Truncated(f"gzip member at byte {self.member_start} is cut short")
                return 0
            if self.member.eof:
                self.member, self.started = isal_zlib.decompressobj(31), False
                self.member_start = self.consumed
            try:
                out = self.member.decompress(self.input, len(buffer))
            except isal_zlib.error as exc:
                raise _BadRecord(f"corrupt gzip member at byte {self.member_start} ({exc})") from None
            self.started = True
            left = self.member.unused_data if self.member.eof else self.member.unconsumed_tail
            self.consumed += len(self.input) - len(left)
            self.input = left
            if out:
                buffer[: len(out)] = out
                return len(out)

    def resync(self) -> None:
        """Go on at the next gzip header after the current member's start."""
        search_from = max(self.member_start + 1 - self.consumed, 0)
        while True:
            found = self.input.find(_GZIP_MAGIC, search_from)
            if found >= 0:
                self.consumed += found
                self.input = self.input[found:]
                break
            keep = self.input[-2:]
            self.consumed += len(self.input) - len(keep)
            self.input, search_from = keep, 0
            if not self._fill():
                self.input = b""
                break
        self.member, self.started = isal_zlib.decompressobj(31), False
        self.member_start = self.consumed

    def close(self) -> None:
        self.raw.close()
        super().close()


def _headers(stream: io.BufferedReader) -> dict[str, str]:
    """``Name: value`` lines up to a blank line, names lower-cased."""
    fields: dict[str, str] = {}
    size = 0
    while True:
        line = stream.readline(_MAX_HEADER_BYTES)
        size += len(line)
        if not line:
            raise _Truncated("the file ends inside a WARC header")
        if line in (b"\r\n", b"\n"):
            return fields
        if size >= _MAX_HEADER_BYTES or not line.endswith(b"\n"):
            raise _BadRecord("WARC header longer than 64 KiB")
        name, colon, value = line.decode("utf-8", "replace").partition(":")
        if not colon:
            raise _BadRecord(f"bad WARC header line {line[:60]!r}")
        fields[name.strip().lower()] = value.strip()


def _read_block(stream: io.BufferedReader, length: int, limit: int) -> tuple[bytes, bool]:
    """The first ``limit`` bytes of a ``length``-byte block, the rest read and dropped; (bytes, cut)."""
    block = stream.read(min(length, limit))
    left = length - len(block)
    if len(block) < min(length, limit):
        raise _Truncated("the file ends inside a record")
    while left > 0:
        skipped = len(stream.read(min(left, _CHUNK)))
        if not skipped:
            raise _Truncated("the file ends inside a record")
        left -= skipped
    return block, length > limit


def decode_html(payload: bytes, declared: str | None) -> str:
    """Payload bytes as text: UTF-8 if valid, else a declared charset that decodes them, else detected."""
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.reason == "unexpected end of data":  # a payload cut inside a character
            try:
                return payload[: exc.start].decode("utf-8")
            except UnicodeDecodeError:
                pass
    meta = _META_CHARSET.search(payload, 0, 4096)
    for name in (declared, meta.group(1).decode("ascii") if meta else None):
        if name:
            try:
                codec = codecs.lookup(name).name
                return payload.decode(_WEB_CHARSETS.get(codec, codec))
            except (LookupError, UnicodeDecodeError):
                continue
    from resiliparse.parse.encoding import bytes_to_str, detect_encoding

    return bytes_to_str(payload, detect_encoding(payload))


def _http(block: bytes) -> tuple[int, dict[str, str], bytes]:
    """(status, headers with lower-case names, payload) of an HTTP response block."""
    end = block.find(b"\r\n\r\n")
    sep = 4
    if end < 0:
        end, sep = block.find(b"\n\n"), 2
    if end < 0:
        raise _BadRecord("HTTP response without the blank line that ends its header")
    lines = block[:end].decode("latin-1").splitlines()
    parts = lines[0].split(None, 2) if lines else []
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise _BadRecord(f"bad HTTP status line {lines[0][:60] if lines else ''!r}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers, block[end + sep :]


def _row(fields: dict[str, str], block: bytes, cut: bool, max_payload: int, source: str) -> dict:
    kind = fields.get("warc-type", "")
    row = {"id": fields.get("warc-record-id"), "url": fields.get("warc-target-uri"), "date": fields.get("warc-date"),
           "warc_type": kind, "status": None, "content_type": None, "html": b"", "charset": None,
           "truncated": cut or "warc-truncated" in fields, "source": source}
    if kind != "response":
        return row
    status, headers, payload = _http(block)
    mime, _, parameters = headers.get("content-type", fields.get("warc-identified-payload-type", "")).partition(";")
    charset = re.search(r"charset\s*=\s*[\"']?([^\"';\s]+)", parameters, re.IGNORECASE)
    row["status"], row["content_type"] = status, mime.strip().lower() or None
    if len(payload) > max_payload:
        payload, row["truncated"] = payload[:max_payload], True
    if _TEXT_TYPES.match(row["content_type"] or "text/html"):
        row["html"], row["charset"] = payload, charset.group(1) if charset else None
    return row


def warc_records(path: str, raw: BinaryIO, compressed: bool, max_payload: int,
                 report: Callable[[InputError], None]) -> Iterator[tuple[int, dict]]:
    """Every readable record of a WARC stream as (record number, row): the fields of :data:`WARC_SCHEMA`,
    ``html`` still the payload's bytes, and ``charset`` the one its HTTP header declares (see
    :func:`warc_batches`). ``report(InputError)`` gets the bad ones (it raises to stop, or returns to go on).

    A gzip member's checksum is checked only at its end, after its record was parsed, so each row is held
    back until the next record starts: a record whose member turns out corrupt is reported, not returned.
    """
    members = _GzipMembers(raw) if compressed else None
    stream = io.BufferedReader(members if members is not None else raw, _CHUNK)  # type: ignore[arg-type]
    number, resync = 0, False
    pending: tuple[int, dict, int] | None = None  # (number, row, compressed offset of its member)
    with stream:
        while True:
            try:
                line = stream.readline(_MAX_HEADER_BYTES)
                if pending is not None and (members is None or members.member_start != pending[2] or not line):
                    yield pending[0], pending[1]
                    pending = None
                if not line:
                    return
                if not line.startswith(b"WARC/"):
                    if resync or not line.strip():
                        continue  # the blank lines after a block, or a bad record's leftovers
                    raise _BadRecord(f"expected a WARC/1.x record header, found {line[:40]!r}")
                resync = False
                start = members.member_start if members is not None else 0
                fields = _headers(stream)
                length = fields.get("content-length", "")
                if not length.isdigit():
                    raise _BadRecord(f"missing or bad Content-Length {length[:30]!r}")
                block, cut = _read_block(stream, int(length), max_payload + _MAX_HEADER_BYTES)
                if pending is not None:  # records sharing one gzip stream: its checksum comes at the very end
                    yield pending[0], pending[1]
                pending = (number, _row(fields, block, cut, max_payload, path), start)
                number += 1
            except _BadRecord as exc:
                if pending is not None and members is not None and members.member_start == pending[2]:
                    number = pending[0]  # its member was corrupt: the record is reported instead
                elif pending is not None:
                    yield pending[0], pending[1]
                pending = None
                report(InputError(path, str(exc), row=number, row_label="record"))
                number, resync = number + 1, True
                if members is not None:
                    members.resync()
            except _Truncated as exc:
                if pending is not None and (members is None or members.member_start != pending[2]):
                    yield pending[0], pending[1]
                    pending = None
                report(InputError(path, f"truncated WARC: {exc}", row=number, row_label="record"))
                return


def warc_batches(path: str, raw: BinaryIO, compressed: bool, batch_size: int, max_payload: int,
                 report: Callable[[InputError], None]) -> Iterator[tuple[pa.RecordBatch, np.ndarray]]:
    """:func:`warc_records` as record batches of at most ``batch_size`` rows or 64 MiB of payload, with
    each row's record number."""
    columns: dict[str, list] = {name: [] for name in WARC_SCHEMA.names}
    numbers: list[int] = []
    size = 0
    columns["charset"] = []
    for number, row in warc_records(path, raw, compressed, max_payload, report):
        for name, values in columns.items():
            values.append(row[name])
        numbers.append(number)
        size += len(row["html"])
        if len(numbers) >= batch_size or size >= _MAX_BATCH_BYTES:
            yield _batch(columns), np.asarray(numbers, dtype=np.int64)
            columns = {name: [] for name in (*WARC_SCHEMA.names, "charset")}
            numbers, size = [], 0
    if numbers:
        yield _batch(columns), np.asarray(numbers, dtype=np.int64)


def _batch(columns: dict[str, list]) -> pa.RecordBatch:
    columns["html"] = _html_array(columns["html"], columns["charset"])
    return pa.RecordBatch.from_arrays([pa.array(columns[f.name], f.type) for f in WARC_SCHEMA], schema=WARC_SCHEMA)


def _html_array(payloads: list[bytes], charsets: list[str | None]) -> pa.Array:
    """The payloads as text: Arrow checks that they are UTF-8 (the common case) without a copy in Python;
    a batch with other payloads has those decoded (:func:`decode_html`) and re-encoded, the rest as they are."""
    try:
        return pa.array(payloads, pa.binary()).cast(pa.string())
    except pa.ArrowInvalid:
        return pa.array([p if _is_utf8(p) else decode_html(p, c).encode() for p, c in zip(payloads, charsets, strict=True)],
                        pa.binary()).cast(pa.string())


def _is_utf8(payload: bytes) -> bool:
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
