"""The CMR scaling law (Gu et al. 2024, "CMR Scaling Law: Predicting Critical Mixture Ratios for Continual
Pre-training of Language Models", arXiv:2407.17467): how large a share of new-domain data a continual
pre-training mix can take before the general loss rises by more than a tolerance ε.

From proxy runs (a mixture, a token budget, the general and domain losses after training):

1. at each token budget T, fit the paper's loss-vs-ratio law (its Sec. 5.1) ``L(R) = α·R^s + β`` to the
   general loss (and to the domain loss), over the runs with a domain share R in (0, 1];
2. the critical ratio at T is the largest R in [0, 1] with ``L_gen(R) ≤ L_gen(base) + ε`` (the paper's set 𝔸,
   Eq. 1 and Definition 3; ε = 0.05);
3. across budgets, fit the CMR scaling law (Eq. 8) ``R_CMR(T) = α₄·T^s₄ + β₃`` and read it at the budget asked
   for. With fewer than three budgets, the budget asked for must be one of the runs'.

Every fit is a least-squares fit of the same three-parameter form, deterministic: a grid of exponents (α and β
solved exactly for each), then scipy's bounded least squares from the best few.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import yaml
from scipy.optimize import brentq, least_squares

from curate.io.errors import InputError, UsageError
from curate.io.output import write_text_atomic
from curate.params import option
from curate.stages.mix.tables import INDEX, read_mixtures, read_table

TOKENS_UNIT = 1e9  # the scaling law's T is in billions of tokens (the paper's unit is 0.2B: α₄ differs by 0.2^s₄)
EXPONENTS = np.round(np.arange(-4.0, 4.0001, 0.05), 2)  # the grid of starting exponents; 0 is a constant
BOUNDS = (-6.0, 6.0)  # the exponent's range in the refinement
STARTS = 4  # refinements from the best grid exponents


@dataclass
class CmrParams:
    domain: str = option("", "Mixtures column of the new domain (its weight is the ratio R); every other column is "
                         "general data.", required=True)
    general_loss: str = option("", "Results column: each run's loss on general validation text.", required=True)
    domain_loss: str | None = option(None, "Results column: loss on domain validation text (fitted and reported).")
    tolerance: float = option(0.05, "ε: how far the general loss may rise above --base-loss (the paper: 0.05).")
    base_loss: float | None = option(
        None, "General loss before continual pre-training (default: mean over the runs with 0 tokens).")
    budget: int | None = option(None, "Token budget to predict the critical ratio for (default: the runs' largest).")
    tokens_column: str = option("tokens", "Results column: each run's training tokens.")
    run_tokens: int | None = option(
        None, "Tokens of every run, when the results have no tokens column (the --token-budget given to mix proxy).")


@dataclass(frozen=True)
class PowerLaw:
    """``y = alpha · x^s + beta`` with its fit quality (the paper reports MSE and R²)."""

    alpha: float
    s: float
    beta: float
    mse: float = 0.0
    r2: float = 1.0

    def __call__(self, x: np.ndarray | float) -> np.ndarray:
        return self.alpha * np.power(np.asarray(x, dtype=np.float64), self.s) + self.beta

    def to_dict(self) -> dict:
        return {k: float(f"{v:.6g}") for k, v in vars(self).items()}


def fit_power(x: np.ndarray, y: np.ndarray) -> PowerLaw:
    """Least-squares ``y = α·x^s + β`` for x > 0: exponent grid, then refinement from the best starts."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(np.unique(x)) < 3:
        raise UsageError(f"a power law needs at least 3 distinct x values, got {len(np.unique(x))}")
    scale = float(np.exp(np.log(x).mean()))  # fit on x / scale (near 1) for conditioning
    u = x / scale

    def solve(s: float) -> tuple[float, float, float]:
        design = np.c_[u**s, np.ones_like(u)]
        (a, b), *_ = np.linalg.lstsq(design, y, rcond=None)
        return float(a), float(b), float(np.sum((design @ (a, b) - y) ** 2))

    grid = sorted(((solve(s)[2], s) for s in EXPONENTS if s != 0), key=lambda pair: (pair[0], abs(pair[1])))
    best: tuple[float, float, float, float] | None = None  # (sse, alpha on u, s, beta)
    for _, s0 in grid[:STARTS]:
        a0, b0, _ = solve(s0)
        result = least_squares(lambda p: p[0] * u ** p[1] + p[2] - y, (a0, s0, b0), method="trf",
                               bounds=([-np.inf, BOUNDS[0], -np.inf], [np.inf, BOUNDS[1], np.inf]), x_scale="jac")
        sse = float(np.sum(result.fun**2))
        if best is None or sse < best[0] - 1e-15:
            best = (sse, *map(float, result.x))
    assert best is not None
    sse, a, s, b = best
    total = float(np.sum((y - y.mean()) ** 2))
    return PowerLaw(a * scale ** (-s), s, b, sse / len(y), 1.0 - sse / total if total > 0 else 1.0)


