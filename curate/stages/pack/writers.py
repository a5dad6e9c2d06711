"""Where packed sequences go: Parquet shards, Megatron indexed datasets (.bin + .idx), or flat .npy matrices.

Every writer streams: Parquet through the I/O layer's ShardWriter (shards closed as they fill), the binary
formats appended under ``.tmp/`` and renamed into place by ``commit`` — a reader never sees half a file.
Layouts are described for trainers in docs/pack-formats.md.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pyarrow as pa

from curate.io.errors import OutputError
from curate.io.output import TMP_DIR, OutputDir, ShardInfo, ShardWriter, file_checksum

MEGATRON_MAGIC = b"MMIDIDX\x00\x00"
MEGATRON_VERSION = 1
MEGATRON_DTYPE_CODES = {np.dtype(np.uint16): 8, np.dtype(np.int32): 4}
NPY_HEADER_BYTES = 128  # fixed, so the row count can be rewritten in place once known


class AtomicBinaryFile:
    """A raw binary file written under ``DIR/.tmp/NAME`` and renamed to ``DIR/NAME`` on commit.

    The I/O layer only has an atomic writer for JSON and Parquet shards; this is its raw-bytes counterpart.
    """

    def __init__(self, directory: Path, name: str, root: Path):
        self.final = directory / name
        self.relative = str(self.final.relative_to(root))
        self.tmp = root / TMP_DIR / self.relative.replace(os.sep, "__")
        self.tmp.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.handle = open(self.tmp, "wb")  # noqa: SIM115 - closed in commit/abort
        except OSError as exc:
            raise OutputError(f"{self.tmp}: cannot write ({exc.strerror})") from None

    def commit(self, rows: int) -> ShardInfo:
        self.handle.close()
        self.final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.tmp, self.final)
        return ShardInfo(self.relative, rows, self.final.stat().st_size, file_checksum(self.final))

    def abort(self) -> None:
        self.handle.close()
        self.tmp.unlink(missing_ok=True)


class ParquetSequences:
    """Rows of one output group (a bucket, or the whole output) as zstd Parquet ``part-*`` shards."""

    def __init__(self, directory: Path, root: Path, max_rows: int):
        self.prefix = "" if directory == root else str(directory.relative_to(root)) + "/"
        (directory / TMP_DIR).mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.writer = ShardWriter(OutputDir(directory), 0, max_rows)

    def write(self, batch: pa.RecordBatch) -> None:
        self.writer.write(batch)

    def commit(self) -> list[ShardInfo]:
        shards = self.writer.commit()
        if self.prefix:
            (self.directory / TMP_DIR).rmdir()
        return [ShardInfo(self.prefix + s.name, s.rows, s.bytes, s.checksum) for s in shards]

    def abort(self) -> None:
        self.writer.abort()


class MegatronSequences:
    """A Megatron-LM indexed dataset: ``NAME.bin`` (raw tokens) and ``NAME.idx`` (MMIDIDX version 1).

    Megatron groups sequences into documents; callers pass how many sequences each document has.
    """

    def __init__(self, directory: Path, root: Path, dtype: np.dtype, name: str = "data"):
        if dtype not in MEGATRON_DTYPE_CODES:
            raise ValueError(f"Megatron token dtype must be uint16 or int32, not {dtype}")
        self.dtype = dtype
        self.bin = AtomicBinaryFile(directory, name + ".bin", root)
        self.idx_name = (directory, name + ".idx", root)
        self.lengths: list[np.ndarray] = []
        self.docs: list[np.ndarray] = []

    def write(self, tokens: np.ndarray, sequence_lengths: np.ndarray, sequences_per_document: np.ndarray) -> None:
        self.bin.handle.write(np.ascontiguousarray(tokens, dtype=self.dtype).tobytes())
        self.lengths.append(np.asarray(sequence_lengths, np.int32))
        self.docs.append(np.asarray(sequences_per_document, np.int64))

    def commit(self) -> list[ShardInfo]:
        lengths = np.concatenate(self.lengths) if self.lengths else np.zeros(0, np.int32)
        per_doc = np.concatenate(self.docs) if self.docs else np.zeros(0, np.int64)
        pointers = np.zeros(len(lengths), np.int64)
        np.cumsum(lengths[:-1].astype(np.int64) * self.dtype.itemsize, out=pointers[1:])
        document_index = np.zeros(len(per_doc) + 1, np.int64)
        np.cumsum(per_doc, out=document_index[1:])
        idx = AtomicBinaryFile(*self.idx_name)
        idx.handle.write(MEGATRON_MAGIC)
        idx.handle.write(struct.pack("<Q", MEGATRON_VERSION))
        idx.handle.write(struct.pack("<B", MEGATRON_DTYPE_CODES[self.dtype]))
        idx.handle.write(struct.pack("<Q", len(lengths)))
        idx.handle.write(struct.pack("<Q", len(document_index)))
        for array in (lengths, pointers, document_index):
            idx.handle.write(array.tobytes())
        return [self.bin.commit(len(lengths)), idx.commit(len(lengths))]

    def abort(self) -> None:
        self.bin.abort()


class NpyMatrix:
    """A 2-D ``.npy`` file of fixed-width rows appended as they come; the header's row count is set on commit."""

    def __init__(self, directory: Path, name: str, root: Path, dtype: np.dtype, width: int):
        self.dtype, self.width, self.rows = np.dtype(dtype), width, 0
        self.file = AtomicBinaryFile(directory, name, root)
        self.file.handle.write(self._header(0))

    def _header(self, rows: int) -> bytes:
        described = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                     "shape": (rows, self.width)}
        text = repr(described).encode("latin1")
        prefix = b"\x93NUMPY\x01\x00" + struct.pack("<H", NPY_HEADER_BYTES - 10)
        body = text.ljust(NPY_HEADER_BYTES - 10 - 1) + b"\n"
        if len(body) != NPY_HEADER_BYTES - 10:
            raise OutputError(f"{self.file.final}: .npy header does not fit {NPY_HEADER_BYTES} bytes")
        return prefix + body

    def write(self, matrix: np.ndarray) -> None:
        self.file.handle.write(np.ascontiguousarray(matrix, dtype=self.dtype).tobytes())
        self.rows += len(matrix)

    def commit(self) -> list[ShardInfo]:
        self.file.handle.seek(0)
        self.file.handle.write(self._header(self.rows))
        return [self.file.commit(self.rows)]

    def abort(self) -> None:
        self.file.abort()


def list_column(matrix: np.ndarray, value_type: pa.DataType) -> pa.ListArray:
    """Equal-length rows of a matrix as a ``list<value_type>`` column (offsets computed, values not copied)."""
    rows, width = matrix.shape
    offsets = pa.array(np.arange(rows + 1, dtype=np.int32) * width, pa.int32())
    values = pa.array(np.ascontiguousarray(matrix).ravel(), value_type)
    return pa.ListArray.from_arrays(offsets, values)
