"""`curate mix cmr`: the CMR scaling law recovers known laws from noisy runs, ranks held-out proxy runs on real
text, predicts the critical ratio, rejects bad tables (exit 3) and writes weights `mix apply` accepts."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
import yaml
from scipy.stats import spearmanr
from typer.testing import CliRunner

from curate.cli.main import app
from curate.io.errors import UsageError
from curate.io.inputs import Columns
from curate.recipes import load_recipe, run_recipe
from curate.stages.mix.cmr import CmrParams, PowerLaw, critical_ratio, fit_cmr, fit_power
from curate.stages.mix.domains import DomainSpec, TokenCounter
from curate.stages.mix.proxy import NgramProxy, ProxyParams, build_proxy

BASE, EPS = 2.0, 0.05
TRUTH = PowerLaw(0.3, 0.25, -0.05)  # R_CMR(T) = 0.3·T^0.25 − 0.05, T in billions of tokens
RATIOS = [0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0]
BUDGETS = [250_000_000, 500_000_000, 1_000_000_000, 2_000_000_000, 5_000_000_000]  # < 6: no trajectories


def synthetic_runs(budgets=BUDGETS, ratios=RATIOS, noise=0.002, seed=0) -> pl.DataFrame:
    """Runs whose general loss reaches BASE + EPS exactly at TRUTH's critical ratio, with Gaussian noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for tokens in budgets:
        critical, gain = float(TRUTH(tokens / 1e9)), 0.02
        for r in ratios:
            general = BASE - gain + (EPS + gain) * (r / critical) ** 2
            domain = 1.5 + 0.1 * r**-0.5 * (tokens / 1e9) ** -0.1
            rows.append((r, tokens, general + rng.normal(0, noise), domain + rng.normal(0, noise)))
    return pl.DataFrame(rows, schema=["ratio", "tokens", "general", "domain"], orient="row")


def test_fit_power_recovers_known_parameters_from_noisy_points():
    rng = np.random.default_rng(1)
    x = np.linspace(0.05, 1.0, 20)
    for truth in (PowerLaw(0.12, -0.6, 1.45), PowerLaw(0.4, 2.3, 2.1), PowerLaw(-0.5, 0.7, 3.0)):
        fitted = fit_power(x, truth(x) + rng.normal(0, 5e-4, len(x)))
        assert fitted.s == pytest.approx(truth.s, abs=0.06)
        assert fitted.alpha == pytest.approx(truth.alpha, rel=0.08)
        assert fitted.beta == pytest.approx(truth.beta, abs=0.01)
        assert fitted.r2 > 0.999
    again = fit_power(x, PowerLaw(0.4, 2.3, 2.1)(x) + np.random.default_rng(1).normal(0, 5e-4, len(x)))
    assert again == fit_power(x, PowerLaw(0.4, 2.3, 2.1)(x) + np.random.default_rng(1).normal(0, 5e-4, len(x)))


def test_scaling_law_and_critical_ratio_match_the_generating_law():
    model = fit_cmr(synthetic_runs(), CmrParams(domain="d", general_loss="g", base_loss=BASE, tolerance=EPS),
                    {"g": 1.0})
    for fit in model.budgets:  # per budget: the tolerance crossing of the fitted loss-vs-ratio law
        assert fit.critical == pytest.approx(float(TRUTH(fit.tokens / 1e9)), abs=0.005)
        assert fit.general.s == pytest.approx(2.0, abs=0.1)
    assert model.scaling is not None  # Eq. 8 across the five budgets, parameters recovered
    assert model.scaling.s == pytest.approx(TRUTH.s, abs=0.03)
    assert model.scaling.alpha == pytest.approx(TRUTH.alpha, rel=0.05)
    assert model.scaling.beta == pytest.approx(TRUTH.beta, abs=0.02)
    for tokens in (3_000_000_000, 12_500_000_000):  # between the budgets, and extrapolated 2.5× past them
        ratio, how = model.critical_at(tokens)
        assert how == "tolerance, scaling law (Eq. 8)"
        assert ratio == pytest.approx(float(TRUTH(tokens / 1e9)), abs=0.01)
    weights = model.weights(0.3)
    assert weights == {"d": 0.3, "g": pytest.approx(0.7)}


