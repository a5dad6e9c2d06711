"""Evidence and timings for `curate mix` (issue 5), at the full settings the tests scale down.

1. RegMix's released proxy results: fit on the 512 1M-scale runs (LightGBM gbdt, 1000 rounds, lr 0.01, seed 42,
   and linear), rank the test mixtures at 1M / 60M / 1B (Spearman ρ on Pile-CC loss), optimise (1M simulated
   mixtures, top 100) and compare with the paper's released mixture.
2. The built-in proxy on real multi-domain text: 512 proposed mixtures, proxy losses on every domain's held-out
   text, 5-fold CV ρ of the regressions; time of the statistics pass and of the 512 runs; stability of the
   ranking across held-out splits and n-gram orders; and what re-counting per run (the naive way) would cost.
3. `mix apply` on the same data: realised vs target token shares.

Usage: .venv/bin/python scripts/bench_mix.py [--data ../shared/data] [--runs 512]
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
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


def apply(data: Path) -> None:
    inputs = [str(data / "english" / "misc.parquet"), f"web={data / 'web' / 'trafilatura_pages.parquet'}",
              f"udhr={data / 'udhr' / 'paragraphs.parquet'}"]
    weights = {"web": 0.35, "udhr": 0.15, "nltk-movie_reviews": 0.2, "gensim-enwiki-wikitext": 0.15,
               "nltk-state_union": 0.05, "nltk-webtext": 0.05, "nltk-inaugural": 0.03, "allenai-cc-fixture": 0.02}
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "w.yaml").write_text(yaml.safe_dump({"weights": weights}))
        for budget in (3_000_000, 12_000_000):
            started = time.perf_counter()
            summary = apply_mixture(
                ApplyParams(weights=f"{tmp}/w.yaml", tokens=budget, domain_column="source"),
                IOOptions(inputs=inputs, output=f"{tmp}/out{budget}", quiet=True),
            )
            print(f"\n## mix apply, {budget:,} tokens: {time.perf_counter() - started:.1f}s, "
                  f"max |realised − target| {summary['max_abs_share_error']:.4f}")
            print("| domain | target | realised | epochs |")
            print("|---|---|---|---|")
            for domain, row in summary["domains"].items():
                print(f"| {domain} | {row['target']:.4f} | {row['realised']:.4f} | {row['epochs']:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parent.parent.parent / "shared" / "data")
    parser.add_argument("--runs", type=int, default=512)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}; cores: {os.cpu_count()}")
    regmix(args.data)
    proxy(args.data, args.runs)
    apply(args.data)
    print(f"\nload average after: {os.getloadavg()}; peak RSS {rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
