"""Evidence and timings for `curate mix`, at the full settings the tests scale down.

1. RegMix's released proxy results: fit on the 512 1M-scale runs (LightGBM gbdt, 1000 rounds, lr 0.01, seed 42,
   and linear), rank the test mixtures at 1M / 60M / 1B (Spearman ρ on Pile-CC loss), optimise (1M simulated
   mixtures, top 100) and compare with the paper's released mixture.
2. The built-in proxy on real multi-domain text: 512 proposed mixtures, proxy losses on every domain's held-out
   text, 5-fold CV ρ of the regressions; time of the statistics pass and of the 512 runs; stability of the
   ranking across held-out splits and n-gram orders; and what re-counting per run (the naive way) would cost.
3. `mix apply` on the same data: realised vs target token shares.
4. `mix apply` as a command at --workers 1 and --workers 2 (both passes; same output): seconds, speed-up, peak
   RSS of the largest process; `--copies N` repeats the inputs N times for a larger corpus.

Usage: .venv/bin/python scripts/bench_mix.py [--data ../shared/data] [--runs 512]
       .venv/bin/python scripts/bench_mix.py --apply-only [--copies 1] [--max-rows-per-shard 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import yaml
from scipy.stats import spearmanr

from curate.io.inputs import Columns
from curate.io.options import IOOptions
from curate.stages.mix.apply import ApplyParams, apply_mixture
from curate.stages.mix.domains import DomainSpec, TokenCounter
from curate.stages.mix.optimize import OptimizeParams, optimize
from curate.stages.mix.propose import epoch_caps, propose, temperature_prior
from curate.stages.mix.proxy import ProxyParams, build_proxy
from curate.stages.mix.regression import FitParams, fit
from curate.stages.mix.tables import join_target

TARGET = "metric/the_pile_pile_cc_val_loss"
WEIGHTS = {"web": 0.35, "udhr": 0.15, "nltk-movie_reviews": 0.2, "gensim-enwiki-wikitext": 0.15,
           "nltk-state_union": 0.05, "nltk-webtext": 0.05, "nltk-inaugural": 0.03, "allenai-cc-fixture": 0.02}
_MEASURE = (  # runs a command; prints its stdout, then the peak RSS (kB) of the largest process it started
    "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
    "print(r.stdout.strip()); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)"
)
PAPER = {"1m": (98.45, 90.08), "60m": (98.64, 89.26), "1B": (97.12, 88.01)}


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def regmix(data: Path) -> None:
    folder = data / "regmix"
    _, domains, x, y = join_target(folder / "train_mixture_1m.csv", folder / "train_pile_loss_1m.csv", TARGET)
    started = time.perf_counter()
    model = fit(x, y, domains, FitParams(target=TARGET))
    print(f"## RegMix data: fit + 5-fold CV on {len(y)} runs: {time.perf_counter() - started:.1f}s")
    print(f"CV on the train runs: lightgbm ρ {model.cv['lightgbm']['spearman']:.4f}, "
          f"linear ρ {model.cv['linear']['spearman']:.4f}")
    print("| scale | test runs | LightGBM ρ×100 | linear ρ×100 | paper LightGBM | paper linear |")
    print("|---|---|---|---|---|---|")
    for scale, (paper_lgb, paper_lin) in PAPER.items():
        _, _, xt, yt = join_target(folder / f"test_mixture_{scale}.csv", folder / f"test_pile_loss_{scale}.csv", TARGET)
        rho_lgb = 100 * spearmanr(model.predict(xt, "lightgbm"), yt)[0]
        rho_lin = 100 * spearmanr(model.predict(xt, "linear"), yt)[0]
        print(f"| {scale} | {len(yt)} | {rho_lgb:.2f} | {rho_lin:.2f} | {paper_lgb} | {paper_lin} |")
    for params in (OptimizeParams(), OptimizeParams(n_sim=100_000, top_k=128, concentration=1.0)):
        started = time.perf_counter()
        result = optimize(model, params)
        top = sorted(zip(domains, result.weights, strict=True), key=lambda kv: -kv[1])[:5]
        shown = ", ".join(f"{d.removeprefix('train_the_pile_')} {w:.3f}" for d, w in top)
        print(f"optimize n_sim={params.n_sim:,} top_k={params.top_k} concentration={params.concentration}: "
              f"{time.perf_counter() - started:.1f}s → {shown}")
    print("paper's released 1B mixture: pile_cc 0.870, ubuntu_irc 0.064, pubmed_abstracts 0.024, wikipedia 0.016")


def proxy(data: Path, runs: int) -> None:
    inputs = [str(data / "english" / "misc.parquet"), f"web={data / 'web' / 'trafilatura_pages.parquet'}",
              f"udhr={data / 'udhr' / 'paragraphs.parquet'}"]
    spec = DomainSpec.parse(inputs, "source")
    started = time.perf_counter()
    built, stats = build_proxy(spec, Columns(), TokenCounter(), ProxyParams())
    build_s = time.perf_counter() - started
    tokens = stats.tokens(built.domains)
    mixtures = propose(temperature_prior(tokens, 0.5), epoch_caps(tokens, None, 4), runs, seed=1)
    started = time.perf_counter()
    losses = built.losses(mixtures)
    score_s = time.perf_counter() - started
    print(f"\n## Built-in proxy: {len(built.domains)} domains, {tokens.sum():,.0f} training tokens (bytes/4), "
          f"{len(built.targets)} targets")
    print(f"statistics pass (once): {build_s:.1f}s; {runs} proxy runs × {len(built.targets)} targets: {score_s:.1f}s "
          f"({1000 * score_s / runs:.1f} ms/run); total {build_s + score_s:.1f}s; peak RSS {rss_mb():.0f} MB")
    print(f"re-counting per run (the naive way) would take ≈ {runs} × {build_s:.1f}s = {runs * build_s / 60:.0f} min "
          f"(×{runs * build_s / (build_s + score_s):.0f})")
    print("| target | bpb min | bpb max | LightGBM CV ρ | linear CV ρ |")
    print("|---|---|---|---|---|")
    for j, column in enumerate(built.columns):
        model = fit(mixtures, losses[:, j], built.domains, FitParams(target=column))
        print(f"| {column} | {losses[:, j].min():.3f} | {losses[:, j].max():.3f} | "
              f"{model.cv['lightgbm']['spearman']:.4f} | {model.cv['linear']['spearman']:.4f} |")
    for label, params in (("held-out split seed 1", ProxyParams(seed=1)), ("order 3", ProxyParams(order=3)),
                          ("smoothing 4", ProxyParams(smoothing=4.0))):
        other, _ = build_proxy(spec, Columns(), TokenCounter(), params)
        shared = [t for t in built.targets if t in other.targets]
        again = other.losses(mixtures[:, [built.domains.index(d) for d in other.domains]])
        rhos = [spearmanr(losses[:, built.columns.index("bpb/" + t)], again[:, other.columns.index("bpb/" + t)])[0]
                for t in shared]
        each = ", ".join(f"{t} {r:.3f}" for t, r in zip(shared, rhos, strict=True))
        print(f"ranking agreement with {label}: median ρ {np.median(rhos):.3f} ({each})")


def _inputs(data: Path) -> list[str]:
    return [str(data / "english" / "misc.parquet"), f"web={data / 'web' / 'trafilatura_pages.parquet'}",
            f"udhr={data / 'udhr' / 'paragraphs.parquet'}"]


def apply(data: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "w.yaml").write_text(yaml.safe_dump({"weights": WEIGHTS}))
        for budget in (3_000_000, 12_000_000):
            started = time.perf_counter()
            summary = apply_mixture(
                ApplyParams(weights=f"{tmp}/w.yaml", tokens=budget, domain_column="source"),
                IOOptions(inputs=_inputs(data), output=f"{tmp}/out{budget}", quiet=True),
            )
            print(f"\n## mix apply, {budget:,} tokens: {time.perf_counter() - started:.1f}s, "
                  f"max |realised − target| {summary['max_abs_share_error']:.4f}")
            print("| domain | target | realised | epochs |")
            print("|---|---|---|---|")
            for domain, row in summary["domains"].items():
                print(f"| {domain} | {row['target']:.4f} | {row['realised']:.4f} | {row['epochs']:.3f} |")


def _copies(data: Path, folder: Path, copies: int) -> list[str]:
    """The three inputs, each repeated ``copies`` times (ids made unique per copy) under ``folder``."""
    if copies == 1:
        return _inputs(data)
    import pyarrow as pa
    import pyarrow.compute as pc

    specs = []
    for spec in _inputs(data):
        name, _, path = spec.rpartition("=")
        table = pq.read_table(path)
        copy = folder / (name or "english")
        copy.mkdir()
        for i in range(copies):
            ids = pc.binary_join_element_wise(table.column("id").cast(pa.string()), pa.scalar(f"#{i}"), "")
            pq.write_table(table.set_column(table.schema.get_field_index("id"), "id", ids), copy / f"{i:04d}.parquet")
        specs.append(f"{name}={copy}" if name else str(copy))
    return specs


def apply_workers(data: Path, copies: int, max_rows: int, budget: int) -> None:
    """The whole command (both passes, process start included) at --workers 1 and 2: same shards, time, RSS."""
    with tempfile.TemporaryDirectory() as tmp:
        inputs = _copies(data, Path(tmp), copies)
        Path(tmp, "w.yaml").write_text(yaml.safe_dump({"weights": WEIGHTS}))
        print(f"\n## mix apply command: {copies} cop{'y' if copies == 1 else 'ies'} of the 9 domains, "
              f"--tokens {budget:,}, --max-rows-per-shard {max_rows:,}; load {os.getloadavg()[0]:.2f}, "
              f"{os.cpu_count()} CPUs")
        print("| --workers | wall s | stats pass s | apply pass s | units | unit s (sum) | peak RSS (largest process) "
              "| speed-up |")
        print("|---|---|---|---|---|---|---|---|")
        results = {}
        for workers in (1, 2):
            out = Path(tmp, f"out-{workers}")
            command = [sys.executable, "-m", "curate", "mix", "apply", *inputs, "--domain-column", "source",
                       "-o", str(out), "--weights", f"{tmp}/w.yaml", "--tokens", str(budget),
                       "--max-rows-per-shard", str(max_rows), "--workers", str(workers), "--json", "-q"]
            started = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", _MEASURE, *command], capture_output=True, text=True,
                                  check=True)
            wall = time.perf_counter() - started
            *summary_lines, peak_kb = done.stdout.strip().splitlines()
            summary = json.loads(summary_lines[-1])
            shards = json.loads((out / "_manifest.json").read_text())["shards"]
            results[workers] = (wall, shards)
            print(f"| {workers} | {wall:.1f} | {summary['stats']['wall_seconds']:.1f} | "
                  f"{summary['wall_seconds'] - summary['stats']['wall_seconds']:.1f} | {summary['units']} | "
                  f"{summary['stats']['seconds'] + summary['seconds']:.1f} | "
                  f"{int(peak_kb) / 1024:.0f} MB | {results[1][0] / wall:.2f}× |")
        assert results[1][1] == results[2][1], "--workers 2 wrote other shards than --workers 1"
        print(f"same shards at --workers 1 and 2; load after {os.getloadavg()[0]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parent.parent.parent / "shared" / "data")
    parser.add_argument("--runs", type=int, default=512)
    parser.add_argument("--apply-only", action="store_true", help="Only the mix apply command at --workers 1 and 2.")
    parser.add_argument("--copies", type=int, default=1, help="Repeat the inputs this many times (mix apply command).")
    parser.add_argument("--max-rows-per-shard", type=int, default=10_000)
    parser.add_argument("--tokens", type=int, default=3_000_000)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}; cores: {os.cpu_count()}")
    if not args.apply_only:
        regmix(args.data)
        proxy(args.data, args.runs)
        apply(args.data)
    apply_workers(args.data, args.copies, args.max_rows_per_shard, args.tokens * args.copies)
    print(f"\nload average after: {os.getloadavg()}; peak RSS {rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
