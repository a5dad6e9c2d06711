"""Where a unit's packed sequences go: Parquet shards, Megatron indexed datasets (.bin + .idx), or .npy matrices.

Every file a unit writes is named ``[bucket_XXXXX/]part-{unit:05d}…`` (the output directory's rule for a unit's
shards: resume, discard and clear find them by it). Writers stream into temporary files under ``OUT/.tmp/``
and publish them on commit (a rename, or an upload for ``s3://`` outputs) — a reader never sees half a file.
Layouts are described for trainers in docs/pack-formats.md.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pyarrow as pa

from curate.io.errors import OutputError, output_os_error
from curate.io.output import TMP_DIR, OutputDir, ShardInfo, ShardWriter, temp_name

MEGATRON_MAGIC = b"MMIDIDX\x00\x00"
MEGATRON_VERSION = 1
MEGATRON_DTYPE_CODES = {np.dtype(np.uint16): 8, np.dtype(np.int32): 4}
NPY_HEADER_BYTES = 128  # fixed, so the row count can be rewritten in place once known


def unit_file(group: str, unit: int, suffix: str) -> str:
    """``bucket_00256/part-00003.bin``: a unit's file ``suffix`` in its group (a bucket, or "" for the root)."""
    return f"{group}/" * bool(group) + f"part-{unit:05d}{suffix}"


class AtomicBinaryFile:
    """A raw binary file written under ``OUT/.tmp/`` and published as ``name`` (relative to OUT) on commit.

    The I/O layer's ShardWriter writes Parquet; this is its raw-bytes counterpart.
    """

    def __init__(self, out: OutputDir, name: str):
        self.out, self.name = out, name
        self.tmp = out.path / TMP_DIR / temp_name(name.rsplit("/", 1)[-1])
        try:
            self.tmp.parent.mkdir(exist_ok=True)
            self.handle = open(self.tmp, "wb")  # noqa: SIM115 - closed in commit/abort
        except OSError as exc:
            raise OutputError(f"{self.tmp}: cannot write ({exc.strerror})") from None

    def write(self, data: bytes, at: int | None = None) -> None:
        """Append ``data`` (or write it at offset ``at``); a full disk or quota exits 4 naming the file."""
        try:
            if at is not None:
                self.handle.seek(at)
            self.handle.write(data)
        except OSError as exc:
            raise self._cannot_write(exc) from None

    def commit(self, rows: int) -> ShardInfo:
        try:
            self.handle.close()  # writes the last buffered bytes
        except OSError as exc:
            raise self._cannot_write(exc) from None
        return self.out.publish(self.tmp, rows, self.name)

    def _cannot_write(self, exc: OSError) -> OutputError:
        return output_os_error(exc, self.name) or OutputError(f"{self.name}: cannot write ({exc})")

    def abort(self) -> None:
        self.handle.close()
        self.tmp.unlink(missing_ok=True)


class _Folder:
    """An output directory as a ShardWriter sees it, with its shards published into ``folder``."""

    def __init__(self, out: OutputDir, folder: str):
        self.out, self.folder = out, folder

    @property
    def path(self) -> Path:
        return self.out.path

    def publish(self, local: Path, rows: int, name: str) -> ShardInfo:
        return self.out.publish(local, rows, f"{self.folder}/{name}")


class ParquetSequences:
    """A unit's rows of one group (a bucket, or the whole output) as zstd Parquet shards ``part-{unit}*.parquet``."""

    def __init__(self, out: OutputDir, group: str, unit: int, max_rows: int):
        target = _Folder(out, group) if group else out
        self.writer = ShardWriter(target, unit, max_rows)  # type: ignore[arg-type]  # path + publish suffice

    def write(self, batch: pa.RecordBatch) -> None:
        self.writer.write(batch)

    def commit(self) -> list[ShardInfo]:
        return self.writer.commit()

    def abort(self) -> None:
        self.writer.abort()


