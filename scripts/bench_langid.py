"""Benchmark: `curate langid` against a plain fastText predict loop over the same texts, in one run.

    .venv/bin/python scripts/bench_langid.py [--copies 4] [--shards 8]

The corpus is ../shared/data/udhr/paragraphs.parquet repeated --copies times, written as --shards Parquet
files. The raw baselines hold every text in memory already (no reading, no writing); curate is timed end to
end as a user runs it (process start, read, predict, write zstd shards, manifest). Peak RSS is per process.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from bench_common import SHARED, curate_command, json_summary, run_measured

UDHR = SHARED / "udhr" / "paragraphs.parquet"


def make_corpus(directory: Path, copies: int, shards: int) -> tuple[list[str], int]:
    table = pq.read_table(UDHR, columns=["id", "text", "lang"])
    table = pa.concat_tables([table] * copies)
    per_shard = -(-table.num_rows // shards)
    for i in range(shards):
        pq.write_table(table.slice(i * per_shard, per_shard), directory / f"udhr-{i:02d}.parquet")
    texts = table["text"].to_pylist()
    return texts, sum(len(t.encode()) for t in texts)


def raw_loop(texts: list[str]) -> float:
    import fasttext

    from curate.stages.langid import DEFAULT_MODEL

    fasttext.FastText.eprint = lambda *a, **k: None
    model = fasttext.load_model(str(DEFAULT_MODEL))
    start = time.perf_counter()
    for text in texts:
        model.predict(text.replace("\n", " "))
    return time.perf_counter() - start


def raw_batch(texts: list[str]) -> float:
    import fasttext

    from curate.stages.langid import DEFAULT_MODEL

    model = fasttext.load_model(str(DEFAULT_MODEL))
    start = time.perf_counter()
    model.predict([t.replace("\n", " ") for t in texts])
    return time.perf_counter() - start


def run_curate(corpus: Path, out: Path, workers: int) -> tuple[float, int, float]:
    """(seconds end to end, peak RSS in KB of the largest process, seconds inside the run itself)."""
    measured = run_measured(curate_command("langid", str(corpus), "-o", str(out), "--json", "--workers",
                                           str(workers), "--overwrite"))
    return measured.seconds, measured.peak_rss_kb, json_summary(measured.stdout)["wall_seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=8)
    parser.add_argument("--shards", type=int, default=8)
    args = parser.parse_args()
    if not UDHR.exists():
        sys.exit(f"{UDHR} not found (the shared corpora are needed for this benchmark)")
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus"
        corpus.mkdir()
        texts, nbytes = make_corpus(corpus, args.copies, args.shards)
        n = len(texts)
        rows = {
            "raw fastText loop (predict per text)": (raw_loop(texts), None, None),
            "raw fastText batch (predict on a list)": (raw_batch(texts), None, None),
        }
        for workers in (1, 2):
            rows[f"curate langid --workers {workers}"] = run_curate(corpus, Path(tmp) / f"out{workers}", workers)
    base = rows["raw fastText loop (predict per text)"][0]
    print(f"{n:,} UDHR paragraphs, {nbytes / 1e6:.1f} MB of text, {args.shards} shards; load {os.getloadavg()}")
    print(f"{'run':<40} {'seconds':>8} {'docs/s':>8} {'MB/s':>6} {'vs loop':>8} {'peak RSS':>9} {'in-run s':>9} {'vs loop':>8}")
    results = {}
    for name, (seconds, rss_kb, inner) in rows.items():
        rss = f"{rss_kb / 1024:.0f} MB" if rss_kb else "-"
        inside = f"{inner:9.2f} {base / inner:7.2f}x" if inner else f"{'-':>9} {'-':>8}"
        print(f"{name:<40} {seconds:8.2f} {n / seconds:8,.0f} {nbytes / 1e6 / seconds:6.1f} {base / seconds:7.2f}x"
              f" {rss:>9} {inside}")
        results[name] = {
            "seconds": round(seconds, 3),
            "docs_per_s": round(n / seconds),
            "ratio_vs_loop": round(base / seconds, 3),
            "in_run_seconds": inner,
            "peak_rss_mb": round(rss_kb / 1024) if rss_kb else None,
        }
    print(json.dumps(results))


if __name__ == "__main__":
    main()
