"""Mixture and result tables: CSV files keyed by an integer ``index`` column (RegMix's layout)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

from curate.io.errors import InputError, UsageError
from curate.io.output import atomic_open

INDEX = "index"


def read_table(path: str | Path) -> pl.DataFrame:
    """A CSV with an integer ``index`` column and numeric columns; anything else is a one-line error."""
    path = str(path)
    try:
        frame = pl.read_csv(path)
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except (pl.exceptions.ComputeError, pl.exceptions.NoDataError) as err:
        raise InputError(path, f"not a readable CSV ({str(err).splitlines()[0]})") from None
    if INDEX not in frame.columns:
        raise InputError(path, f"no '{INDEX}' column (expected '{INDEX}' + one column per domain or metric)")
    for name, dtype in frame.schema.items():
        if not dtype.is_numeric():
            raise InputError(path, f"expected numbers, found {dtype}", column=name)
    if frame[INDEX].is_duplicated().any():
        raise InputError(path, "duplicate values", column=INDEX)
    return frame


def read_mixtures(path: str | Path) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(index, domain names, weights matrix) of a mixtures CSV; rows must be non-negative and sum to ~1."""
    frame = read_table(path)
    domains = [c for c in frame.columns if c != INDEX]
    weights = frame.select(domains).to_numpy().astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(weights).all(axis=1) | (weights < 0).any(axis=1))
    if bad.size == 0:
        bad = np.flatnonzero(np.abs(weights.sum(axis=1) - 1) > 0.01)
    if bad.size:
        raise InputError(str(path), "mixture weights must be ≥ 0 and sum to 1", row=int(bad[0]) + 2)
    return frame[INDEX].to_numpy(), domains, weights


def join_target(
    mixtures_path: str | Path, results_path: str | Path, target: str
) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray]:
    """Mixtures joined with one result column on ``index`` (rows without a result are dropped)."""
    index, domains, weights = read_mixtures(mixtures_path)
    results = read_table(results_path)
    if target not in results.columns:
        others = ", ".join(c for c in results.columns if c != INDEX)
        raise UsageError(f"{results_path}: no column '{target}'; columns are: {others}")
    lookup = results.select(INDEX, target).drop_nulls().filter(pl.col(target).is_not_nan())
    joined = pl.DataFrame({INDEX: index, "_row": np.arange(len(index))}).join(lookup, on=INDEX, how="inner")
    if joined.height < 2:
        raise InputError(str(results_path), f"fewer than 2 rows share an '{INDEX}' with {mixtures_path}")
    rows = joined["_row"].to_numpy()
    return index[rows], domains, weights[rows], joined[target].to_numpy().astype(np.float64)


def read_versioned_json(path: str | Path, expected_format: str, missing_hint: str) -> dict:
    """A JSON file curate wrote (stats, models): checked for its format tag, with errors that say what to run."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(str(path), f"file not found ({missing_hint})") from None
    except json.JSONDecodeError as err:
        raise InputError(str(path), f"not JSON ({err.msg})") from None
    if not isinstance(data, dict) or data.get("format") != expected_format:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise InputError(str(path), f"expected format {expected_format}, got {found!r}")
    return data


def write_csv(frame: pl.DataFrame, path: str | Path) -> None:
    """Write atomically (temp file + rename) so a crash never leaves half a table."""
    with atomic_open(path, "wb") as handle:
        frame.write_csv(handle, float_precision=6)


def mixtures_frame(weights: np.ndarray, domains: list[str], index: np.ndarray | None = None) -> pl.DataFrame:
    index = np.arange(len(weights)) if index is None else index
    return pl.DataFrame({INDEX: index, **{d: weights[:, j] for j, d in enumerate(domains)}})
