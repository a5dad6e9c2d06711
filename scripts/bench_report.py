"""Build time, CPU and memory of `curate report` on a large run, against the same report on a tiny one.

The run is made in two steps. First a real pipeline runs on curate's generated sample (`curate demo --recipe`,
--seed-docs documents): langid, pii, quality with --rejected, filter, dedup exact, decontaminate, dedup
minhash, mix apply and pack, so every bookkeeping file is one curate wrote. Then each of the 10 stage outputs
(the sample and the 9 stages) is scaled to --docs rows: its rows are repeated (ids made unique) into shards of
100,000 rows with curate's row groups and compression, one shard at a time, and its `_stats.json` counts, its
manifest (rows, shards, checksums) and the inputs its plan records are rewritten to match. The --rejected
output is scaled with its stage. The tiny run is the pipeline's own output, reported in the same script.

Each report runs as `curate report RUN -o page.html` in a fresh process; the script prints wall and CPU
seconds, peak RSS, the page size and the Parquet bytes of each run, the ratios, and the load average, and
checks that both pages hold every section.

    .venv/bin/python scripts/bench_report.py --docs 1000000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from bench_common import REPO, Measured, curate_command, run_measured

from curate.io.output import COMPRESSION, MANIFEST, PLAN, ROW_GROUP_ROWS, STATS, file_checksum, shard_name
from curate.report.data import discover
from curate.sample import SENTENCES

RECIPE = """name: bench-report
stages:
  - langid: {{min_score: 0.5}}
  - pii: {{mode: both}}
  - quality: {{filters: [gopher-quality, gopher-repetition, c4, fineweb], rejected: "${{work_dir}}/quality-rejected"}}
  - filter: {{expr: 'lang_score >= 0.8'}}
  - dedup-exact: {{}}
  - decontaminate: {{benchmarks: "${{work_dir}}/benchmark.txt", mode: drop}}
  - dedup-minhash: {{threshold: 0.8}}
  - mix-apply: {{domain_column: source, weights: "{weights}", tokens: 60000, max_epochs: 3}}
  - pack: {{tokenizer: "${{work_dir}}/tokenizer.json", min_log2: 6, max_log2: 10}}
"""
# The section ids `curate report` writes (curate/report/__init__.py); every one has data in this run
SECTIONS = ("stages", "funnel", "removals", "languages", "signals", "lengths", "dedup", "mixture", "pack",
            "parameters")
SHARD_ROWS = 100_000  # rows per scaled shard: the default --max-rows-per-shard
UNSCALED = {"units"}  # integer fields of _stats.json that are not document, character or token counts
BUCKET_COUNTS = ("sequences", "tokens")  # the counts of pack's _buckets.json


def seed_run(work: Path, docs: int) -> Measured:
    """The pipeline on ``docs`` generated documents, as `curate demo --recipe` runs it."""
    work.mkdir(parents=True)
    # one Italian sentence of the sample's: decontaminate removes the documents that hold it
    (work / "benchmark.txt").write_text(SENTENCES["it"][0] + "\n")
    recipe = work.parent / "recipe.yaml"
    recipe.write_text(RECIPE.format(weights=REPO / "recipes" / "demo-weights.yaml"))
    return run_measured(curate_command("demo", "-o", str(work), "--docs", str(docs), "--recipe", str(recipe)))


def outputs(run: Path) -> list[Path]:
    """The stage outputs of a run (its --rejected outputs included): folders with a plan."""
    return sorted(p for p in run.iterdir() if (p / PLAN).is_file())


def scale_shards(source: Path, target: Path, docs: int) -> tuple[float, list[dict]]:
    """Write ``source``'s shards repeated to ``docs`` rows in all under ``target`` (pack's buckets keep their
    share); returns the factor and the new shards (name relative to ``target``, rows, bytes, checksum)."""
    groups: dict[Path, list[Path]] = {}
    for path in sorted(source.rglob("part-*.parquet")):
        groups.setdefault(path.parent.relative_to(source), []).append(path)
    rows = sum(pq.ParquetFile(p).metadata.num_rows for files in groups.values() for p in files)
    factor = docs / rows
    shards = []
    for folder, files in groups.items():
        tile = pa.concat_tables(pq.read_table(p) for p in files)
        wanted = round(tile.num_rows * factor)
        (target / folder).mkdir(parents=True, exist_ok=True)
        for unit, start in enumerate(range(0, wanted, SHARD_ROWS)):
            path, stop = target / folder / shard_name(unit), min(start + SHARD_ROWS, wanted)
            with pq.ParquetWriter(path, tile.schema, compression=COMPRESSION) as writer:
                for first in range(start, stop, ROW_GROUP_ROWS):  # one row group in memory at a time
                    writer.write_table(repeated(tile, first, min(first + ROW_GROUP_ROWS, stop)))
            shards.append({"bytes": path.stat().st_size, "checksum": file_checksum(path),
                           "name": str(path.relative_to(target)), "rows": stop - start})
    return factor, shards


def repeated(tile: pa.Table, start: int, stop: int) -> pa.Table:
    """Rows ``start`` to ``stop`` of ``tile`` repeated without end; copy n of a document gets id "ID~n"."""
    index = np.arange(start, stop)
    table = tile.take(pa.array(index % tile.num_rows))
    if "id" not in table.column_names:
        return table
    copy = pa.array((index // tile.num_rows).astype(str))
    ids = pc.binary_join_element_wise(table.column("id").cast(pa.string()), copy, "~")
    return table.set_column(table.schema.get_field_index("id"), "id", ids)


def scaled_counts(value, factor: float, key: str = ""):
    """``_stats.json`` with every count multiplied by ``factor``."""
    if isinstance(value, dict):
        return {k: scaled_counts(v, factor, k) for k, v in value.items()}
    if isinstance(value, list):
        return [scaled_counts(v, factor, key) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and key not in UNSCALED:
        return round(value * factor)
    return value


def moved(value, old: str, new: str):
    """``value`` with every path under ``old`` moved under ``new``."""
    if isinstance(value, dict):
        return {k: moved(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [moved(v, old, new) for v in value]
    if isinstance(value, str) and value.startswith(old):
        return new + value[len(old):]
    return value


def scale_run(seed: Path, run: Path, docs: int) -> None:
    """``seed``'s stage outputs scaled to ``docs`` rows each under ``run``, bookkeeping to match."""
    scaled = {}
    for source in outputs(seed):
        scaled[source.name] = scale_shards(source, run / source.name, docs)
    described = {  # the inputs a plan records for a stage output: its shards, with size and time
        name: [{"mtime_ns": (run / name / s["name"]).stat().st_mtime_ns, "path": str(run / name / s["name"]),
                "size": s["bytes"]} for s in shards]
        for name, (_, shards) in scaled.items()}
    rows_of = {str(run / name / s["name"]): s["rows"] for name, (_, shards) in scaled.items() for s in shards}
    for source in outputs(seed):
        target = run / source.name
        factor, shards = scaled[source.name]
        for name in (PLAN, MANIFEST):
            if not (source / name).is_file():
                continue
            record = moved(json.loads((source / name).read_text()), str(seed), str(run))
            read = sorted({Path(item["path"]).relative_to(run).parts[0] for item in record.get("inputs", [])
                           if str(item.get("path", "")).startswith(f"{run}/")})
            if read:
                record["inputs"] = [item for parent in read for item in described[parent]]
                if record.get("units"):
                    record["units"] = [{"index": i, "path": item["path"], "row_start": 0,
                                        "row_stop": rows_of[item["path"]]}
                                       for i, item in enumerate(record["inputs"])]
            if name == MANIFEST:
                record["rows"], record["shards"] = sum(s["rows"] for s in shards), shards
            (target / name).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        if (source / STATS).is_file():
            stats = scaled_counts(json.loads((source / STATS).read_text()), factor)
            stats["units"] = math.ceil(docs / SHARD_ROWS)
            (target / STATS).write_text(json.dumps(moved(stats, str(seed), str(run)), indent=2, sort_keys=True) + "\n")
        if (source / "_buckets.json").is_file():
            buckets = json.loads((source / "_buckets.json").read_text())
            for bucket in buckets["buckets"]:
                bucket.update({k: round(bucket[k] * factor) for k in BUCKET_COUNTS})
            (target / "_buckets.json").write_text(json.dumps(buckets, indent=2, sort_keys=True) + "\n")