def test_one_budget_predicts_only_that_budget():
    runs = synthetic_runs(budgets=[1_000_000_000])
    model = fit_cmr(runs, CmrParams(domain="d", general_loss="g", base_loss=BASE), {"g": 1.0})
    assert model.scaling is None
    assert model.critical_at(1_000_000_000)[0] == pytest.approx(0.25, abs=0.005)
    with pytest.raises(UsageError, match="3 or more token budgets"):
        model.critical_at(2_000_000_000)


def test_published_table5_parameters_give_the_published_critical_ratios():
    """Eq. 8 with the paper's fitted parameters (T in 0.2B tokens) read at T_max = 20B: 29.8, 34.9, 41.4, 47.8%."""
    table5 = {29.8: (0.22524761, 0.26944345, -0.48139982), 34.9: (0.7520627, 0.13720245, -1.06581937),
              41.4: (-2.36384831, -0.15125569, 1.59223649), 47.8: (-2.5368197, -0.42071423, 0.84375368)}
    for published, (alpha, s, beta) in table5.items():
        in_billions = PowerLaw(alpha * 0.2 ** (-s), s, beta)  # the same law with T in 1e9 tokens
        assert 100 * float(in_billions(20.0)) == pytest.approx(published, abs=0.05)


def test_critical_ratio_edges():
    rising = PowerLaw(0.1, 2.0, 2.0)
    assert critical_ratio(rising, 2.2) == 1.0  # even all-domain stays within the tolerance
    assert critical_ratio(rising, 1.9) == 0.0  # no share does
    assert critical_ratio(rising, 2.025) == pytest.approx(0.5)


CHECKPOINTS = [0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0]  # billions of tokens


def trajectory_runs(ratios=(0.15, 0.2, 0.25, 0.3, 0.35), noise=3e-4, seed=4) -> pl.DataFrame:
    """Checkpoints of one run per ratio whose general loss rises, then falls, turning (Eq. 7 with λ → ∞) at
    the T where TRUTH gives that ratio: 2 − a/T + 0.02/√T turns at T₀ = (2a/0.02)²."""
    rng = np.random.default_rng(seed)
    rows = []
    for r in ratios:
        turning = ((r - TRUTH.beta) / TRUTH.alpha) ** (1 / TRUTH.s)
        a = 0.02 * np.sqrt(turning) / 2
        for t in CHECKPOINTS:
            general = 2.0 - a / t + 0.02 / np.sqrt(t) + rng.normal(0, noise)
            domain = 1.5 + 0.1 * r**-0.5 * t**-0.3 + rng.normal(0, noise)
            rows.append((r, round(t * 1e9), general, domain))
    return pl.DataFrame(rows, schema=["ratio", "tokens", "general", "domain"], orient="row")


def test_turning_points_give_the_feasible_ratios_and_their_scaling_law():
    params = CmrParams(domain="d", general_loss="g", domain_loss="dl", base_loss=2.0, tolerance=10)
    model = fit_cmr(trajectory_runs(), params, {"g": 1.0})
    assert [t.ratio for t in model.trajectories] == [0.15, 0.2, 0.25, 0.3, 0.35]
    for t in model.trajectories:  # T₀ of each run's fitted Eq. 6 against the generating one
        assert t.turning == pytest.approx(((t.ratio - TRUTH.beta) / TRUTH.alpha) ** (1 / TRUTH.s), rel=0.1)
        assert t.general.r2 > 0.99
    assert model.feasible_scaling is not None and model.feasible_scaling.s == pytest.approx(TRUTH.s, abs=0.05)
    ratio, how = model.critical_at(1_500_000_000)  # the tolerance (10) does not bind: 𝔽 does
    assert how == "feasibility, scaling law (Eq. 8) through the turning points"
    assert ratio == pytest.approx(float(TRUTH(1.5)), abs=0.015)
    assert model.tolerable_at(1_500_000_000)[0] == 1.0
    # a finite λ lets the falling domain loss pay for a slowly rising general loss: every run turns earlier
    weighted = fit_cmr(trajectory_runs(), CmrParams(**{**vars(params), "lagrange": 20.0}), {"g": 1.0})
    assert all(w.turning < t.turning for w, t in zip(weighted.trajectories, model.trajectories, strict=True))
    with pytest.raises(UsageError, match="needs --domain-loss"):
        fit_cmr(trajectory_runs().drop("domain"), CmrParams(domain="d", general_loss="g", base_loss=2, lagrange=20),
                {"g": 1.0})


