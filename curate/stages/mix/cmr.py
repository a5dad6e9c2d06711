"""The CMR scaling law (Gu et al. 2024, "CMR Scaling Law: Predicting Critical Mixture Ratios for Continual
Pre-training of Language Models", arXiv:2407.17467): how large a share of new-domain data a continual
pre-training mix can take before the general loss rises by more than a tolerance ε.

From proxy runs (a mixture, a token budget, the general and domain losses after training):

1. at each token budget T, fit the paper's loss-vs-ratio law (its Sec. 5.1) ``L(R) = α·R^s + β`` to the
   general loss (and to the domain loss), over the runs with a domain share R in (0, 1];
2. the tolerable ratio at T is the largest R in [0, 1] with ``L_gen(R) ≤ L_gen(base) + ε`` (the paper's set 𝔸,
   Eq. 1; ε = 0.05); across budgets, the CMR scaling law (Eq. 8) ``R(T) = α₄·T^s₄ + β₃`` is fitted to it;
3. for each ratio with a trajectory (checkpoints at several budgets), fit Eq. 6 to its losses over T and find
   the turning point T₀ where ``dL_dom/dT + λ·dL_gen/dT`` reaches 0 (Eq. 7; λ → ∞ by default: the general
   loss stops rising); the ratio is feasible (𝔽) from T₀ on, and Eq. 8 through the points (T₀, R) gives the
   feasible ratio at any T;
4. the critical ratio (Definition 3, max of 𝔽 ⊂ 𝔸) is the smaller of the two at the budget asked for.

Every fit is least squares and deterministic: a grid of exponents (the linear coefficients solved exactly for
each), then scipy's bounded least squares from the best few.
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
MAX_EVALUATIONS = 200  # per refinement: the grid start is already close
PAIR_EXPONENTS = [s for s in np.round(np.arange(-3.0, 3.0001, 0.2), 1) if s != 0]  # grid of Eq. 6's exponents
MIN_CHECKPOINTS = 6  # distinct budgets of one ratio before its trajectory is fitted (Eq. 6 has 5 parameters)
REACH = 10.0  # turning points are searched up to this many times a run's last checkpoint


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
    lagrange: float | None = option(
        None, "λ weighing the general against the domain loss along a run (Eq. 3, 7; the paper: 100-7000; needs "
        "--domain-loss). Default: λ → ∞, a ratio is feasible once its general loss stops rising.")


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

    def slope(self, x: np.ndarray) -> np.ndarray:
        return self.alpha * self.s * np.power(x, self.s - 1)


@dataclass(frozen=True)
class TwoPowerLaw:
    """``y = a2 · x^s2 + a3 · x^s3 + beta``: the general loss along a run, which rises and then falls (Eq. 6)."""

    a2: float
    s2: float
    a3: float
    s3: float
    beta: float
    mse: float = 0.0
    r2: float = 1.0

    def __call__(self, x: np.ndarray | float) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return self.a2 * x**self.s2 + self.a3 * x**self.s3 + self.beta

    def slope(self, x: np.ndarray) -> np.ndarray:
        return self.a2 * self.s2 * x ** (self.s2 - 1) + self.a3 * self.s3 * x ** (self.s3 - 1)


def _as_dict(law: PowerLaw | TwoPowerLaw) -> dict:
    """A law's parameters and fit quality for the YAML, to 6 significant digits."""
    return {k: float(f"{v:.6g}") for k, v in vars(law).items()}


