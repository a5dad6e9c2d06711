"""Benchmark `curate pack` with one and two workers against a raw `tokenizers` loop over the same documents.

Every command is a child process on the same input (alternating, best of --repeats), so the timings include
what a user pays: reading Parquet, tokenizing, and for curate packing and writing. The raw loops run
`encode_batch` / `encode_batch_fast` in one thread (TOKENIZERS_PARALLELISM=false), as one curate worker does;
one more curate run gives its single worker the tokenizer's thread pool (TOKENIZERS_PARALLELISM=true).
Peak RSS is the largest sum over a command's processes (the run and its workers), sampled from /proc; CPU
seconds come from the children's rusage, so CPU / wall is the number of cores a command kept busy. Then
`curate pack --compare` reports fill rate and truncations of best-fit against concat.

    .venv/bin/python scripts/bench_pack.py [--input ../shared/data/english/misc.parquet]
        [--tokenizer ../shared/data/tokenizers/gpt2.json] [--repeats 2] [--unit-rows 2000] [--rows N]
        [--copies N] [--no-compare]

--copies N packs N copies of the input (N files): every spawned worker pays a fixed start (interpreter,
imports, tokenizer, compiled packers: about a second of CPU), so the speed-up of --workers 2 shows once the
work is large against that start.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"
PAGE = os.sysconf("SC_PAGE_SIZE")
ONE_THREAD = {"TOKENIZERS_PARALLELISM": "false"}

RAW_LOOP = """
import json, os, sys, time
import pyarrow.parquet as pq
from tokenizers import Tokenizer
path, tokenizer_path, method, batch_size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
start = time.perf_counter()
tokenizer = Tokenizer.from_file(tokenizer_path)
encode = getattr(tokenizer, method)
tokens = docs = 0
files = sorted(os.path.join(path, f) for f in os.listdir(path)) if os.path.isdir(path) else [path]
for file in files:
    for batch in pq.ParquetFile(file).iter_batches(batch_size=batch_size, columns=["text"]):
        texts = batch.column(0).to_pylist()
        for encoding in encode(texts):
            tokens += len(encoding) + 1  # + EOS, as curate counts
        docs += len(texts)
print(json.dumps({"tokens": tokens, "docs": docs, "seconds": time.perf_counter() - start}))
"""


def session_rss(session: int) -> int:
    """Resident bytes of every process in a session (a command and the workers it started)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[3]) == session:
                total += int((stat.parent / "statm").read_text().split()[1]) * PAGE
        except (OSError, ValueError, IndexError):  # exited while we looked
            continue
    return total


