"""Permutation sampling: reproducible, stops on its standard-error target, and its error bars
cover the exact values at about the nominal rate."""

from __future__ import annotations

import numpy as np

from royalflow.shapley import exact_shapley, sample_shapley

W = np.array([0.3, 1.2, 0.7, 2.0, 0.1, 0.9])


def _utility(coalitions: np.ndarray) -> np.ndarray:
    # Non-additive: a concave function of weight plus a pairwise synergy.
    c = coalitions.astype(float)
    return np.sqrt(c @ W) + 0.5 * c[:, 1] * c[:, 3]


def test_same_seed_same_numbers() -> None:
    a = sample_shapley(6, _utility, seed=42, max_permutations=200)
    b = sample_shapley(6, _utility, seed=42, max_permutations=200)
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.std_errors, b.std_errors)


def test_stops_at_target_or_budget() -> None:
    hit = sample_shapley(6, _utility, seed=1, target_std_error=0.01, max_permutations=100_000)
    assert hit.converged and np.all(hit.std_errors <= 0.01) and hit.n_permutations < 100_000
    capped = sample_shapley(6, _utility, seed=1, target_std_error=1e-9, max_permutations=64)
    assert not capped.converged and capped.n_permutations == 64


def test_efficiency_holds_per_permutation() -> None:
    result = sample_shapley(6, _utility, seed=5, max_permutations=50)
    full = _utility(np.ones((1, 6), bool))[0] - _utility(np.zeros((1, 6), bool))[0]
    assert abs(result.values.sum() - full) < 1e-9  # each permutation's marginals telescope


def test_error_bars_cover_exact_values_at_nominal_rate() -> None:
    exact = exact_shapley(6, _utility).values
    covered = total = 0
    for seed in range(200):
        est = sample_shapley(6, _utility, seed=seed, max_permutations=60)
        covered += int(np.sum(np.abs(est.values - exact) <= 1.96 * est.std_errors))
        total += 6
    rate = covered / total
    assert 0.90 <= rate <= 0.99, rate


def test_thousands_of_players() -> None:
    n = 2000
    w = np.random.default_rng(0).random(n)
    result = sample_shapley(n, lambda c: c @ w, seed=0, max_permutations=4)
    np.testing.assert_allclose(result.values, w)  # additive game: every permutation is exact