def _quality(residuals: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    sse, total = float(np.sum(residuals**2)), float(np.sum((y - y.mean()) ** 2))
    return sse / len(y), 1.0 - sse / total if total > 0 else 1.0


def fit_two_power(x: np.ndarray, y: np.ndarray) -> TwoPowerLaw:
    """Least-squares Eq. 6 for the general loss: exponent pairs on a grid, then refinement from the best."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(np.unique(x)) < MIN_CHECKPOINTS:
        raise UsageError(f"the two-term law needs at least {MIN_CHECKPOINTS} distinct token budgets, got {len(np.unique(x))}")
    scale = float(np.exp(np.log(x).mean()))
    u = x / scale
    log_u = np.log(u)
    pairs = [(a, b) for i, a in enumerate(PAIR_EXPONENTS) for b in PAIR_EXPONENTS[i + 1:]]

    def solve(s2: float, s3: float) -> tuple[np.ndarray, float]:
        design = np.c_[u**s2, u**s3, np.ones_like(u)]
        coef, *_ = np.linalg.lstsq(design, y, rcond=None)
        return coef, float(np.sum((design @ coef - y) ** 2))

    grid = sorted((solve(s2, s3)[1], s2, s3) for s2, s3 in pairs)
    best = None
    for _, s2, s3 in grid[:STARTS]:
        (a2, a3, b), _ = solve(s2, s3)
        result = least_squares(lambda p: p[0] * u ** p[1] + p[2] * u ** p[3] + p[4] - y, (a2, s2, a3, s3, b),
                               jac=lambda p: np.c_[u ** p[1], p[0] * u ** p[1] * log_u, u ** p[3],
                                                   p[2] * u ** p[3] * log_u, np.ones_like(u)],
                               method="trf", x_scale="jac", max_nfev=MAX_EVALUATIONS,
                               bounds=([-np.inf, BOUNDS[0], -np.inf, BOUNDS[0], -np.inf],
                                       [np.inf, BOUNDS[1], np.inf, BOUNDS[1], np.inf]))
        if best is None or np.sum(result.fun**2) < np.sum(best.fun**2) - 1e-15:
            best = result
    assert best is not None
    a2, s2, a3, s3, b = map(float, best.x)
    return TwoPowerLaw(a2 * scale ** (-s2), s2, a3 * scale ** (-s3), s3, b, *_quality(best.fun, y))


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
                               jac=lambda p: np.c_[u ** p[1], p[0] * u ** p[1] * np.log(u), np.ones_like(u)],
                               bounds=([-np.inf, BOUNDS[0], -np.inf], [np.inf, BOUNDS[1], np.inf]), x_scale="jac",
                               max_nfev=MAX_EVALUATIONS)
        sse = float(np.sum(result.fun**2))
        if best is None or sse < best[0] - 1e-15:
            best = (sse, *map(float, result.x))
    assert best is not None
    sse, a, s, b = best
    return PowerLaw(a * scale ** (-s), s, b, *_quality(a * u**s + b - y, y))


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
class Trajectory:
    """One ratio's runs along the token axis: Eq. 6 fits and the turning point T₀ (Eq. 7), in tokens."""

    ratio: float
    runs: int
    first: int  # its smallest budget
    general: TwoPowerLaw
    domain: PowerLaw | None
    turning: float | None  # billions of tokens; None: still rising REACH × past the last checkpoint


def turning_point(general: TwoPowerLaw, domain: PowerLaw | None, lagrange: float | None, start: float,
                  stop: float) -> float | None:
    """Smallest T in [start, stop] (billions) where ``dL_dom/dT + λ·dL_gen/dT ≤ 0`` (Eq. 13, 25)."""

    def slope(t):
        rise = general.slope(t)
        return rise if lagrange is None else rise + domain.slope(t) / lagrange  # type: ignore[union-attr]

    grid = np.geomspace(start, stop, 4096)
    hits = np.flatnonzero(slope(grid) <= 0)
    if not hits.size:
        return None
    if hits[0] == 0:
        return start
    return float(brentq(slope, grid[hits[0] - 1], grid[hits[0]], xtol=1e-12 * stop))


@dataclass
class CmrModel:
    """Loss-vs-ratio laws per token budget, the critical ratio at each, and the CMR scaling law across them."""

    domain: str
    general_share: dict[str, float]  # how the general part splits over the other mixture columns
    base_loss: float
    tolerance: float
    budgets: list[BudgetFit]
    scaling: PowerLaw | None  # Eq. 8 over T in billions of tokens; None with fewer than 3 usable budgets
    trajectories: list[Trajectory]
    feasible_scaling: PowerLaw | None  # Eq. 8 through the turning points (T₀, R); None with fewer than 3

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

    def tolerable_at(self, tokens: int) -> tuple[float, str]:
        """Largest ratio within the tolerance (𝔸) at a budget: the scaling law, or that budget's runs."""
        if self.scaling is not None:
            return float(np.clip(self.scaling(tokens / TOKENS_UNIT), 0.0, 1.0)), "tolerance, scaling law (Eq. 8)"
        known = [b.tokens for b in self.budgets]
        if tokens not in known:
            raise UsageError(
                f"--budget {tokens:,}: the CMR scaling law needs runs at 3 or more token budgets whose critical "
                f"ratio lies inside (0, 1); these runs allow only --budget {' or '.join(f'{t}' for t in known)}")
        return self.at(tokens).critical, "tolerance, runs at this budget"

    def feasible_at(self, tokens: int) -> tuple[float, str] | None:
        """Largest feasible ratio (𝔽) at a budget, from the runs' turning points; None without trajectories."""
        if self.feasible_scaling is not None:
            ratio = float(np.clip(self.feasible_scaling(tokens / TOKENS_UNIT), 0.0, 1.0))
            return ratio, "feasibility, scaling law (Eq. 8) through the turning points"
        if not self.trajectories:
            return None
        turned = [t.ratio for t in self.trajectories if t.turning is not None and t.turning * TOKENS_UNIT <= tokens]
        return max(turned, default=0.0), "feasibility, largest ratio turned by this budget"

    def critical_at(self, tokens: int) -> tuple[float, str]:
        """The critical ratio (max of 𝔽 ⊂ 𝔸, Definition 3) and which constraint set it."""
        tolerable = self.tolerable_at(tokens)
        feasible = self.feasible_at(tokens)
        return tolerable if feasible is None or tolerable[0] <= feasible[0] else feasible

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
        if params.run_tokens <= 0:
            raise UsageError("--run-tokens must be > 0")
        tokens = np.full(frame.height, float(params.run_tokens))
    else:
        raise InputError(results, "no tokens column (or give --run-tokens N for runs of N tokens each)",
                         column=params.tokens_column)
    order = np.argsort(index, kind="stable")
    rows = order[np.searchsorted(index[order], frame[INDEX].to_numpy())]  # each result's mixture row
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
    trajectories = fit_trajectories(trained, params)
    rising = [t for t in trajectories if t.turning is not None and t.turning * TOKENS_UNIT > t.first]
    feasible_scaling = None
    if len({t.turning for t in rising}) >= 3:
        feasible_scaling = fit_power(np.array([t.turning for t in rising]), np.array([t.ratio for t in rising]))
    return CmrModel(params.domain, general_share, base_loss, params.tolerance, budgets, scaling, trajectories,
                    feasible_scaling)


def fit_trajectories(trained: pl.DataFrame, params: CmrParams) -> list[Trajectory]:
    """Eq. 6 and the turning point of every ratio with runs at MIN_CHECKPOINTS budgets or more."""
    if params.lagrange is not None and (params.lagrange <= 0 or "domain" not in trained.columns):
        raise UsageError("--lagrange must be > 0 and needs --domain-loss")
    trajectories = []
    for (ratio,), group in trained.group_by("ratio", maintain_order=True):
        if group["tokens"].n_unique() < MIN_CHECKPOINTS:
            continue
        t = group["tokens"].to_numpy() / TOKENS_UNIT
        general = fit_two_power(t, group["general"].to_numpy())
        domain = fit_power(t, group["domain"].to_numpy()) if "domain" in group.columns else None
        turning = turning_point(general, domain, params.lagrange, t.min(), REACH * t.max())
        trajectories.append(Trajectory(float(ratio), group.height, int(group["tokens"].min()), general, domain, turning))
    return sorted(trajectories, key=lambda t: t.ratio)


def _formula(law: PowerLaw, x: str) -> str:
    return f"{law.alpha:.4g}·{x}^{law.s:.3f} {'-' if law.beta < 0 else '+'} {abs(law.beta):.4g}"


def cmr_tool(params: CmrParams, mixtures: str, results: str, output: str) -> tuple[dict, list[str]]:
    """`curate mix cmr`: fit, predict the critical ratio for --budget, write weights YAML for `mix apply`."""
    runs, general_share = load_runs(mixtures, results, params)
    model = fit_cmr(runs, params, general_share, results)
    budget = params.budget if params.budget is not None else model.budgets[-1].tokens
    if budget <= 0:
        raise UsageError("--budget must be > 0")
    ratio, how = model.critical_at(budget)
    tolerable, feasible = model.tolerable_at(budget)[0], model.feasible_at(budget)
    weights = {d: round(w, 6) for d, w in model.weights(ratio).items()}
    document = {
        "target": params.general_loss, "domain": params.domain, "critical_ratio": round(ratio, 6), "budget": budget,
        "method": how, "extrapolated": not model.budgets[0].tokens <= budget <= model.budgets[-1].tokens,
        "tolerance": params.tolerance, "base_loss": round(model.base_loss, 6),
        "scaling_law": {**_as_dict(model.scaling), "tokens_unit": TOKENS_UNIT} if model.scaling else None,
        "tolerable_ratio": round(tolerable, 6), "feasible_ratio": round(feasible[0], 6) if feasible else None,
        "lagrange": params.lagrange,
        "feasible_scaling_law": {**_as_dict(model.feasible_scaling), "tokens_unit": TOKENS_UNIT}
        if model.feasible_scaling else None,
        "trajectories": [{"ratio": round(t.ratio, 6), "runs": t.runs,
                          "turning_tokens": round(t.turning * TOKENS_UNIT) if t.turning is not None else None,
                          "general": _as_dict(t.general)} for t in model.trajectories],
        "budgets": [{"tokens": b.tokens, "runs": b.runs, "critical_ratio": round(b.critical, 6),
                     "general": _as_dict(b.general), **({"domain": _as_dict(b.domain)} if b.domain else {})}
                    for b in model.budgets],
        "weights": weights,
    }
    header = (f"# curate mix cmr --mixtures {mixtures} --results {results}: largest share of '{params.domain}' "
              f"keeping {params.general_loss} within {params.tolerance} of {model.base_loss:.4f}\n")
    write_text_atomic(output, header + yaml.safe_dump(document, sort_keys=False))
    lines = [f"{'tokens':>16}  {'runs':>5}  {'critical ratio':>14}  general-loss law (α·R^s + β, R²)"]
    lines += [f"{b.tokens:>16,}  {b.runs:>5}  {b.critical:>14.4f}  {_formula(b.general, 'R')} (R² {b.general.r2:.4f})"
              for b in model.budgets]
    for name, law in (("tolerance", model.scaling), ("turning points", model.feasible_scaling)):
        if law is not None:
            lines.append(f"CMR scaling law ({name}): R = {_formula(law, 'T')} (T in 1e9 tokens, R² {law.r2:.4f})")
    lines += [f"ratio {t.ratio:.4f}: general loss turns at "
              + (f"{t.turning * TOKENS_UNIT:,.0f} tokens" if t.turning is not None else "none within reach")
              for t in model.trajectories]
    lines.append(f"critical ratio of {params.domain} at {budget:,} tokens: {ratio:.4f} ({how}) → {output}")
    return {"stage": "mix cmr", "output": output, **document}, lines
