"""Mixture search core on synthetic inputs: generator, n-gram keys, proxy behaviour, regression, sampling."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from curate.io.errors import UsageError
from curate.stages.mix.apply import DRAW_BINS, document_draws, domain_quota, draw_bins
from curate.stages.mix.propose import MIN_WEIGHT, epoch_caps, propose, temperature_prior
from curate.stages.mix.proxy import held_out, ngram_keys
from curate.stages.mix.regression import FitParams, fit, load_model, save_model


def test_temperature_prior_flattens_token_shares():
    prior = temperature_prior(np.array([900.0, 100.0]), 0.5)
    assert prior == pytest.approx([0.75, 0.25])  # sqrt(0.9) : sqrt(0.1) = 3 : 1


def test_propose_is_deterministic_capped_clean_and_distinct():
    tokens = np.array([5e6, 3e6, 1e6, 2e5, 5e4])
    prior = temperature_prior(tokens, 0.5)
    caps = epoch_caps(tokens, 4e6, 4)
    first = propose(prior, caps, 300, seed=3)
    assert np.array_equal(first, propose(prior, caps, 300, seed=3))
    assert not np.array_equal(first, propose(prior, caps, 300, seed=4))
    assert first.shape == (300, 5)
    assert np.allclose(first.sum(axis=1), 1)
    assert (first <= caps + 1e-9).all()  # the 5e4-token domain may take at most 4 × 5e4 / 4e6 = 5%
    assert first[:, 4].max() <= 0.05 + 1e-9
    assert not ((first > 0) & (first < MIN_WEIGHT)).any()
    distances = np.abs(first[:, None, :] - first[None, :, :]).sum(axis=2) + np.eye(300)
    assert distances.min() >= 1e-5
    # strengths span 0.1..5: some draws concentrate on one domain, others spread over all
    assert first.max(axis=1).max() > 0.9 and (first > 0).all(axis=1).any()


def test_propose_refuses_impossible_caps():
    with pytest.raises(UsageError, match="epochs"):
        epoch_caps(np.array([100.0, 100.0]), 1_000, 4)


def test_ngram_keys_are_per_document_bytes_with_end_marker():
    keys = ngram_keys(pa.array(["ab", "c"]), 3)
    # predicted bytes: a, b, <end>, c, <end>; contexts padded with zero bytes, never across documents
    expected = [0x61, 0x6162, 0x616200, 0x63, 0x6300]
    assert keys.tolist() == expected


def test_held_out_split_is_deterministic_and_about_the_fraction():
    rows = np.arange(100_000)
    mask = held_out(rows, 0.05, seed=0)
    assert np.array_equal(mask, held_out(rows, 0.05, seed=0))
    assert 0.045 < mask.mean() < 0.055
    assert not np.array_equal(mask, held_out(rows, 0.05, seed=1))


def test_regression_recovers_a_linear_law_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.dirichlet(np.ones(4), 200)
    y = x @ np.array([3.0, 2.0, 1.0, 0.5]) + rng.normal(0, 0.01, 200)
    model = fit(x, y, ["a", "b", "c", "d"], FitParams(target="loss", iterations=300, folds=4))
    assert model.cv["linear"]["spearman"] > 0.99
    assert model.cv["lightgbm"]["spearman"] > 0.95
    save_model(model, tmp_path / "model")
    assert (tmp_path / "model" / "lightgbm.txt").read_text().startswith("tree")
    loaded = load_model(tmp_path / "model")
    for regressor in ("lightgbm", "linear"):
        assert np.allclose(loaded.predict(x, regressor), model.predict(x, regressor))


def test_quota_takes_full_epochs_and_the_draw_prefix_closest_to_the_rest():
    histogram = np.zeros(DRAW_BINS, np.int64)
    histogram[::64] = 100  # 1,024 documents of 100 tokens spread over the draw: 102,400 tokens
    full, cutoff, expected = domain_quota(histogram, 2.5 * 102_400, 4, "d")
    assert (full, expected) == (2, 2.5 * 102_400)
    assert histogram[:cutoff].sum() == 51_200
    with pytest.raises(UsageError, match=r"d would need 5\.00 epochs"):
        domain_quota(histogram, 5 * 102_400, 4, "d")
    with pytest.raises(UsageError, match="no tokens"):
        domain_quota(np.zeros(DRAW_BINS, np.int64), 10, 4, "d")
    assert domain_quota(histogram, 0, 4, "d") == (0, 0, 0)


def test_draws_depend_on_seed_and_id_only_and_are_uniform():
    ids = pa.array([f"doc-{i}" for i in range(20_000)])
    batch = pa.record_batch([ids], names=["id"])
    draws = document_draws(batch, "id", 7, unit=3, first_row=0)
    # the same id gives the same draw in any unit, at any row, in any batch
    assert np.array_equal(document_draws(batch.slice(500, 10), "id", 7, unit=9, first_row=0), draws[500:510])
    assert not np.array_equal(document_draws(batch, "id", 8, 3, 0), draws)
    counts = np.bincount(draw_bins(draws) >> 12, minlength=16)  # 16 equal ranges of the draw
    assert counts.min() > 1_100 and counts.max() < 1_400
    # without an id (column missing, or a null id): the place of the document decides
    nameless = pa.record_batch([pa.array(["x"] * 4)], names=["text"])
    assert np.array_equal(document_draws(nameless, "id", 7, 2, 10)[1:], document_draws(nameless, "id", 7, 2, 11)[:3])
    assert len(set(document_draws(nameless, "id", 7, 2, 10).tolist())) == 4
    partial = pa.record_batch([pa.array(["doc-0", None])], names=["id"])
    assert document_draws(partial, "id", 7, 3, 0)[0] == draws[0]
    assert document_draws(partial, "id", 7, 3, 0)[1] == document_draws(nameless, "id", 7, 3, 0)[1]
