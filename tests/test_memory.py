"""Peak memory of langid, dedup minhash and pack does not grow with the size of one huge document.

Each stage runs as a real process on a file holding one long document (1x and 4x the size) beside a few
short ones, with a fixed --batch-size; its peak RSS comes from the kernel (getrusage of a small parent process). Reading and writing a
document costs some bytes per byte in any stage (the input batch, Parquet pages, the output), so the growth is
compared with a stage that only passes documents through (`dedup rehydrate`): a stage may add at most
EXTRA_BYTES_PER_BYTE on top. Before, tokenizing took over 100 bytes per byte of a document, fastText 16 and
MinHash signatures 24.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from conftest import write_parquet

SMALL_MB, LARGE_MB = 3, 12
EXTRA_BYTES_PER_BYTE = 5


# A small parent runs the stage: a child's peak RSS starts from its parent's size at fork (the test process).
MEASURE = """
import resource, subprocess, sys
code = subprocess.call([sys.executable, "-m", "curate", *sys.argv[1:]], stdout=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(code)
"""


def peak_rss_mb(args: list[str]) -> float:
    """Run `curate ARGS` in a fresh process and return its peak resident memory in MB."""
    result = subprocess.run([sys.executable, "-c", MEASURE, *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return int(result.stdout) / 1024  # KB on Linux


@pytest.fixture(scope="module")
def documents(shared_data, tmp_path_factory) -> dict[int, Path]:
    """Files with one English document of SMALL_MB and LARGE_MB MB, and 20 short ones."""
    english = pl.read_parquet(shared_data / "english" / "misc.parquet")["text"].to_list()
    text = "\n\n".join(english)
    short = english[:20]
    directory = tmp_path_factory.mktemp("huge")
    files = {}
    for mb in (SMALL_MB, LARGE_MB):
        size = mb * 1_000_000
        long = (text * (size // len(text) + 1))[:size]
        texts = [*short[:10], long, *short[10:]]
        table = pa.table({"id": [f"d{i}" for i in range(len(texts))], "text": texts,
                          "dup_cluster_size": [1] * len(texts)})
        files[mb] = write_parquet(directory / f"doc{mb}.parquet", table)
    return files


def peaks_mb(command: list[str], documents: dict[int, Path], tmp_path: Path) -> list[float]:
    """Peak RSS of `curate COMMAND... FILE -o OUT OPTION` on the small and the large document."""
    name = "-".join(command[:2])
    return [peak_rss_mb([*command[:-1], str(documents[mb]), "-o", str(tmp_path / f"{name}-{mb}"), "-q",
                         "--batch-size", "8", command[-1]])
            for mb in (SMALL_MB, LARGE_MB)]


@pytest.fixture(scope="module")
def passing_through(documents, tmp_path_factory) -> list[float]:
    return peaks_mb(["dedup", "rehydrate", "--materialize"], documents, tmp_path_factory.mktemp("through"))


@pytest.mark.parametrize("stage", ["langid", "dedup minhash", "pack"])
def test_peak_memory_does_not_grow_with_one_huge_document(stage, documents, passing_through, shared_data, tmp_path):
    tokenizer = str(shared_data / "tokenizers" / "gpt2.json")
    extra = {"langid": "--min-score=0", "dedup minhash": "--mode=annotate", "pack": f"--tokenizer={tokenizer}"}
    through = passing_through
    peaks = peaks_mb([*stage.split(), extra[stage]], documents, tmp_path)
    allowed = through[1] - through[0] + EXTRA_BYTES_PER_BYTE * (LARGE_MB - SMALL_MB)
    assert peaks[1] - peaks[0] <= allowed, (
        f"{stage}: peak RSS {peaks[0]:.0f} → {peaks[1]:.0f} MB from a {SMALL_MB} to a {LARGE_MB} MB document "
        f"(passing documents through: {through[0]:.0f} → {through[1]:.0f} MB)")