def critical_ratio(general: PowerLaw, limit: float) -> float:
    """Largest R in [0, 1] with ``general(R) ≤ limit`` (the law is monotone in R): 0 when none is."""
    low = 1e-9
    if general(1.0) <= limit:
        return 1.0
    if general(low) > limit:
        return 0.0
    return float(brentq(lambda r: general(r) - limit, low, 1.0, xtol=1e-12))


@dataclass
class BudgetFit:
    tokens: int
    runs: int
    general: PowerLaw
    domain: PowerLaw | None
    critical: float


@dataclass
class CmrModel:
    """Loss-vs-ratio laws per token budget, the critical ratio at each, and the CMR scaling law across them."""

    domain: str
    general_share: dict[str, float]  # how the general part splits over the other mixture columns
    base_loss: float
    tolerance: float
    budgets: list[BudgetFit]
    scaling: PowerLaw | None  # Eq. 8 over T in billions of tokens; None with fewer than 3 usable budgets

    def at(self, tokens: int) -> BudgetFit:
        for fit in self.budgets:
            if fit.tokens == tokens:
                return fit
        raise UsageError(f"no runs at {tokens:,} tokens; budgets are {', '.join(f'{b.tokens:,}' for b in self.budgets)}")

    def predict_loss(self, ratio: np.ndarray, tokens: int, which: str = "general") -> np.ndarray:
        """The fitted loss of runs with domain share ``ratio`` at one of the runs' budgets."""
        law = self.at(tokens).general if which == "general" else self.at(tokens).domain
        if law is None:
            raise UsageError("no domain loss was fitted (give --domain-loss)")
        return law(ratio)

    def critical_at(self, tokens: int) -> tuple[float, str]:
        """The critical ratio for a budget and how it was obtained (the scaling law, or that budget's runs)."""
        if self.scaling is not None:
            return float(np.clip(self.scaling(tokens / TOKENS_UNIT), 0.0, 1.0)), "scaling law (Eq. 8)"
        known = [b.tokens for b in self.budgets]
        if tokens not in known:
            raise UsageError(
                f"--budget {tokens:,}: the CMR scaling law needs runs at 3 or more token budgets whose critical "
                f"ratio lies inside (0, 1); these runs allow only --budget {' or '.join(f'{t}' for t in known)}")
        return self.at(tokens).critical, "runs at this budget"

    def weights(self, ratio: float) -> dict[str, float]:
        return {self.domain: ratio, **{d: (1.0 - ratio) * w for d, w in self.general_share.items()}}


def _column(frame: pl.DataFrame, name: str, path: str, flag: str) -> np.ndarray:
    """A numeric results column without missing values (missing column: usage error, like `mix fit --target`)."""
    if name not in frame.columns:
        others = ", ".join(c for c in frame.columns if c != INDEX)
        raise UsageError(f"{path}: no column '{name}' ({flag}); columns are: {others}")
    values = frame[name].cast(pl.Float64).to_numpy()
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise InputError(path, "missing or non-finite value", row=int(bad[0]) + 2, column=name)
    return values


def load_runs(mixtures: str, results: str, params: CmrParams) -> tuple[pl.DataFrame, dict[str, float]]:
    """Runs (ratio, tokens, losses) joined on ``index``, and the general part's split over the other columns."""
    index, names, weights = read_mixtures(mixtures)
    if params.domain not in names:
        raise UsageError(f"{mixtures}: no domain column '{params.domain}' (--domain); columns are: {', '.join(names)}")
    general = [d for d in names if d != params.domain]
    if not general:
        raise InputError(mixtures, "no general-data column besides the domain's", column=params.domain)
    frame = read_table(results)
    unknown = np.flatnonzero(~np.isin(frame[INDEX].to_numpy(), index))
    if unknown.size:
        row = int(unknown[0])
        raise InputError(results, f"index {frame[INDEX][row]} is not in {mixtures}", row=row + 2, column=INDEX)
    if params.tokens_column in frame.columns:
        tokens = _column(frame, params.tokens_column, results, "--tokens-column")
        bad = np.flatnonzero((tokens < 0) | (tokens != np.round(tokens)))
        if bad.size:
            raise InputError(results, "tokens must be whole numbers ≥ 0", row=int(bad[0]) + 2,
                             column=params.tokens_column)
    elif params.run_tokens is not None:
        tokens = np.full(frame.height, float(params.run_tokens))
    else:
        raise InputError(results, "no tokens column (or give --run-tokens N for runs of N tokens each)",
                         column=params.tokens_column)
    position = {int(i): row for row, i in enumerate(index)}
    rows = np.array([position[int(i)] for i in frame[INDEX]], dtype=np.int64)
    d = names.index(params.domain)
    runs = pl.DataFrame({
        "ratio": weights[rows, d], "tokens": tokens.astype(np.int64),
        "general": _column(frame, params.general_loss, results, "--general-loss"),
        **({"domain": _column(frame, params.domain_loss, results, "--domain-loss")} if params.domain_loss else {}),
    })
    rest = weights[:, [names.index(g) for g in general]]
    share = rest[rest.sum(axis=1) > 0]
    mean = (share / share.sum(axis=1, keepdims=True)).mean(axis=0) if len(share) else np.full(len(general), 1 / len(general))
    return runs, dict(zip(general, mean.tolist(), strict=True))