def parquet_bytes(run: Path) -> int:
    return sum(p.stat().st_size for p in run.rglob("*.parquet"))


def report(run: Path, page: Path) -> Measured:
    """`curate report` on ``run`` in a fresh process; checks that the page holds every section."""
    done = run_measured(curate_command("report", str(run), "-o", str(page)))
    html = page.read_text()
    written = set(re.findall(r"<h2 id='([a-z]+)'", html))
    missing = [s for s in SECTIONS if s not in written]
    assert not missing, f"{run}: the report left out {missing}"
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=1_000_000, help="Rows of each stage output of the large run.")
    parser.add_argument("--seed-docs", type=int, default=20_000, help="Generated documents the pipeline runs on.")
    parser.add_argument("--work", type=Path, help="Folder for the runs (default: a temporary one, removed).")
    args = parser.parse_args()

    root = Path(args.work or tempfile.mkdtemp(prefix="bench-report-"))
    try:
        seed = root / "tiny"
        pipeline = seed_run(seed, args.seed_docs)
        started = time.perf_counter()
        scale_run(seed, root / "large", args.docs)
        built = time.perf_counter() - started
        runs = {"tiny": seed, "large": root / "large"}
        results = {name: report(run, root / f"{name}.html") for name, run in runs.items()}
        load = os.getloadavg()
        print(f"curate report; load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs "
              f"(load before each report: {', '.join(f'{n} {r.load[0]:.2f}' for n, r in results.items())})")
        print(f"  {'run':<6} {'stages':>7} {'rows':>12} {'Parquet MB':>11} {'wall s':>7} {'CPU s':>6} "
              f"{'peak RSS MB':>12} {'page KB':>8}")
        for name, run in runs.items():
            done, stages = results[name], discover(run)
            print(f"  {name:<6} {len(stages):>7} {sum(s.rows or 0 for s in stages):>12,} {parquet_bytes(run) / 1e6:>11,.1f} "
                  f"{done.seconds:>7.2f} {done.cpu:>6.2f} {done.peak_rss_kb / 1024:>12.0f} "
                  f"{(root / f'{name}.html').stat().st_size / 1024:>8.0f}")
        print(f"  tiny: the pipeline on {args.seed_docs:,} generated documents, {pipeline.seconds:.1f} s, peak RSS "
              f"{pipeline.peak_rss_kb / 1024:.0f} MB; large: scaled from it in {built:.1f} s, peak RSS of this "
              f"script {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
        tiny, large = results["tiny"], results["large"]
        print(f"  large / tiny: Parquet {parquet_bytes(runs['large']) / parquet_bytes(seed):.0f}×, "
              f"wall {large.seconds / tiny.seconds:.2f}×, CPU {large.cpu / tiny.cpu:.2f}×, "
              f"peak RSS {large.peak_rss_kb / tiny.peak_rss_kb:.2f}×; sections: {', '.join(SECTIONS)}")
    finally:
        if args.work is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
