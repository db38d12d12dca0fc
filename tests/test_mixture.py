"""The ``miniboone_mixture`` data set: its exact log-density against SciPy's, its draws, its
entropy estimate, and its shipped parameters' checksum."""

import math

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from tfotflow import datasets
from tfotflow.datasets import mixture


def test_log_prob_equals_scipy_mixture():
    model, _, _ = mixture.load_parameters()
    x = np.random.default_rng(0).normal(size=(50, model.dim)) * 1.5
    expected = logsumexp(
        [
            math.log(w) + multivariate_normal(mean, scale @ scale.T).logpdf(x)
            for w, mean, scale in zip(model.weights, model.means, model.scales)
        ],
        axis=0,
    )
    np.testing.assert_allclose(model.log_prob(x), expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(model.log_prob(x, chunk=7), expected, rtol=1e-10, atol=1e-10)


def test_draws_have_the_mixture_moments():
    model, _, _ = mixture.load_parameters()
    draws = model.sample(np.random.RandomState(0), 100_000)
    mean = model.weights @ model.means
    second = sum(
        w * (s @ s.T + np.outer(m, m)) for w, m, s in zip(model.weights, model.means, model.scales)
    )
    spread = np.sqrt(np.diag(second - np.outer(mean, mean)))
    assert np.max(np.abs(draws.mean(axis=0) - mean) / spread) < 0.025  # ≈ 8 standard errors
    covariance = np.cov(draws, rowvar=False)
    assert (
        np.max(np.abs(covariance - (second - np.outer(mean, mean))) / np.outer(spread, spread))
        < 0.03
    )


def test_shipped_entropy_agrees_with_a_fresh_estimate():
    model, entropy, standard_error = mixture.load_parameters()
    assert standard_error < 0.01 / 2  # known to ± 0.01 nats at two standard errors
    fresh, fresh_error = model.entropy(np.random.RandomState(7), n=20_000, chunk=5_000)
    assert abs(fresh - entropy) < 4 * math.hypot(fresh_error, standard_error)


def test_loader_splits_and_metadata():
    data = datasets.load("miniboone_mixture", num_train=1000, num_val=100, num_test=200)
    assert data.train.shape == (1000, 43) and data.test.shape == (200, 43)
    assert data.train.dtype == np.float32
    meta = data.metadata
    assert meta.entropy == pytest.approx(mixture.load_parameters()[1])
    np.testing.assert_allclose(
        meta.log_prob(data.test[:5]), mixture.load_parameters()[0].log_prob(data.test[:5])
    )
    again = datasets.load("miniboone_mixture", num_train=1000, num_val=100, num_test=200)
    np.testing.assert_array_equal(again.train, data.train)
    assert not np.array_equal(data.train[:100], data.val)


def test_damaged_parameters_are_refused(monkeypatch):
    mixture.load_parameters.cache_clear()
    monkeypatch.setattr(mixture, "SHA256", "0" * 64)
    try:
        with pytest.raises(datasets.DatasetError, match="damaged; reinstall tfotflow"):
            mixture.load_parameters()
    finally:
        mixture.load_parameters.cache_clear()
