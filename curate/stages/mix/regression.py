"""Mixture → loss regression: LightGBM (RegMix's choice) and a linear baseline, with k-fold CV.

Models are stored as a directory: ``model.json`` (domains, target, prior, linear coefficients, CV scores)
and ``lightgbm.txt`` (LightGBM's own text format) — nothing is pickled, so loading a model never runs code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import lightgbm as lgb
import numpy as np
from scipy.stats import spearmanr

from curate.io.errors import UsageError
from curate.io.output import write_text_atomic
from curate.params import option
from curate.stages.mix.tables import read_versioned_json

MODEL_FORMAT = "curate-mix-model/1"
REGRESSORS = ["lightgbm", "linear"]


@dataclass
class FitParams:
    target: str = option("", "Results column to predict (e.g. 'metric/the_pile_pile_cc_val_loss').")
    folds: int = option(5, "k for k-fold cross-validation (Spearman ρ and MSE are printed for both models).")
    iterations: int = option(1000, "LightGBM boosting rounds (RegMix: 1000).")
    learning_rate: float = option(0.01, "LightGBM learning rate (RegMix: 0.01).")
    seed: int = option(42, "Seed for LightGBM and the CV folds (RegMix: 42).")
    threads: int = option(
        1, "LightGBM training threads (1 is fastest for a few hundred runs and immune to busy cores; 0: all).",
        fingerprint=False,
    )


@dataclass
class MixModel:
    """A fitted mixture regression: what ``predict`` and ``optimize`` load."""

    domains: list[str]
    target: str
    prior: np.ndarray  # mean training mixture ≈ the generator's prior, used to simulate mixtures
    linear_coef: np.ndarray
    linear_intercept: float
    booster: lgb.Booster | None
    cv: dict = field(default_factory=dict)
    n_train: int = 0

    def predict(self, weights: np.ndarray, regressor: str = "lightgbm") -> np.ndarray:
        if weights.shape[1] != len(self.domains):
            raise UsageError(f"the model has {len(self.domains)} domains, the mixtures {weights.shape[1]}")
        if regressor == "linear":
            return weights @ self.linear_coef + self.linear_intercept
        if regressor != "lightgbm" or self.booster is None:
            raise UsageError(f"unknown regressor {regressor!r}; expected one of {', '.join(REGRESSORS)}")
        return self.booster.predict(weights)


def _lgb_params(params: FitParams) -> dict:
    return {
        "objective": "regression",
        "boosting": "gbdt",
        "learning_rate": params.learning_rate,
        "seed": params.seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": params.threads,
        "verbose": -1,
    }


def fit_lightgbm(x: np.ndarray, y: np.ndarray, params: FitParams) -> lgb.Booster:
    data = lgb.Dataset(x, y, params={"verbose": -1})
    return lgb.train(_lgb_params(params), data, num_boost_round=params.iterations)


def fit_linear(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Least squares with an intercept (minimum-norm, since weights sum to 1 and are collinear with it)."""
    design = np.c_[x, np.ones(len(x))]
    solution = np.linalg.lstsq(design, y, rcond=None)[0]
    return solution[:-1], float(solution[-1])


def score(predicted: np.ndarray, actual: np.ndarray) -> dict:
    """Spearman ρ (ranking quality, what RegMix reports) and MSE."""
    rho = spearmanr(predicted, actual)[0] if np.ptp(predicted) > 0 else 0.0
    return {"spearman": float(rho), "mse": float(np.mean((predicted - actual) ** 2))}


def cross_validate(x: np.ndarray, y: np.ndarray, params: FitParams) -> dict:
    """Out-of-fold predictions of both regressors, scored over all rows."""
    if params.folds < 2 or params.folds > len(y):
        raise UsageError(f"--folds must be between 2 and the number of runs ({len(y)})")
    order = np.random.default_rng(params.seed).permutation(len(y))
    predicted = {name: np.empty(len(y)) for name in REGRESSORS}
    for fold in np.array_split(order, params.folds):
        train = np.setdiff1d(order, fold)
        predicted["lightgbm"][fold] = fit_lightgbm(x[train], y[train], params).predict(x[fold])
        coef, intercept = fit_linear(x[train], y[train])
        predicted["linear"][fold] = x[fold] @ coef + intercept
    return {name: score(predicted[name], y) for name in REGRESSORS}


def fit(x: np.ndarray, y: np.ndarray, domains: list[str], params: FitParams, cv: bool = True) -> MixModel:
    if not params.target:
        raise UsageError("--target is required: the results column to predict")
    if len(y) < 4:
        raise UsageError(f"need at least 4 runs to fit a regression, got {len(y)}")
    coef, intercept = fit_linear(x, y)
    return MixModel(
        domains=list(domains),
        target=params.target,
        prior=x.mean(axis=0),
        linear_coef=coef,
        linear_intercept=intercept,
        booster=fit_lightgbm(x, y, params),
        cv=cross_validate(x, y, params) if cv else {},
        n_train=len(y),
    )


def save_model(model: MixModel, directory: str | Path) -> None:
    directory = Path(directory)
    meta = {
        "format": MODEL_FORMAT,
        "domains": model.domains,
        "target": model.target,
        "prior": model.prior.tolist(),
        "linear": {"coef": model.linear_coef.tolist(), "intercept": model.linear_intercept},
        "cv": model.cv,
        "n_train": model.n_train,
    }
    if model.booster is not None:
        write_text_atomic(directory / "lightgbm.txt", model.booster.model_to_string())
    write_text_atomic(directory / "model.json", json.dumps(meta, indent=2) + "\n")


def load_model(directory: str | Path) -> MixModel:
    directory = Path(directory)
    meta_path = directory / "model.json"
    meta = read_versioned_json(meta_path, MODEL_FORMAT, "no model here: write one with `curate mix fit -o DIR`")
    booster_path = directory / "lightgbm.txt"
    booster = lgb.Booster(model_file=str(booster_path)) if booster_path.exists() else None
    return MixModel(
        domains=meta["domains"],
        target=meta["target"],
        prior=np.asarray(meta["prior"], dtype=np.float64),
        linear_coef=np.asarray(meta["linear"]["coef"], dtype=np.float64),
        linear_intercept=float(meta["linear"]["intercept"]),
        booster=booster,
        cv=meta.get("cv", {}),
        n_train=meta.get("n_train", 0),
    )