class MegatronSequences:
    """A Megatron-LM indexed dataset: ``PREFIX.bin`` (raw tokens) and ``PREFIX.idx`` (MMIDIDX version 1).

    Megatron groups sequences into documents; callers pass how many sequences each document has.
    """

    def __init__(self, out: OutputDir, prefix: str, dtype: np.dtype):
        if dtype not in MEGATRON_DTYPE_CODES:
            raise ValueError(f"Megatron token dtype must be uint16 or int32, not {dtype}")
        self.dtype = dtype
        self.out, self.prefix = out, prefix
        self.bin = AtomicBinaryFile(out, prefix + ".bin")
        self.lengths: list[np.ndarray] = []
        self.docs: list[np.ndarray] = []

    def write(self, tokens: np.ndarray, sequence_lengths: np.ndarray, sequences_per_document: np.ndarray) -> None:
        self.bin.write(np.ascontiguousarray(tokens, dtype=self.dtype).tobytes())
        self.lengths.append(np.asarray(sequence_lengths, np.int32))
        self.docs.append(np.asarray(sequences_per_document, np.int64))

    def commit(self) -> list[ShardInfo]:
        lengths = np.concatenate(self.lengths) if self.lengths else np.zeros(0, np.int32)
        per_doc = np.concatenate(self.docs) if self.docs else np.zeros(0, np.int64)
        pointers = np.zeros(len(lengths), np.int64)
        np.cumsum(lengths[:-1].astype(np.int64) * self.dtype.itemsize, out=pointers[1:])
        document_index = np.zeros(len(per_doc) + 1, np.int64)
        np.cumsum(per_doc, out=document_index[1:])
        idx = AtomicBinaryFile(self.out, self.prefix + ".idx")
        idx.write(MEGATRON_MAGIC)
        idx.write(struct.pack("<Q", MEGATRON_VERSION))
        idx.write(struct.pack("<B", MEGATRON_DTYPE_CODES[self.dtype]))
        idx.write(struct.pack("<Q", len(lengths)))
        idx.write(struct.pack("<Q", len(document_index)))
        for array in (lengths, pointers, document_index):
            idx.write(array.tobytes())
        return [self.bin.commit(len(lengths)), idx.commit(len(lengths))]

    def abort(self) -> None:
        self.bin.abort()


class NpyMatrix:
    """A 2-D ``.npy`` file of fixed-width rows appended as they come; the header's row count is set on commit."""

    def __init__(self, out: OutputDir, name: str, dtype: np.dtype, width: int):
        self.dtype, self.width, self.rows = np.dtype(dtype), width, 0
        self.file = AtomicBinaryFile(out, name)
        self.file.write(self._header(0))

    def _header(self, rows: int) -> bytes:
        described = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                     "shape": (rows, self.width)}
        text = repr(described).encode("latin1")
        prefix = b"\x93NUMPY\x01\x00" + struct.pack("<H", NPY_HEADER_BYTES - 10)
        body = text.ljust(NPY_HEADER_BYTES - 10 - 1) + b"\n"
        if len(body) != NPY_HEADER_BYTES - 10:
            raise OutputError(f"{self.file.name}: .npy header does not fit {NPY_HEADER_BYTES} bytes")
        return prefix + body

    def write(self, matrix: np.ndarray) -> None:
        self.file.write(np.ascontiguousarray(matrix, dtype=self.dtype).tobytes())
        self.rows += len(matrix)

    def commit(self) -> list[ShardInfo]:
        self.file.write(self._header(self.rows), at=0)
        return [self.file.commit(self.rows)]

    def abort(self) -> None:
        self.file.abort()


def list_column(matrix: np.ndarray, value_type: pa.DataType) -> pa.ListArray:
    """Equal-length rows of a matrix as a ``list<value_type>`` column (offsets computed, values not copied)."""
    rows, width = matrix.shape
    offsets = pa.array(np.arange(rows + 1, dtype=np.int32) * width, pa.int32())
    values = pa.array(np.ascontiguousarray(matrix).ravel(), value_type)
    return pa.ListArray.from_arrays(offsets, values)
