"""Pipeline executors: `--workers 2` vs `--workers 1`, and Ray vs the local pool, on the same recipe.

Runs `curate run` (a fresh process each time, as users do) on a generated corpus cut into equal units, with a
CPU-bound stage (quality heuristics by default), and prints wall seconds, docs/s, the speed-up and the Ray
overhead, plus peak RSS of the children and the machine's load. Every run must produce the same shards.

    .venv/bin/python scripts/bench_pipeline.py --docs 160000 --units 8 --stage quality
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
from bench_common import curate_command, json_summary, run_measured

from curate.io.output import file_checksum
from curate.sample import generate


def make_corpus(directory: Path, docs: int, units: int) -> None:
    table = generate(docs, seed=11)
    step = -(-docs // units)
    for i, start in enumerate(range(0, docs, step)):
        pq.write_table(table.slice(start, step), directory / f"part-{i:03d}.parquet")


def run(recipe: Path, work: Path, *flags: str) -> tuple[float, float, int]:
    """(seconds of the whole command, seconds inside the stage: without interpreter start and imports, peak RSS
    in KB of its largest process)."""
    done = run_measured(curate_command("run", str(recipe), "--work-dir", str(work), "--json", *flags))
    return done.seconds, json_summary(done.stdout)[0]["wall_seconds"], done.peak_rss_kb


def shards(work: Path) -> dict[str, str]:
    return {p.name: file_checksum(p) for p in sorted(work.glob("01-*/part-*.parquet"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=160_000)
    parser.add_argument("--units", type=int, default=8)
    parser.add_argument("--stage", default="quality", help="A recipe stage, e.g. quality, langid.")
    parser.add_argument("--repeat", type=int, default=1, help="Runs per configuration (best is reported).")
    parser.add_argument("--no-ray", action="store_true", help="Skip the Ray executor.")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        root = Path(tmp)
        (root / "corpus").mkdir()
        make_corpus(root / "corpus", args.docs, args.units)
        recipe = root / "recipe.yaml"
        rows = -(-args.docs // args.units)
        recipe.write_text(f"inputs: [{root / 'corpus'}]\nio: {{max_rows_per_shard: {rows}}}\n"
                          f"stages:\n  - {args.stage}: {{}}\n")
        configs = {"local, --workers 1": ["--workers", "1"], "local, --workers 2": ["--workers", "2"]}
        if not args.no_ray:
            configs["ray (local instance, 2 CPUs)"] = ["--executor", "ray", "--workers", "2"]
        best: dict[str, tuple[float, float, int]] = {}
        outputs = {}
        for attempt in range(args.repeat):
            for index, (name, flags) in enumerate(configs.items()):
                work = root / f"work-{attempt}-{index}"
                seconds = run(recipe, work, *flags)
                best[name] = min(best.get(name, seconds), seconds)
                outputs[name] = shards(work)
        assert len({tuple(o.items()) for o in outputs.values()}) == 1, "executors disagree on the output"

    load = os.getloadavg()
    peak = max(rss for _, _, rss in best.values()) / 1024
    print(f"{args.stage} on {args.docs:,} generated docs in {args.units} units; best of {args.repeat}; "
          f"load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {os.cpu_count()} CPUs; peak RSS of a child {peak:.0f} MB")
    base = best["local, --workers 1"]
    print(f"  {'executor':<30} {'command s':>9} {'stage s':>8} {'docs/s (stage)':>15} {'speed-up (cmd, stage)':>22}")
    for name, (total, stage, _) in best.items():
        print(f"  {name:<30} {total:9.2f} {stage:8.2f} {args.docs / stage:15,.0f} "
              f"{base[0] / total:10.2f}× {base[1] / stage:10.2f}×")
    if "ray (local instance, 2 CPUs)" in best:
        ray, local = best["ray (local instance, 2 CPUs)"], best["local, --workers 2"]
        print(f"  Ray overhead vs local --workers 2: {ray[0] - local[0]:+.2f} s per command "
              f"({ray[0] / local[0]:.2f}×; Ray's start included), stage {ray[1] / local[1]:.2f}×")


if __name__ == "__main__":
    main()
