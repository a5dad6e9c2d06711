"""Search the mixture space through a fitted regression: simulate many mixtures, average the best ones.

RegMix simulates ~1M mixtures from the same Dirichlet generator used for the proxy runs and averages the
top 100 by predicted loss; averaging smooths the regression's noise and keeps the result inside the
region the proxies covered.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from curate.io.errors import UsageError
from curate.params import option
from curate.stages.mix.propose import STRENGTHS, clean_weights, draw_candidates
from curate.stages.mix.regression import REGRESSORS, MixModel


@dataclass
class OptimizeParams:
    n_sim: int = option(1_000_000, "Mixtures to simulate through the regression.")
    top_k: int = option(100, "Average the k best simulated mixtures into the final weights.")
    regressor: str = option("lightgbm", "Which fitted regression to search with.", choices=REGRESSORS)
    maximize: bool = option(False, "The target is better when higher (an accuracy, not a loss).")
    seed: int = option(42, "Random seed of the simulation.")
    concentration: float | None = option(
        None, "Dirichlet strength of the simulated mixtures (default: the generator's log-spaced 0.1..5 mix; "
        "1 = RegMix's notebook, Dirichlet(prior))."
    )
    stats: str | None = option(
        None, "Domain stats JSON (`curate mix stats -o`): prior from token shares, and epoch caps applied."
    )
    token_budget: int | None = option(None, "Tokens of the real run, for the epoch caps (default: all tokens).")
    max_epochs: float = option(4.0, "With --stats: no domain may be repeated more often than this.")
    temperature: float = option(0.5, "With --stats: prior = token share ** temperature.")
    chunk: int = option(100_000, "Mixtures predicted at a time (bounds memory).", fingerprint=False)


@dataclass
class OptimizeResult:
    weights: np.ndarray
    predicted: float  # prediction for the averaged mixture
    top_predicted: np.ndarray  # predictions of the top-k simulated mixtures, best first
    simulated: int


def optimize(model: MixModel, params: OptimizeParams, caps: np.ndarray | None = None,
             prior: np.ndarray | None = None) -> OptimizeResult:
    """Top-k average over ``n_sim`` generator draws, keeping only a running top-k (bounded memory)."""
    if params.n_sim < params.top_k or params.top_k < 1:
        raise UsageError("--top-k must be ≥ 1 and ≤ --n-sim")
    prior = model.prior if prior is None else prior
    sign = -1.0 if params.maximize else 1.0
    rng = np.random.default_rng(params.seed)
    strengths = STRENGTHS if params.concentration is None else np.array([params.concentration])
    best_w = np.empty((0, len(model.domains)))
    best_score = np.empty(0)
    simulated = 0
    while simulated < params.n_sim:
        size = min(params.chunk, params.n_sim - simulated)
        draws = draw_candidates(rng, prior, caps, size, strengths)
        simulated += size
        if not len(draws):
            continue
        scores = sign * model.predict(draws, params.regressor)
        pool_w = np.vstack([best_w, draws])
        pool_s = np.concatenate([best_score, scores])
        keep = np.argsort(pool_s, kind="stable")[: params.top_k]
        best_w, best_score = pool_w[keep], pool_s[keep]
    if len(best_w) < params.top_k:
        raise UsageError(f"only {len(best_w)} simulated mixtures satisfy the epoch caps; raise --n-sim")
    averaged = clean_weights(best_w.mean(axis=0, keepdims=True))
    if caps is not None:
        averaged = np.minimum(averaged, caps[None, :])  # an average of capped rows is already capped
    return OptimizeResult(
        weights=averaged[0],
        predicted=float(model.predict(averaged, params.regressor)[0]),
        top_predicted=sign * best_score,
        simulated=simulated,
    )