def test_fitted_curves_rank_held_out_synthetic_runs():
    runs = synthetic_runs(ratios=np.linspace(0.05, 1.0, 20).tolist(), noise=0.003, seed=3)
    held = runs.filter(pl.int_range(pl.len()) % 4 == 1)
    train = runs.filter(pl.int_range(pl.len()) % 4 != 1)
    model = fit_cmr(train, CmrParams(domain="d", general_loss="g", domain_loss="dl", base_loss=BASE), {"g": 1.0})
    for which in ("general", "domain"):
        predicted = np.concatenate([model.predict_loss(group["ratio"].to_numpy(), tokens, which)
                                    for (tokens,), group in held.group_by("tokens", maintain_order=True)])
        actual = np.concatenate([group[which].to_numpy() for _, group in held.group_by("tokens", maintain_order=True)])
        assert spearmanr(predicted, actual)[0] > 0.97


def real_domains(data, folder, pages: int, reviews: int) -> list[str]:
    """name=path inputs: the first web pages, Wikipedia articles (all 106), the first movie reviews."""
    pq.write_table(pq.read_table(data / "web" / "trafilatura_pages.parquet", columns=["id", "text"]).slice(0, pages),
                   folder / "web.parquet")
    misc = pl.read_parquet(data / "english" / "misc.parquet", columns=["id", "text", "source"])
    for name, source, n in (("wiki", "gensim-enwiki-wikitext", None), ("reviews", "nltk-movie_reviews", reviews)):
        part = misc.filter(pl.col("source") == source).drop("source")
        (part.head(n) if n else part).write_parquet(folder / f"{name}.parquet")
    return [f"{d}={folder / d}.parquet" for d in ("web", "wiki", "reviews")]


@pytest.fixture(scope="module")
def proxy_runs(shared_data, tmp_path_factory) -> pl.DataFrame:
    """Built-in proxy runs on real text: Wikipedia + movie reviews as general data, 600 web pages as the new
    domain, at 4 budgets × 11 web shares up to 0.75 (past that the n-gram proxy's web loss turns up again)."""
    spec = DomainSpec.parse(real_domains(shared_data, tmp_path_factory.mktemp("domains"), 600, 1000), None)
    proxy, _ = build_proxy(spec, Columns("text"), TokenCounter(None),
                           ProxyParams(targets=["web", "wiki"], valid_bytes=40_000), 10_000)
    general = ["wiki", "reviews"]
    ratios = np.linspace(0.0, 0.75, 11)
    weights = np.zeros((len(ratios), len(proxy.domains)))
    weights[:, proxy.domains.index("web")] = ratios
    for g in general:
        weights[:, proxy.domains.index(g)] = (1 - ratios) / len(general)
    rows = []
    for budget in (50_000, 100_000, 200_000, 400_000):
        scorer = NgramProxy(proxy.domains, proxy.train_tokens, proxy.targets, ProxyParams(token_budget=budget))
        for r, (web, wiki, _mean) in zip(ratios, scorer.losses(weights), strict=True):
            rows.append((float(r), budget, float(wiki), float(web)))
    return pl.DataFrame(rows, schema=["ratio", "tokens", "general", "domain"], orient="row")


def test_fitted_curves_rank_held_out_proxy_runs_on_real_text(proxy_runs):
    trained = proxy_runs.filter(pl.col("ratio") > 0)
    # more web in the mix: general (Wikipedia) loss up, web loss down
    assert all(spearmanr(g["ratio"], g["general"])[0] > 0.95 for _, g in trained.group_by("tokens"))
    assert all(spearmanr(g["ratio"], g["domain"])[0] < -0.95 for _, g in trained.group_by("tokens"))
    held = pl.int_range(pl.len()).over("tokens") % 3 == 2
    model = fit_cmr(proxy_runs.filter(~held), CmrParams(domain="web", general_loss="g", domain_loss="w", base_loss=0),
                    {"g": 1.0})
    for which in ("general", "domain"):
        for (tokens,), group in proxy_runs.filter(held).group_by("tokens", maintain_order=True):
            predicted = model.predict_loss(group["ratio"].to_numpy(), tokens, which)
            assert spearmanr(predicted, group[which])[0] == pytest.approx(1.0)
            assert np.abs(predicted / group[which].to_numpy() - 1).max() < 0.01