def fit_cmr(runs: pl.DataFrame, params: CmrParams, general_share: dict[str, float], source: str = "results") -> CmrModel:
    """Fit the loss-vs-ratio law at every budget, the critical ratio at each, and the scaling law across them."""
    if params.tolerance < 0:
        raise UsageError("--tolerance must be ≥ 0")
    base = runs.filter(pl.col("tokens") == 0)
    if params.base_loss is not None:
        base_loss = float(params.base_loss)
    elif base.height:
        base_loss = float(base["general"].mean())
    else:
        raise UsageError("give --base-loss (the general loss before continual pre-training) or runs with 0 tokens")
    budgets = []
    trained = runs.filter((pl.col("tokens") > 0) & (pl.col("ratio") > 0))
    if trained.is_empty():
        raise InputError(source, "no runs with tokens > 0 and a domain share > 0")
    for (tokens,), group in trained.group_by("tokens", maintain_order=True):
        if group["ratio"].n_unique() < 3:
            raise InputError(source, f"runs at {tokens:,} tokens have {group['ratio'].n_unique()} distinct domain "
                             "share(s) > 0; the loss-vs-ratio law needs 3 or more")
        ratio = group["ratio"].to_numpy()
        general = fit_power(ratio, group["general"].to_numpy())
        domain = fit_power(ratio, group["domain"].to_numpy()) if "domain" in group.columns else None
        budgets.append(BudgetFit(int(tokens), group.height, general, domain,
                                 critical_ratio(general, base_loss + params.tolerance)))
    budgets.sort(key=lambda b: b.tokens)
    inside = [b for b in budgets if 0 < b.critical < 1]
    scaling = None
    if len(inside) >= 3:
        scaling = fit_power(np.array([b.tokens for b in inside]) / TOKENS_UNIT, np.array([b.critical for b in inside]))
    return CmrModel(params.domain, general_share, base_loss, params.tolerance, budgets, scaling)


def cmr_tool(params: CmrParams, mixtures: str, results: str, output: str) -> tuple[dict, list[str]]:
    """`curate mix cmr`: fit, predict the critical ratio for --budget, write weights YAML for `mix apply`."""
    runs, general_share = load_runs(mixtures, results, params)
    model = fit_cmr(runs, params, general_share, results)
    budget = params.budget if params.budget is not None else model.budgets[-1].tokens
    if budget <= 0:
        raise UsageError("--budget must be > 0")
    ratio, how = model.critical_at(budget)
    weights = {d: round(w, 6) for d, w in model.weights(ratio).items()}
    document = {
        "target": params.general_loss, "domain": params.domain, "critical_ratio": round(ratio, 6), "budget": budget,
        "method": how, "extrapolated": not model.budgets[0].tokens <= budget <= model.budgets[-1].tokens,
        "tolerance": params.tolerance, "base_loss": round(model.base_loss, 6),
        "scaling_law": {**model.scaling.to_dict(), "tokens_unit": TOKENS_UNIT} if model.scaling else None,
        "budgets": [{"tokens": b.tokens, "runs": b.runs, "critical_ratio": round(b.critical, 6),
                     "general": b.general.to_dict(), **({"domain": b.domain.to_dict()} if b.domain else {})}
                    for b in model.budgets],
        "weights": weights,
    }
    header = (f"# curate mix cmr --mixtures {mixtures} --results {results}: largest share of '{params.domain}' "
              f"keeping {params.general_loss} within {params.tolerance} of {model.base_loss:.4f}\n")
    write_text_atomic(output, header + yaml.safe_dump(document, sort_keys=False))
    lines = [f"{'tokens':>16}  {'runs':>5}  {'critical ratio':>14}  general-loss law (α·R^s + β, R²)"]
    lines += [f"{b.tokens:>16,}  {b.runs:>5}  {b.critical:>14.4f}  {b.general.alpha:.4g}·R^{b.general.s:.3f} + "
              f"{b.general.beta:.4g} (R² {b.general.r2:.4f})" for b in model.budgets]
    if model.scaling is not None:
        law = model.scaling
        lines.append(f"CMR scaling law: R = {law.alpha:.4g}·T^{law.s:.4f} + {law.beta:.4g} (T in 1e9 tokens, R² {law.r2:.4f})")
    lines.append(f"critical ratio of {params.domain} at {budget:,} tokens: {ratio:.4f} ({how}) → {output}")
    return {"stage": "mix cmr", "output": output, **document}, lines