def child(command: list[str], env: dict[str, str] | None = None) -> tuple[dict, float, float, float]:
    """(last JSON line on stdout, wall seconds, CPU seconds, peak RSS of all its processes in MiB)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, **(env or {})}, start_new_session=True)
    peak = 0
    while process.poll() is None:
        peak = max(peak, session_rss(process.pid))
        time.sleep(0.05)
    wall = time.perf_counter() - start
    stdout, stderr = process.communicate()
    if process.returncode:
        sys.exit(f"failed: {' '.join(command)}\n{stderr}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return json.loads(stdout.strip().splitlines()[-1]), wall, cpu, peak / (1 << 20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", default=str(DATA / "english" / "misc.parquet"))
    parser.add_argument("--tokenizer", default=str(DATA / "tokenizers" / "gpt2.json"))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--unit-rows", type=int, default=2_000,
                        help="--max-rows-per-shard of curate pack: input rows per unit (units are what workers share)")
    parser.add_argument("--rows", type=int, default=0, help="use only the first N rows of the input (a quick check)")
    parser.add_argument("--copies", type=int, default=1, help="pack this many copies of the input (one file each)")
    parser.add_argument("--no-compare", action="store_true", help="skip the `curate pack --compare` tables")
    args = parser.parse_args()
    python = sys.executable
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        source = args.input
        if args.rows or args.copies > 1:
            table = pq.read_table(args.input)
            table = table.slice(0, args.rows) if args.rows else table
            source = str(Path(tmp) / "input")
            Path(source).mkdir()
            for copy in range(args.copies):
                pq.write_table(table, Path(source) / f"copy-{copy:03d}.parquet")
        raw_cmd = [python, "-c", RAW_LOOP, source, args.tokenizer, "METHOD", str(args.batch_size)]
        pack_cmd = [python, "-m", "curate", "pack", source, "--tokenizer", args.tokenizer, "--batch-size",
                    str(args.batch_size), "--max-rows-per-shard", str(args.unit_rows), "--json", "-q", "--overwrite"]
        runs = {
            "raw encode_batch, 1 thread": ([c.replace("METHOD", "encode_batch") for c in raw_cmd], ONE_THREAD),
            "raw encode_batch_fast, 1 thread": ([c.replace("METHOD", "encode_batch_fast") for c in raw_cmd],
                                                ONE_THREAD),
            "curate pack --workers 1": ([*pack_cmd, "-o", str(Path(tmp) / "w1"), "--workers", "1"], None),
            "curate pack --workers 2": ([*pack_cmd, "-o", str(Path(tmp) / "w2"), "--workers", "2"], None),
            # the tokenizer's own thread pool (one thread per core) in the one worker, instead of one thread
            "curate pack --workers 1, rayon": ([*pack_cmd, "-o", str(Path(tmp) / "w1r"), "--workers", "1"],
                                               {"TOKENIZERS_PARALLELISM": "true"}),
        }
        best: dict[str, tuple[float, float, float, float]] = {}
        tokens_seen, units = set(), 0
        for _ in range(args.repeats):  # alternate, keep each command's fastest run
            for name, (command, env) in runs.items():
                if "-o" in command:  # a finished output would be resumed (nothing to do): start from none
                    shutil.rmtree(command[command.index("-o") + 1], ignore_errors=True)
                result, wall, cpu, rss = child(command, env)
                tokens_seen.add(result["tokens"]["in"] if "stage" in result else result["tokens"])
                docs = result.get("docs", result.get("docs_in"))
                units = result.get("units", units)
                inner = result.get("seconds") if "stage" not in result else result["wall_seconds"]
                if name not in best or wall < best[name][0]:
                    best[name] = (wall, inner, cpu, rss)
        assert len(tokens_seen) == 1, f"token counts differ: {tokens_seen}"
        tokens = tokens_seen.pop()
        print(f"input: {source}  ({docs:,} docs, {tokens:,} tokens incl. EOS; curate: {units} units of "
              f"{args.unit_rows} rows)")
        print(f"tokenizer: {args.tokenizer}  · 1-min load {load_before:.2f} before, {os.getloadavg()[0]:.2f} after, "
              f"{os.cpu_count()} CPUs")
        print(f"{'':34}{'wall s':>8}{'tokens/s':>12}{'after imports s':>17}{'tokens/s':>12}{'CPU s':>8}"
              f"{'cores':>7}{'peak RSS MiB':>14}")
        for name, (wall, inner, cpu, rss) in best.items():
            print(f"{name:34}{wall:8.2f}{tokens / wall:12,.0f}{inner:17.2f}{tokens / inner:12,.0f}{cpu:8.2f}"
                  f"{cpu / wall:7.2f}{rss:14.0f}")
        one, two = best["curate pack --workers 1"], best["curate pack --workers 2"]
        for raw in ("raw encode_batch, 1 thread", "raw encode_batch_fast, 1 thread"):
            print(f"curate pack --workers 1 / {raw}: {best[raw][0] / one[0]:.3f}× end to end, "
                  f"{best[raw][1] / one[1]:.3f}× after imports  (target ≥ 1.1 against encode_batch)")
        print(f"curate pack --workers 2 / --workers 1: {one[0] / two[0]:.3f}× end to end, "
              f"{one[1] / two[1]:.3f}× after imports  (target ≥ 1.8)")
        rayon = best["curate pack --workers 1, rayon"]
        print(f"curate pack --workers 2 / --workers 1 with the tokenizer's thread pool: {rayon[0] / two[0]:.3f}× "
              f"end to end, {rayon[1] / two[1]:.3f}× after imports")

        if args.no_compare:
            return
        for seq_len in (2048, 8192):
            cmp_cmd = [python, "-m", "curate", "pack", source, "-o", str(Path(tmp) / f"cmp{seq_len}"),
                       "--tokenizer", args.tokenizer, "--compare", "--seq-len", str(seq_len), "--json", "-q"]
            result, wall, _cpu, rss = child(cmp_cmd)
            print(f"\n--compare --seq-len {seq_len} (decompose: 2^8..2^13 buckets) · {wall:.1f}s, {rss:.0f} MiB:")
            print(f"{'strategy':12}{'sequences':>11}{'fill rate':>11}{'kept':>9}{'docs split':>12}{'dropped docs':>14}")
            for name, s in result["compare"].items():
                print(f"{name:12}{s['sequences']:>11,}{100 * s['fill_rate']:>10.2f}%{100 * s['kept_share']:>8.2f}%"
                      f"{s['documents']['split']:>12,}{s['documents']['dropped']:>14,}")


if __name__ == "__main__":
    main()