def test_critical_ratio_on_proxy_runs_lies_where_the_runs_cross_the_tolerance(proxy_runs):
    """Base loss: the general-only run's at each budget; the runs on either side of base + ε bracket the ratio."""
    for (tokens,), runs in proxy_runs.group_by("tokens", maintain_order=True):
        base = float(runs.filter(pl.col("ratio") == 0)["general"][0])
        model = fit_cmr(runs, CmrParams(domain="web", general_loss="g", base_loss=base, tolerance=EPS), {"g": 1.0})
        critical = model.critical_at(tokens)[0]
        within = runs.filter(pl.col("general") <= base + EPS)["ratio"]
        beyond = runs.filter(pl.col("general") > base + EPS)["ratio"]
        assert within.max() <= critical <= beyond.min(), (tokens, critical)
        assert 0.3 < critical < 0.75


def _write(tmp_path, runs: pl.DataFrame, general=("wiki", "reviews")) -> tuple[str, str]:
    """A mixtures CSV (domain 'web' + general columns splitting the rest 3:1) and a results CSV."""
    index = np.arange(runs.height) + 10
    mixtures = pl.DataFrame({"index": index, "web": runs["ratio"], general[0]: (1 - runs["ratio"]) * 0.75,
                             general[1]: (1 - runs["ratio"]) * 0.25})
    results = pl.DataFrame({"index": index, "tokens": runs["tokens"], "loss/general": runs["general"],
                            "loss/web": runs["domain"]})
    mixtures.write_csv(tmp_path / "mixtures.csv")
    results.write_csv(tmp_path / "results.csv")
    return str(tmp_path / "mixtures.csv"), str(tmp_path / "results.csv")


def _cmr(*args: str):
    return CliRunner().invoke(app, ["mix", "cmr", *args, "--json"])


def test_cli_and_recipe_write_weights_that_mix_apply_realises(shared_data, tmp_path):
    mixtures, results = _write(tmp_path, synthetic_runs())
    out = _cmr("--mixtures", mixtures, "--results", results, "--domain", "web", "--general-loss", "loss/general",
               "--domain-loss", "loss/web", "--base-loss", str(BASE), "--budget", "12500000000",
               "-o", str(tmp_path / "weights.yaml"))
    assert out.exit_code == 0, out.output
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["critical_ratio"] == pytest.approx(float(TRUTH(12.5)), abs=0.01)
    document = yaml.safe_load((tmp_path / "weights.yaml").read_text())
    assert document["weights"]["web"] == pytest.approx(summary["critical_ratio"], abs=1e-6)
    assert document["weights"]["wiki"] == pytest.approx(3 * document["weights"]["reviews"], rel=1e-4)
    assert len(document["budgets"]) == 5 and document["scaling_law"]["tokens_unit"] == 1e9

    # a recipe: the same tool step, then `mix apply` on real text (one file, domains in a `source` column)
    (tmp_path / "tiny").mkdir()  # 150 web pages, 106 Wikipedia articles, 150 movie reviews
    pl.concat([pl.read_parquet(path.split("=", 1)[1]).with_columns(source=pl.lit(path.split("=", 1)[0]))
               for path in real_domains(shared_data, tmp_path / "tiny", 150, 150)]).write_parquet(tmp_path / "tiny.parquet")
    recipe = tmp_path / "cmr.yaml"
    recipe.write_text(yaml.safe_dump({"inputs": [str(tmp_path / "tiny.parquet")], "work_dir": str(tmp_path / "run"),
                                      "stages": [
        {"mix-cmr": {"mixtures": mixtures, "results": results, "domain": "web", "general_loss": "loss/general",
                     "base_loss": BASE, "budget": 12_500_000_000, "output": "${work_dir}/weights.yaml"}},
        {"mix-apply": {"domain_column": "source", "weights": "${work_dir}/weights.yaml", "tokens": 200_000}}]}))
    tool, applied = run_recipe(load_recipe(recipe, io_overrides={"quiet": True}))
    assert tool["critical_ratio"] == summary["critical_ratio"]
    assert applied["domains"]["web"]["realised"] == pytest.approx(summary["critical_ratio"], abs=0.03)
    assert applied["domains"]["wiki"]["realised"] == pytest.approx(0.75 * (1 - summary["critical_ratio"]), abs=0.03)


