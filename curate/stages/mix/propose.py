"""RegMix's mixture generator: Dirichlet draws around a temperature-flattened token-share prior.

Follows sail-sg/regmix ``mixture_config/synthesize_mixture.py``: prior = token share ** temperature
(renormalised); each candidate ~ Dirichlet(prior × s) with s drawn from values log-spaced over 0.1..5,
so some candidates are spread out and some concentrate on few domains; candidates that would repeat a
domain more than ``max_epochs`` times for the token budget are rejected ("To Repeat or Not To Repeat");
tiny weights are zeroed; near-duplicates dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from curate.io.errors import UsageError
from curate.params import option

MIN_WEIGHT = 2e-4
DUPLICATE_L1 = 1e-5
STRENGTHS = np.logspace(np.log10(0.1), np.log10(5.0), 15)


@dataclass
class ProposeParams:
    n: int = option(512, "Number of mixtures to propose (RegMix trains 512 proxies).")
    seed: int = option(42, "Random seed: the same seed gives the same mixtures.")
    temperature: float = option(0.5, "Prior = token share ** temperature (renormalised); 1 keeps natural shares.")
    max_epochs: float = option(4.0, "Reject mixtures needing more passes than this over a domain's tokens.")
    token_budget: int | None = option(
        None, "Tokens the real (or proxy) run trains on; epoch caps are relative to it (default: all tokens)."
    )


def temperature_prior(tokens: np.ndarray, temperature: float) -> np.ndarray:
    """Token shares flattened by ``temperature`` (RegMix uses 0.5)."""
    tokens = np.asarray(tokens, dtype=np.float64)
    if (tokens < 0).any() or tokens.sum() <= 0:
        raise UsageError("every domain needs a non-negative token count and at least one token in total")
    flattened = (tokens / tokens.sum()) ** temperature
    return flattened / flattened.sum()


def epoch_caps(tokens: np.ndarray, token_budget: float | None, max_epochs: float) -> np.ndarray:
    """Largest weight per domain that stays within ``max_epochs`` passes over its tokens (at most 1)."""
    tokens = np.asarray(tokens, dtype=np.float64)
    budget = tokens.sum() if token_budget is None else float(token_budget)
    if budget <= 0 or max_epochs <= 0:
        raise UsageError("--token-budget and --max-epochs must be > 0")
    caps = np.minimum(max_epochs * tokens / budget, 1.0)
    if caps.sum() < 1:
        raise UsageError(
            f"a token budget of {budget:,.0f} needs more than {max_epochs:g} epochs of the whole corpus "
            f"({tokens.sum():,.0f} tokens): lower --token-budget or raise --max-epochs"
        )
    return caps


def clean_weights(weights: np.ndarray) -> np.ndarray:
    """Zero weights below 2e-4 and renormalise each row (RegMix's clean-up)."""
    weights = np.where(weights < MIN_WEIGHT, 0.0, weights)
    return weights / weights.sum(axis=1, keepdims=True)


def draw_candidates(
    rng: np.random.Generator, prior: np.ndarray, caps: np.ndarray | None, size: int,
    strengths: np.ndarray = STRENGTHS,
) -> np.ndarray:
    """Up to ``size`` cleaned Dirichlet draws that respect ``caps`` (rejected draws are simply missing)."""
    strength = rng.choice(strengths, size=size)
    alpha = np.maximum(prior[None, :] * strength[:, None], 1e-12)
    draws = _dirichlet_rows(rng, alpha)
    finite = np.isfinite(draws).all(axis=1) & (draws.sum(axis=1) > 0)
    draws = clean_weights(draws[finite])
    if caps is not None:
        draws = draws[(draws <= caps[None, :] + 1e-12).all(axis=1)]
    return draws


def _dirichlet_rows(rng: np.random.Generator, alpha: np.ndarray) -> np.ndarray:
    """Dirichlet draws with a different concentration per row (numpy's dirichlet takes one alpha)."""
    gammas = rng.standard_gamma(alpha)
    total = gammas.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return gammas / total


def propose(prior: np.ndarray, caps: np.ndarray | None, n: int, seed: int, max_draws: int = 10_000_000) -> np.ndarray:
    """``n`` distinct mixtures (rows sum to 1) from RegMix's generator, deterministic for a seed."""
    if n < 1:
        raise UsageError("--n must be ≥ 1")
    rng = np.random.default_rng(seed)
    accepted = np.empty((n, len(prior)))
    count = drawn = 0
    while count < n:
        if drawn >= max_draws:
            raise UsageError(
                f"only {count} of {n} mixtures satisfy the epoch caps after {drawn:,} draws: "
                "raise --max-epochs or lower --token-budget"
            )
        batch = max(4 * (n - count), 1024)
        drawn += batch
        for row in draw_candidates(rng, prior, caps, batch):
            if count and np.abs(accepted[:count] - row).sum(axis=1).min() < DUPLICATE_L1:
                continue
            accepted[count] = row
            count += 1
            if count == n:
                break
    return accepted
