"""Exact Shapley values: the axioms on random games, and classic games with published values."""

from __future__ import annotations

from math import factorial
from itertools import permutations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from royalflow.errors import AttributionError
from royalflow.shapley import exact_shapley
from royalflow.shapley.exact import coalition_matrix


def _table(n: int, fn) -> np.ndarray:  # type: ignore[no-untyped-def]
    masks = np.arange(1 << n)
    return np.array([fn(frozenset(i for i in range(n) if m >> i & 1)) for m in masks], dtype=float)


def _brute_force(n: int, v: np.ndarray) -> np.ndarray:
    """Average marginal contribution over all n! orders (definition, not formula)."""
    phi = np.zeros(n)
    for order in permutations(range(n)):
        mask = 0
        for player in order:
            phi[player] += v[mask | 1 << player] - v[mask]
            mask |= 1 << player
    return phi / factorial(n)


games = st.integers(min_value=1, max_value=6).flatmap(
    lambda n: st.tuples(st.just(n), st.lists(st.floats(-100, 100), min_size=1 << n, max_size=1 << n))
)


@settings(max_examples=60, deadline=None)
@given(games)
def test_matches_definition_and_efficiency(game: tuple[int, list[float]]) -> None:
    n, values = game
    v = np.array(values)
    result = exact_shapley(n, v)
    np.testing.assert_allclose(result.values, _brute_force(n, v), atol=1e-9)
    assert abs(result.efficiency_gap(v[-1], v[0])) < 1e-9  # sum phi = v(N) - v(empty)


def test_symmetry_null_player_and_linearity() -> None:
    rng = np.random.default_rng(0)
    n = 5
    base = rng.normal(size=1 << n)
    # Players 0 and 1 symmetric: v(S u {0}) = v(S u {1}) for S without both.
    sym = _table(n, lambda s: len(s & {0, 1}) * 2.0 + len(s - {0, 1}) + (3.0 if {2, 3} <= s else 0.0))
    phi = exact_shapley(n, sym).values
    assert phi[0] == pytest.approx(phi[1])
    # Player 4 null: adds nothing anywhere.
    null = _table(n, lambda s: float(len(s - {4}) ** 2))
    assert exact_shapley(n, null).values[4] == pytest.approx(0.0, abs=1e-12)
    # Linearity: phi(a v + b w) = a phi(v) + b phi(w).
    other = rng.normal(size=1 << n)
    np.testing.assert_allclose(
        exact_shapley(n, 2.5 * base - 0.5 * other).values,
        2.5 * exact_shapley(n, base).values - 0.5 * exact_shapley(n, other).values,
        atol=1e-9,
    )


def test_glove_game() -> None:
    # One left glove (player 0), two right gloves: pairs are worth 1. Published: (2/3, 1/6, 1/6).
    v = _table(3, lambda s: float(min(len(s & {0}), len(s & {1, 2}))))
    np.testing.assert_allclose(exact_shapley(3, v).values, [2 / 3, 1 / 6, 1 / 6])


def test_weighted_voting_shapley_shubik() -> None:
    # [51; 50, 49, 1]: the large player is pivotal in 4 of 6 orders -> (2/3, 1/6, 1/6).
    weights = [50, 49, 1]
    v = _table(3, lambda s: float(sum(weights[i] for i in s) >= 51))
    np.testing.assert_allclose(exact_shapley(3, v).values, [2 / 3, 1 / 6, 1 / 6])
    # [3; 2, 1, 1, 1]: published index (1/2, 1/6, 1/6, 1/6).
    weights = [2, 1, 1, 1]
    v = _table(4, lambda s: float(sum(weights[i] for i in s) >= 3))
    np.testing.assert_allclose(exact_shapley(4, v).values, [1 / 2, 1 / 6, 1 / 6, 1 / 6])


def test_airport_game() -> None:
    # Runway costs c_1 <= ... <= c_n; v(S) = -max cost in S. Littlechild-Owen closed form:
    # phi_i = -sum_{k<=i} (c_k - c_{k-1}) / (n - k + 1).
    costs = [1.0, 3.0, 4.0, 8.0]
    n = len(costs)
    v = _table(n, lambda s: -max((costs[i] for i in s), default=0.0))
    expected = [-sum((costs[k] - (costs[k - 1] if k else 0.0)) / (n - k) for k in range(i + 1)) for i in range(n)]
    np.testing.assert_allclose(exact_shapley(n, v).values, expected)


def test_unanimity_game_splits_equally_among_carriers() -> None:
    v = _table(5, lambda s: 6.0 if {1, 3, 4} <= s else 0.0)
    np.testing.assert_allclose(exact_shapley(5, v).values, [0, 2, 0, 2, 2])


def test_callable_utility_equals_table() -> None:
    w = np.array([1.0, 2.0, 4.0, 0.5])
    utility = lambda coalitions: np.sqrt(coalitions @ w)  # noqa: E731
    table = utility(coalition_matrix(np.arange(16), 4))
    np.testing.assert_allclose(exact_shapley(4, utility).values, exact_shapley(4, table).values)


def test_limits_are_explicit() -> None:
    with pytest.raises(AttributionError):
        exact_shapley(26, np.zeros(1))
    with pytest.raises(AttributionError):
        exact_shapley(3, np.zeros(7))
    with pytest.raises(AttributionError):
        exact_shapley(2, np.array([0.0, np.nan, 1.0, 2.0]))
