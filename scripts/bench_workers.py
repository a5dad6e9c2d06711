"""Benchmark: every stage at `--workers 1` and `--workers 2` on the same input, as users run it.

    .venv/bin/python scripts/bench_workers.py                      # every stage, sizes for ~30 s at 1 worker
    .venv/bin/python scripts/bench_workers.py --stages langid,quality --scale 0.05   # a quick check
    .venv/bin/python scripts/bench_workers.py --stages langid --trace               # where a worker's time goes

Input: the real text of ../shared/data (UDHR paragraphs, english/misc, SpamAssassin e-mails, web pages: 82,570
documents, 76 MB), shuffled once (seed 0) and repeated with suffixed ids up to the stage's document count, written
as --units Parquet files of equal rows, one unit each (--max-rows-per-shard). Each stage has its own count, so
that one worker runs about 30 s; every run prints the count that would take 30 CPU seconds inside the stage
at one worker (CPU seconds vary less with other jobs' load than wall seconds; `--docs STAGE=N` sets a count; `--scale`
multiplies every count, e.g. 0.05 to check the script quickly).

Each command is a fresh `python -m curate …` process; the table gives wall seconds of the command, seconds inside
the stage (the `--json` summary's wall_seconds), docs/s inside the stage, the speed-up of 2 workers (command
and in-stage), CPU seconds (user+sys of the command and its workers) per 1,000 documents, cores kept busy
(CPU / wall), peak RSS of the largest process and the machine's load average just before the run. The outputs of
1 and 2 workers must be byte-identical (curate's bookkeeping files aside); a stage whose output differs is
flagged, not fatal. Other jobs change wall seconds most (the kernel shares the CPUs per scheduling group, so with one
other busy group 2 workers get no more CPU than 1), CPU seconds less (up to +50% measured at load 5): see
"Scaling with --workers" in docs/benchmarks.md.

--trace runs the commands through this script so that every process records: when it was created, when its
first line of Python ran, when its imports and model load were done, each unit's start and end, and the CPU
seconds of reading (Parquet decoding, in the read-ahead thread), the stage's work (main thread; fastText's
predict separately for langid) and writing (Arrow conversion and zstd, in the writer thread); phases are
timed for langid, quality and pii.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

TRACE_ENV = "CURATE_BENCH_TRACE"  # a JSON-lines file: set, this module records what a worker does
TRACE_STAGE_ENV = "CURATE_BENCH_TRACE_STAGE"  # the traced stage's command
TRACED = {  # stage → the methods whose CPU time is a phase of their own: (module, class, method, phase)
    "langid": [("curate.stages.langid", "Predictor", "predict", "predict"),
               ("curate.stages.langid", "LangidStage", "process", "process")],
    "quality": [("curate.stages.quality.heuristics", "QualityStage", "process", "process")],
    "pii": [("curate.stages.pii", "PiiStage", "process", "process")],
}


# -- tracing inside curate's processes (imported by every spawned worker as its main module) --------------
def _process_created() -> float:
    """This process's creation time (epoch seconds; /proc counts clock ticks since boot)."""
    with open("/proc/self/stat") as fh:
        ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
    return time.time() - (time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK"))


def _install_trace(path: str, stage: str) -> None:
    """Wrap the runner's unit and worker entry points and the batch phases to record times in ``path``."""
    from curate import runner
    from curate.io.output import ShardWriter
    from curate.stages import base

    lock = threading.Lock()
    phases: dict[str, float] = {}  # CPU seconds per phase, this process

    def emit(event: str, **fields) -> None:
        record = {"event": event, "pid": os.getpid(), "time": time.time(), "cpu": time.process_time(), **fields}
        with lock, open(path, "a") as fh:
            fh.write(json.dumps(record) + "\n")

    def charged(phase: str, function: Callable) -> Callable:
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            started = time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                with lock:
                    phases[phase] = phases.get(phase, 0.0) + time.thread_time() - started
        return wrapper

    def timed_reads(read: Callable) -> Callable:
        @functools.wraps(read)
        def wrapper(*args, **kwargs):
            batches = read(*args, **kwargs)
            while True:
                started = time.thread_time()
                item = next(batches, None)
                with lock:
                    phases["read"] = phases.get("read", 0.0) + time.thread_time() - started
                if item is None:
                    return
                yield item
        return wrapper

    def unit_wrapper(process_unit: Callable) -> Callable:
        @functools.wraps(process_unit)
        def wrapper(job, unit, *args, **kwargs):
            emit("unit_start", unit=unit.index, rows=unit.rows)
            record = process_unit(job, unit, *args, **kwargs)
            emit("unit_end", unit=unit.index, phases=dict(phases))
            return record
        return wrapper

    def init_wrapper(init: Callable) -> Callable:
        @functools.wraps(init)
        def wrapper(*args, **kwargs):
            emit("init_start")
            init(*args, **kwargs)
            emit("init_end")
        return wrapper

    runner._process_unit = unit_wrapper(runner._process_unit)
    runner._init_worker = init_wrapper(runner._init_worker)
    base.read_unit = timed_reads(base.read_unit)
    ShardWriter.write = charged("write", ShardWriter.write)
    for module, cls, method, phase in TRACED.get(stage, []):
        target = getattr(importlib.import_module(module), cls)
        setattr(target, method, charged(phase, getattr(target, method)))
    emit("python_start", created=_process_created(), imports_from=_STARTED)


_STARTED = time.time()
if os.environ.get(TRACE_ENV) and __name__ != "__main__":  # a worker spawned by a traced command
    _install_trace(os.environ[TRACE_ENV], os.environ[TRACE_STAGE_ENV])


# -- the benchmark ---------------------------------------------------------------------------------------
import numpy as np  # noqa: E402 - after the trace, whose timings start before any import
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from bench_common import (  # noqa: E402
    SHARED,
    Measured,
    child_env,
    curate_command,
    json_summary,
    output_checksums,
    run_measured,
)

SOURCES = {  # domain → file under ../shared/data
    "udhr": "udhr/paragraphs.parquet",
    "english": "english/misc.parquet",
    "email": "spamassassin/emails.parquet",
    "web": "web/trafilatura_pages.parquet",
}
TARGET_SECONDS = 30.0


@dataclass
class Stage:
    name: str
    args: Callable[[Path, Path, Path], list[str]]  # (corpus, output, scratch dir) → the command's arguments
    docs: int  # documents for about TARGET_SECONDS at one worker on the standard machine (from CPU seconds)


def _mix_weights(corpus: Path, scratch: Path) -> list[str]:
    """mix apply: every domain of the corpus at an equal weight, half the corpus's tokens (bytes/4)."""
    table = pq.read_table(corpus, columns=["text", "source"])
    weights = scratch / "weights.yaml"
    domains = pc.unique(table["source"]).to_pylist()
    weights.write_text("".join(f"{domain}: {1 / len(domains)!r}\n" for domain in domains))
    tokens = pc.sum(pc.binary_length(table["text"])).as_py() // 4 // 2
    return ["--domain-column", "source", "--weights", str(weights), "--tokens", str(tokens)]


STAGES = {
    stage.name: stage
    for stage in (
        Stage("langid", lambda c, o, s: ["langid", str(c), "-o", str(o)], 350_000),
        Stage("quality", lambda c, o, s: ["quality", str(c), "-o", str(o)], 15_000),
        Stage("pii", lambda c, o, s: ["pii", str(c), "-o", str(o)], 350_000),
        Stage("dedup-minhash", lambda c, o, s: ["dedup", "minhash", str(c), "-o", str(o)], 50_000),
        Stage("dedup-exact", lambda c, o, s: ["dedup", "exact", str(c), "-o", str(o)], 500_000),
        Stage("mix-apply", lambda c, o, s: ["mix", "apply", str(c), "-o", str(o), *_mix_weights(c, s)], 1_000_000),
        Stage("pack", lambda c, o, s: ["pack", str(c), "-o", str(o), "--tokenizer",
                                       str(SHARED / "tokenizers" / "gpt2.json")], 40_000),
    )
}


def base_corpus(domains: list[str]) -> pa.Table:
    """Every document of the shared corpora (id, text, source = domain), shuffled once."""
    tables = []
    for domain in domains:
        path = SOURCES[domain]
        table = pq.read_table(SHARED / path, columns=["id", "text"])
        ids = pc.binary_join_element_wise(pa.scalar(f"{domain}-"), table["id"].cast(pa.string()), "")
        tables.append(pa.table({"id": ids, "text": table["text"], "source": pa.repeat(domain, table.num_rows)}))
    table = pa.concat_tables(tables)
    return table.take(np.random.default_rng(0).permutation(table.num_rows))


def write_corpus(base: pa.Table, docs: int, units: int, directory: Path) -> int:
    """``docs`` documents (``base`` repeated, ids suffixed by the copy) as ``units`` files; rows per file."""
    copies = []
    for copy in range(-(-docs // base.num_rows)):
        part = base.slice(0, min(base.num_rows, docs - copy * base.num_rows))
        ids = pc.binary_join_element_wise(part["id"], pa.scalar(f"-{copy}"), "")
        copies.append(part.set_column(0, "id", ids))
    table = pa.concat_tables(copies)
    rows = -(-docs // units)
    directory.mkdir(parents=True)
    for index in range(units):
        pq.write_table(table.slice(index * rows, rows), directory / f"part-{index:03d}.parquet")
    return rows


def run_stage(stage: Stage, corpus: Path, output: Path, scratch: Path, workers: int, rows: int,
              trace: Path | None) -> Measured:
    args = [*stage.args(corpus, output, scratch), "--workers", str(workers), "--max-rows-per-shard", str(rows),
            "--json", "-q", "--overwrite"]
    if trace is None:
        return run_measured(curate_command(*args))
    trace.unlink(missing_ok=True)
    command = [sys.executable, __file__, "--as-cli", *args]
    return run_measured(command, env=child_env({TRACE_ENV: str(trace), TRACE_STAGE_ENV: stage.name}))


def trace_report(trace: Path, command_started: float) -> list[str]:
    """Per process: start-up, units, and the CPU seconds of each phase, from a trace file."""
    events = [json.loads(line) for line in trace.read_text().splitlines()]
    lines = []
    processes = sorted({e["pid"] for e in events}, key=lambda pid: min(e["time"] for e in events if e["pid"] == pid))
    ends = []
    for pid in processes:
        mine = [e for e in events if e["pid"] == pid]
        first = {e["event"]: e for e in reversed(mine)}
        start = first["python_start"]
        # a process runs one unit at a time (a stage of several passes runs units of each pass in turn)
        units = list(zip((e for e in mine if e["event"] == "unit_start"), (e for e in mine if e["event"] == "unit_end"),
                         strict=True))
        line = (f"    pid {pid}: created +{start['created'] - command_started:.2f} s, Python running +"
                f"{start['imports_from'] - command_started:.2f} s")
        if not units:  # the command's own process, when workers do the units
            lines.append(line + f"; CPU until its last record {mine[-1]['cpu']:.2f} s")
            continue
        last = units[-1][1]
        ready = first.get("init_end", units[0][0])
        ends.append(last["time"])
        lines.append(line + f", imports+model done +{ready['time'] - command_started:.2f} s (init "
                     f"{ready['time'] - start['imports_from']:.2f} s), first unit +"
                     f"{units[0][0]['time'] - command_started:.2f} s, last unit done +"
                     f"{last['time'] - command_started:.2f} s; CPU {last['cpu']:.2f} s")
        for begin, end in units:
            rows = f", {begin['rows']:,} rows" if begin["rows"] is not None else ""
            lines.append(f"      unit {end['unit']}: +{begin['time'] - command_started:6.2f} → "
                         f"+{end['time'] - command_started:6.2f} s ({end['time'] - begin['time']:.2f} s wall, "
                         f"{end['cpu'] - begin['cpu']:.2f} s CPU{rows})")
        phases = last["phases"]
        wall = sum(end["time"] - begin["time"] for begin, end in units)
        cpu = sum(end["cpu"] - begin["cpu"] for begin, end in units)
        named = ", ".join(f"{name} {seconds:.2f}" for name, seconds in sorted(phases.items()))
        lines.append(f"      in units: {wall:.2f} s wall, {cpu:.2f} s CPU ({cpu / wall:.2f} cores): {named}; "
                     f"other threads and the rest {cpu - sum(v for k, v in phases.items() if k != 'predict'):.2f}")
    if len(ends) > 1:
        lines.append(f"    tail: the last process finished {max(ends) - sorted(ends)[-2]:.2f} s after the one before")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stages", default=",".join(STAGES), help=f"Comma-separated, of: {', '.join(STAGES)}.")
    parser.add_argument("--docs", action="append", default=[], metavar="STAGE=N", help="Documents for a stage.")
    parser.add_argument("--scale", type=float, default=1.0, help="Multiply every stage's document count.")
    parser.add_argument("--sources", default=",".join(SOURCES), help=f"Corpora to use, of: {', '.join(SOURCES)}.")
    parser.add_argument("--units", type=int, default=8, help="Input files = work units (≥ 8 for 2 workers).")
    parser.add_argument("--repeat", type=int, default=1, help="Runs per worker count (the fastest is reported).")
    parser.add_argument("--trace", action="store_true", help="Record each worker's start-up, units and phases.")
    parser.add_argument("--json", action="store_true", help="Also print every measurement as one JSON line.")
    args = parser.parse_args()
    stages = [STAGES[name] for name in args.stages.split(",") if name]  # KeyError names an unknown stage
    docs = {stage.name: stage.docs for stage in stages}
    for item in args.docs:
        name, _, count = item.partition("=")
        docs[name] = int(count)

    base = base_corpus(args.sources.split(","))
    results: dict = {}
    print(f"{os.cpu_count()} CPUs; corpus: {base.num_rows:,} documents of ../shared/data, shuffled, repeated; "
          f"{args.units} units; best of {args.repeat}")
    print(f"  {'stage':<14} {'workers':>7} {'docs':>9} {'cmd s':>7} {'stage s':>7} {'docs/s':>8} {'×cmd':>5} "
          f"{'×stage':>6} {'CPU s':>7} {'CPU s/1k':>8} {'cores':>5} {'RSS MB':>6} {'load before':>15}")
    for stage in stages:
        count = max(args.units, round(docs[stage.name] * args.scale))
        with tempfile.TemporaryDirectory(prefix=f"bench-workers-{stage.name}-") as tmp:
            root = Path(tmp)
            rows = write_corpus(base, count, args.units, root / "corpus")
            best: dict[int, tuple[Measured, dict]] = {}
            outputs, traces = {}, {}
            for attempt in range(args.repeat):
                for workers in (1, 2) if attempt % 2 == 0 else (2, 1):
                    output = root / f"out-{workers}"
                    shutil.rmtree(output, ignore_errors=True)  # a finished output would be resumed: nothing to do
                    trace = root / f"trace-{workers}.jsonl" if args.trace else None
                    started = time.time()
                    measured = run_stage(stage, root / "corpus", output, root, workers, rows, trace)
                    summary = json_summary(measured.stdout)
                    summary = summary[0] if isinstance(summary, list) else summary
                    if workers not in best or measured.seconds < best[workers][0].seconds:
                        best[workers] = (measured, summary)
                        if trace is not None:
                            traces[workers] = trace_report(trace, started)
                    outputs[workers] = output_checksums(output)
            identical = outputs[1] == outputs[2]
            results[stage.name] = report(stage.name, count, best, identical)
            for workers, lines in traces.items():
                print(f"  trace, --workers {workers}:")
                print("\n".join(lines))
    print("Documents for ~30 CPU seconds in the stage at 1 worker (≈ 30 s on an idle machine): "
          + " ".join(f"--docs {name}={r['suggested_docs']}" for name, r in results.items()))
    if args.json:
        print(json.dumps(results))


def report(name: str, docs: int, best: dict[int, tuple[Measured, dict]], identical: bool) -> dict:
    """Print a stage's two rows and return them for --json."""
    rows = {}
    base_cmd, base_stage = best[1][0].seconds, best[1][1]["wall_seconds"]
    for workers, (measured, summary) in sorted(best.items()):
        inside = summary["wall_seconds"]
        load = measured.load
        print(f"  {name:<14} {workers:>7} {docs:>9,} {measured.seconds:7.2f} {inside:7.2f} {docs / inside:8,.0f} "
              f"{base_cmd / measured.seconds:5.2f} {base_stage / inside:6.2f} {measured.cpu:7.2f} "
              f"{1000 * measured.cpu / docs:8.3f} {measured.cpu / measured.seconds:5.2f} "
              f"{measured.peak_rss_kb / 1024:6.0f} {load[0]:5.2f} {load[1]:4.2f} {load[2]:4.2f}")
        rows[workers] = {
            "seconds": round(measured.seconds, 3), "stage_seconds": inside, "docs_per_s": round(docs / inside),
            "speedup": round(base_cmd / measured.seconds, 3), "stage_speedup": round(base_stage / inside, 3),
            "cpu_seconds": round(measured.cpu, 3), "user": round(measured.user, 3),
            "system": round(measured.system, 3), "peak_rss_mb": round(measured.peak_rss_kb / 1024),
            "load_before": load,
        }
    if not identical:
        print(f"  {name}: OUTPUTS DIFFER between --workers 1 and --workers 2")
    return {"docs": docs, "identical": identical, "workers": rows,
            "suggested_docs": suggested_docs(docs, *best[1])}


def suggested_docs(docs: int, one_worker: Measured, summary: dict) -> int:
    """Documents for TARGET_SECONDS of CPU inside the stage at one worker (≈ its wall time on an idle machine):
    the stage's CPU is taken as the command's CPU times the stage's share of the command's wall time, so that
    start-up (interpreter, imports) does not count."""
    stage_cpu = one_worker.cpu * summary["wall_seconds"] / one_worker.seconds
    return int(round(TARGET_SECONDS * docs / stage_cpu, -3))


def _as_cli() -> None:
    """``--as-cli ARGS``: run ``curate ARGS`` in this process with tracing (workers inherit it)."""
    _install_trace(os.environ[TRACE_ENV], os.environ[TRACE_STAGE_ENV])
    sys.argv = ["curate", *sys.argv[2:]]
    from curate.cli.main import main as curate_main

    curate_main()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--as-cli"]:
        _as_cli()
    else:
        main()
