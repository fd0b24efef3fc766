"""The log-sum game's quadrature: against enumeration, across scales, and its error estimate."""

from __future__ import annotations

import numpy as np
import pytest

from royalflow.errors import AttributionError
from royalflow.shapley import exact_shapley
from royalflow.shapley import log_sum as log_sum_module
from royalflow.shapley.log_sum import log_sum_shapley


def enumerated(beta: np.ndarray) -> np.ndarray:
    """Exact Shapley values of g, each g(S) a log-sum-exp (b may overflow a float)."""
    def g(coalitions: np.ndarray) -> np.ndarray:
        terms = np.where(coalitions, beta, -np.inf)
        return np.logaddexp(0.0, np.logaddexp.reduce(terms, axis=1))
    return exact_shapley(len(beta), g).values


@pytest.mark.parametrize("beta", [
    np.array([0.3]),  # one player: phi = log(1 + b)
    np.array([300.0, 250.0, 0.0, -2.0, 5.0, -40.0]),  # b from e^-40 to e^300
    np.array([-700.0, -30.0, -12.0, -12.0]),  # all negligible
    np.full(12, 5.0),  # all equal and heavy: phi = log(1 + 12 e^5) / 12 each
    np.random.default_rng(0).normal(0.0, 3.0, 13),
])
def test_matches_enumeration_at_every_scale(beta: np.ndarray) -> None:
    phi, error = log_sum_shapley(beta)
    want = enumerated(beta)
    assert np.abs(phi - want).max() < 1e-8
    assert np.all(np.abs(phi - want) <= error)
    assert phi.sum() == pytest.approx(np.logaddexp(0.0, np.logaddexp.reduce(beta)), abs=1e-8)  # g(N) - g(empty)


def test_error_estimate_covers_the_error_against_a_finer_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    beta = np.random.default_rng(1).normal(0.0, 2.5, 2000)
    phi, error = log_sum_shapley(beta)
    # Reference: step h / 2.5 in u and 64 Gauss nodes in t.
    y, w = np.polynomial.legendre.leggauss(64)
    monkeypatch.setattr(log_sum_module, "STEP_U", 0.2)
    monkeypatch.setattr(log_sum_module, "GAUSS_NODES", 64)
    monkeypatch.setattr(log_sum_module, "_Y", (y + 1) / 2)
    monkeypatch.setattr(log_sum_module, "_OMEGA", w / 2)
    reference, _ = log_sum_shapley(beta)
    assert np.all(np.abs(phi - reference) <= error)
    assert np.abs(phi - reference).max() < 1e-8


def test_series_polynomials_reproduce_the_functions() -> None:
    # c_r, f_r are the Taylor coefficients of log(1 - t + t e^{-x}) and d / (1 - t d) in x.
    t = np.array([0.0, 0.2, 0.5, 0.9, 1.0])
    c, f = log_sum_module._series(t)
    x = 0.4
    powers = x ** np.arange(1, log_sum_module.SERIES_TERMS + 1)
    d = -np.expm1(-x)
    np.testing.assert_allclose(c @ powers, np.log1p(-t * d), rtol=0, atol=1e-13)
    np.testing.assert_allclose(f @ powers, d / (1 - t * d), rtol=0, atol=1e-13)


def test_extreme_ranges_are_valued_or_refused() -> None:
    beta = np.array([2000.0, 1997.0, 5.0, 0.0, -3.0])  # an owner e^2000 times likelier than the base
    phi, error = log_sum_shapley(beta)
    assert np.all(np.abs(phi - enumerated(beta)) <= error)
    with pytest.raises(AttributionError, match="beyond"):
        log_sum_shapley(np.array([6000.0, 0.0]))