def _set(column: str, row: int, value) -> callable:
    """Edit one cell of a results table (as text, so any value fits)."""
    return lambda r: r.with_columns(pl.when(pl.int_range(pl.len()) == row).then(pl.lit(value, pl.String))
                                    .otherwise(pl.col(column).cast(pl.String)).alias(column))


@pytest.mark.parametrize(("edit", "message"), [
    (_set("loss/general", 4, "n/a"), "column 'loss/general': expected numbers"),
    (_set("loss/general", 4, None), "row 6, column 'loss/general': missing or non-finite"),
    (_set("loss/general", 4, "inf"), "row 6, column 'loss/general': missing or non-finite"),
    (lambda r: r.drop("tokens"), "column 'tokens': no tokens column"),
    (_set("tokens", 2, "-5"), "row 4, column 'tokens': tokens must be whole numbers"),
    (_set("index", 3, "999"), "row 5, column 'index': index 999 is not in"),
    (lambda r: r.drop("index"), "no 'index' column"),
])
def test_bad_results_csv_exits_3_naming_file_and_column(tmp_path, edit, message):
    mixtures, results = _write(tmp_path, synthetic_runs(budgets=BUDGETS[:3]))
    edit(pl.read_csv(results)).write_csv(results)
    out = _cmr("--mixtures", mixtures, "--results", results, "--domain", "web", "--general-loss", "loss/general",
               "--base-loss", "2.0", "-o", str(tmp_path / "w.yaml"))
    assert out.exit_code == 3, out.output
    assert results in out.output and message in out.output
    assert not (tmp_path / "w.yaml").exists()


def test_bad_mixtures_and_usage_errors(tmp_path):
    mixtures, results = _write(tmp_path, synthetic_runs(budgets=BUDGETS[:3]))
    frame = pl.read_csv(mixtures)
    frame.with_columns((pl.col("wiki") + 0.5).alias("wiki")).write_csv(tmp_path / "bad.csv")
    args = ["--results", results, "--general-loss", "loss/general", "--base-loss", "2.0", "-o", str(tmp_path / "w.yaml")]
    out = _cmr("--mixtures", str(tmp_path / "bad.csv"), "--domain", "web", *args)
    assert out.exit_code == 3 and "bad.csv, row 2" in out.output and "sum to 1" in out.output
    out = _cmr("--mixtures", mixtures, "--domain", "finance", *args)  # a flag naming no column: usage (2)
    assert out.exit_code == 2 and "no domain column 'finance'" in out.output
    out = _cmr("--mixtures", mixtures, "--domain", "web", *args[:-4], "-o", str(tmp_path / "w.yaml"))
    assert out.exit_code == 2 and "--base-loss" in out.output  # no base loss and no 0-token runs
    mixtures, results = _write(tmp_path, synthetic_runs(budgets=BUDGETS[:2]))
    out = _cmr("--mixtures", mixtures, "--domain", "web", *args, "--budget", "123")
    assert out.exit_code == 2 and "3 or more token budgets" in out.output
    out = _cmr("--mixtures", mixtures, "--domain", "web", *args)  # the largest budget of the runs
    assert out.exit_code == 0 and json.loads(out.stdout.strip().splitlines()[-1])["method"] == "tolerance, runs at this budget"


def test_results_without_tokens_take_run_tokens(tmp_path):
    """`mix proxy` writes no tokens column: --run-tokens gives every run's budget."""
    mixtures, results = _write(tmp_path, synthetic_runs(budgets=[1_000_000_000]))
    pl.read_csv(results).drop("tokens").write_csv(results)
    out = _cmr("--mixtures", mixtures, "--results", results, "--domain", "web", "--general-loss", "loss/general",
               "--base-loss", str(BASE), "--run-tokens", "1000000000", "-o", str(tmp_path / "w.yaml"))
    assert out.exit_code == 0, out.output
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["budget"] == 1_000_000_000 and summary["critical_ratio"] == pytest.approx(0.25, abs=0.005)
