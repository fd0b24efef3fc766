"""Exact Shapley values: the definition and the four axioms on random games, classic games with
published values, callable utilities in bounded chunks, and explicit limits."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from royalflow.errors import AttributionError
from royalflow.shapley import EXACT_MAX_PLAYERS, coalition_matrix, efficiency_gap, exact_shapley
from royalflow.shapley import exact as exact_module
from tests.shapley.games import as_callable, brute_force, drop_player, swap_players, table

finite = st.floats(-100, 100, allow_nan=False)
games = st.integers(1, 6).flatmap(lambda n: st.tuples(st.just(n), st.lists(finite, min_size=1 << n, max_size=1 << n)))


@settings(max_examples=60, deadline=None)
@given(games)
def test_matches_definition_and_efficiency(game: tuple[int, list[float]]) -> None:
    n, values = game
    v = np.array(values)
    result = exact_shapley(n, v)
    np.testing.assert_allclose(result.values, brute_force(n, v), atol=1e-9)
    assert abs(efficiency_gap(result, v[-1], v[0])) < 1e-9  # sum phi = v(N) - v(empty)
    assert result.method == "exact" and result.converged and result.n_permutations == 0
    assert result.n_evaluations == 1 << n and not result.std_errors.any()


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 7), st.data())
def test_symmetry_null_player_and_linearity(n: int, data: st.DataObject) -> None:
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    v, w = rng.normal(size=1 << n), rng.normal(size=1 << n)
    a, b = data.draw(st.sampled_from([(0, 1), (0, n - 1), (n - 2, n - 1)]))
    # Symmetry: v + (v with a, b swapped) cannot tell a from b, so phi_a = phi_b.
    phi = exact_shapley(n, v + swap_players(v, a, b)).values
    assert phi[a] == pytest.approx(phi[b], abs=1e-9)
    # Null player: v(S \ {k}) never changes when k joins, so phi_k = 0.
    k = data.draw(st.integers(0, n - 1))
    assert exact_shapley(n, drop_player(v, k)).values[k] == pytest.approx(0.0, abs=1e-12)
    # Linearity: phi(alpha v + beta w) = alpha phi(v) + beta phi(w).
    alpha, beta = data.draw(st.tuples(finite, finite))
    np.testing.assert_allclose(
        exact_shapley(n, alpha * v + beta * w).values,
        alpha * exact_shapley(n, v).values + beta * exact_shapley(n, w).values,
        atol=1e-9,
    )


def test_glove_game() -> None:
    # One left glove (player 0), two right gloves; a pair is worth 1. Published: (2/3, 1/6, 1/6).
    v = table(3, lambda s: float(min(len(s & {0}), len(s & {1, 2}))))
    np.testing.assert_allclose(exact_shapley(3, v).values, [2 / 3, 1 / 6, 1 / 6])
    # One of each: the pair's value splits evenly.
    np.testing.assert_allclose(exact_shapley(2, np.array([0.0, 0.0, 0.0, 1.0])).values, [0.5, 0.5])


def _voting(weights: list[int], quota: int) -> np.ndarray:
    """Weighted majority game: v(S) = 1 iff the weights in S reach the quota."""
    members = coalition_matrix(np.arange(1 << len(weights)), len(weights))
    return (members @ np.array(weights) >= quota).astype(float)


def test_weighted_voting_shapley_shubik_index() -> None:
    # [51; 50, 49, 1]: the large player is pivotal in 4 of 6 orders -> (2/3, 1/6, 1/6).
    np.testing.assert_allclose(exact_shapley(3, _voting([50, 49, 1], 51)).values, [2 / 3, 1 / 6, 1 / 6])
    # [4; 3, 2, 1, 1], by hand: A is pivotal after any of {B},{C},{D},{B,C},{B,D},{C,D}
    # (weights 1..3), each with probability 2/24 -> 1/2; B after {A} or {C,D} -> 2 * 2/24 = 1/6.
    np.testing.assert_allclose(exact_shapley(4, _voting([3, 2, 1, 1], 4)).values, [1 / 2, 1 / 6, 1 / 6, 1 / 6])
    # [3; 2, 1, 1, 1]: the same index, (1/2, 1/6, 1/6, 1/6).
    np.testing.assert_allclose(exact_shapley(4, _voting([2, 1, 1, 1], 3)).values, [1 / 2, 1 / 6, 1 / 6, 1 / 6])


def test_un_security_council() -> None:
    # [39; 7 x 5 permanent, 1 x 10 elected] (Shapley & Shubik 1954): 421/2145 and 4/2145.
    # An elected member is pivotal after all 5 permanent + 3 of the other 9 elected:
    # C(9,3) * 8! 6! / 15! = 4/2145.
    phi = exact_shapley(15, _voting([7] * 5 + [1] * 10, 39)).values
    np.testing.assert_allclose(phi, [421 / 2145] * 5 + [4 / 2145] * 10, rtol=1e-12)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(0.0, 1000.0, allow_nan=False), min_size=1, max_size=8))
def test_airport_game(raw_costs: list[float]) -> None:
    # Runway costs c_1 <= ... <= c_n; v(S) = -max cost in S. Littlechild & Owen (1973):
    # phi_i = -sum_{k <= i} (c_k - c_{k-1}) / (n - k + 1), with c_0 = 0 (1-based k).
    costs = sorted(raw_costs)
    n = len(costs)
    v = table(n, lambda s: -max((costs[i] for i in s), default=0.0))
    increments = np.diff([0.0, *costs]) / (n - np.arange(n))
    np.testing.assert_allclose(exact_shapley(n, v).values, -np.cumsum(increments), atol=1e-9)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 8).flatmap(lambda n: st.tuples(st.just(n), st.sets(st.integers(0, n - 1), min_size=1))))
def test_unanimity_game_splits_equally_among_carriers(game: tuple[int, set[int]]) -> None:
    n, carriers = game
    v = table(n, lambda s: 6.0 if carriers <= s else 0.0)
    expected = [6.0 / len(carriers) if i in carriers else 0.0 for i in range(n)]
    np.testing.assert_allclose(exact_shapley(n, v).values, expected, atol=1e-12)


def test_callable_utility_equals_table_in_bounded_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    n = 12
    v = rng.normal(size=1 << n)
    monkeypatch.setattr(exact_module, "CALLABLE_CHUNK_COALITIONS", 1000)  # several chunks, last one short
    calls: list[tuple[int, ...]] = []

    def utility(coalitions: np.ndarray) -> np.ndarray:
        calls.append(coalitions.shape)
        return as_callable(v)(coalitions)

    result = exact_shapley(n, utility)
    np.testing.assert_allclose(result.values, exact_shapley(n, v).values, atol=1e-12)
    assert sum(rows for rows, _ in calls) == 1 << n and max(rows for rows, _ in calls) <= 1000
    assert all(cols == n for _, cols in calls)


def test_twenty_players_keep_precision_at_log_likelihood_scale() -> None:
    # Additive game on top of a large constant, as log-likelihoods of thousands of nats are:
    # phi_i = w_i exactly, so the engine must difference before it sums.
    n = 20
    w = np.random.default_rng(0).normal(scale=1e-3, size=n)
    v = -5000.0 + coalition_matrix(np.arange(1 << n), n) @ w
    np.testing.assert_allclose(exact_shapley(n, v).values, w, atol=1e-11)


@pytest.mark.parametrize(
    ("n", "utility"),
    [
        (EXACT_MAX_PLAYERS + 1, np.zeros(1)),  # too many players: sample instead
        (0, np.zeros(1)),
        (2.5, np.zeros(4)),
        (True, np.zeros(2)),
        (3, np.zeros(7)),  # wrong length
        (2, np.zeros((2, 2))),  # wrong shape
        (2, np.array([0.0, np.nan, 1.0, 2.0])),
        (2, np.array([0.0, np.inf, 1.0, 2.0])),
        (2, lambda c: np.zeros(len(c) + 1)),  # callable answers the wrong number of coalitions
        (2, lambda c: np.full(len(c), np.nan)),
    ],
)
def test_limits_and_bad_input_raise_attribution_error(n: object, utility: object) -> None:
    with pytest.raises(AttributionError):
        exact_shapley(n, utility)  # type: ignore[arg-type]
