"""The mixture utility and its Shapley values: exact path, fast quadrature path, clusters, limits."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

import royalflow.shapley.mixture
from royalflow.errors import AttributionError
from royalflow.shapley import exact_shapley, mixture_shapley, mixture_utility, sample_shapley
from royalflow.shapley.quotient import quotient_coalitions

FORCE_FAST = {"exact_max_players": 0}


def regime(name: str, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(log w_0..w_n, l_0..l_n) of a named regime; l in nats around -3000 (image scale)."""
    rng = np.random.default_rng(seed)
    log_w = np.log(np.concatenate([[5000.0], rng.integers(50, 500, n)]))
    base = -3000.0
    if name == "one dominant":
        gaps = np.concatenate([[12.0], rng.normal(-4.0, 1.0, n - 1)])
    elif name == "few heavy":
        gaps = np.concatenate([[4.0, 4.3, 3.8], rng.normal(-5.0, 1.0, n - 3)])
    elif name == "comparable":
        gaps = rng.normal(2.3, 0.2, n)
    elif name == "negligible":
        gaps = rng.normal(-20.0, 2.0, n)
    elif name == "mixed sizes":
        log_w = np.log(np.concatenate([[5000.0], 10.0 ** rng.uniform(0.5, 4.5, n)]))
        gaps = rng.normal(0.0, 3.0, n)
    else:
        raise ValueError(name)
    return log_w, base + np.concatenate([[0.0], gaps])


def reference_v(log_w: np.ndarray, ll: np.ndarray, coalition: np.ndarray) -> float:
    """(1) written out for one coalition, for checking the vectorised utility."""
    present = np.concatenate([[True], coalition])
    return float(np.logaddexp.reduce((log_w + ll)[present]) - np.log(np.exp(log_w)[present].sum()))


REGIMES = ["one dominant", "few heavy", "comparable", "negligible", "mixed sizes"]


def test_utility_is_the_mixture_and_stable_at_image_scale() -> None:
    log_w, ll = regime("mixed sizes", 9)
    v = mixture_utility(log_w, ll)
    coalitions = np.random.default_rng(1).random((40, 9)) < 0.5
    coalitions[0], coalitions[1] = False, True
    got = v(coalitions)
    assert np.all(np.isfinite(got))  # l ~ -3000: e^{l} underflows, the log-sum-exp does not
    np.testing.assert_allclose(got, [reference_v(log_w, ll, c) for c in coalitions], rtol=0, atol=1e-9)
    assert got[0] == pytest.approx(ll[0])  # v(empty) = l_0


@pytest.mark.parametrize("name", REGIMES)
def test_fast_path_matches_exact_enumeration(name: str) -> None:
    log_w, ll = regime(name, 12)
    exact = mixture_shapley(log_w, ll)
    fast = mixture_shapley(log_w, ll, **FORCE_FAST)
    assert exact.method == "exact" and fast.method == "mixture" and fast.converged
    error = np.abs(fast.values - exact.values)
    assert error.max() < 1e-7  # measured: 1e-9 and below
    assert np.all(error <= fast.std_errors)  # the stated error estimate covers the error
    assert fast.std_errors.max() < 1e-3


def test_exact_path_is_exact_shapley_of_the_utility() -> None:
    log_w, ll = regime("few heavy", 6)
    got = mixture_shapley(log_w, ll)
    want = exact_shapley(6, mixture_utility(log_w, ll))
    assert np.array_equal(got.values, want.values) and got.method == "exact"


@pytest.mark.parametrize("n", [50, 1000])
def test_efficiency_holds_within_the_stated_error(n: int) -> None:
    log_w, ll = regime("mixed sizes", n, seed=n)
    result = mixture_shapley(log_w, ll)
    v = mixture_utility(log_w, ll)
    ends = v(np.array([[False] * n, [True] * n]))
    gap = result.values.sum() - (ends[1] - ends[0])
    assert abs(gap) <= result.std_errors.sum()
    assert abs(gap) < 1e-6


def test_agrees_with_long_permutation_sampling() -> None:
    n = 50
    log_w, ll = regime("few heavy", n, seed=3)
    fast = mixture_shapley(log_w, ll)
    sampled = sample_shapley(n, mixture_utility(log_w, ll), seed=11, max_permutations=2000)
    z = np.abs(fast.values - sampled.values) / sampled.std_errors
    assert z.max() < 4.5  # 50 players: max |z| of 50 normals beyond 4.5 has probability ~3e-4


def test_clusters_are_the_quotient_game() -> None:
    n = 20
    log_w, ll = regime("mixed sizes", n, seed=5)
    clusters = [[0, 7], [1], [2, 3, 4], [5, 19], [6, 8, 9, 10], [11], [12, 13], [14, 15, 16, 17, 18]]
    members = np.zeros((len(clusters), n), dtype=bool)
    for j, group in enumerate(clusters):
        members[j, group] = True
    owner_v = mixture_utility(log_w, ll)
    # Exact path: the same numbers as evaluating the owners' utility on each union of clusters.
    want = exact_shapley(len(clusters), lambda c: owner_v(quotient_coalitions(members, c)))
    got = mixture_shapley(log_w, ll, clusters=clusters)
    assert np.array_equal(got.values, want.values)
    # Fast path: the quotient of a mixture is the mixture over clusters.
    fast = mixture_shapley(log_w, ll, clusters=clusters, **FORCE_FAST)
    assert np.all(np.abs(fast.values - want.values) <= fast.std_errors)
    assert np.abs(fast.values - want.values).max() < 1e-7


def test_singleton_clusters_equal_no_clusters() -> None:
    log_w, ll = regime("comparable", 30)
    plain = mixture_shapley(log_w, ll)
    singletons = mixture_shapley(log_w, ll, clusters=[[i] for i in range(30)])
    np.testing.assert_allclose(singletons.values, plain.values, rtol=0, atol=1e-12)


def test_symmetric_owners_get_equal_values_on_the_fast_path() -> None:
    log_w, ll = regime("mixed sizes", 40)
    log_w[5], ll[5] = log_w[9], ll[9]
    result = mixture_shapley(log_w, ll)
    assert result.values[4] == pytest.approx(result.values[8], abs=1e-12)


def test_ten_thousand_owners_run_and_are_deterministic() -> None:
    log_w, ll = regime("mixed sizes", 10_000, seed=7)
    first = mixture_shapley(log_w, ll)
    again = mixture_shapley(log_w.copy(), ll.copy())
    assert first.method == "mixture" and first.values.shape == (10_000,)
    assert np.array_equal(first.values, again.values) and np.array_equal(first.std_errors, again.std_errors)
    assert np.all(np.isfinite(first.values)) and first.std_errors.max() < 1e-3
    v = mixture_utility(log_w, ll)
    ends = v(np.array([[False] * 10_000, [True] * 10_000]))
    assert first.values.sum() == pytest.approx(ends[1] - ends[0], abs=1e-6)


@pytest.mark.parametrize(("log_w", "ll", "match"), [
    ([0.0, 1.0, np.inf], [0.0, 0.0, 0.0], "weight"),
    ([0.0, -np.inf, 1.0], [0.0, 0.0, 0.0], "weight"),  # weight 0
    ([0.0, np.nan, 1.0], [0.0, 0.0, 0.0], "weight"),  # negative weight's log
    ([0.0, 1.0, 1.0], [0.0, np.nan, 0.0], "log-likelihoods"),
    ([0.0, 1.0, 1.0], [0.0, -np.inf, 0.0], "log-likelihoods"),
    ([0.0, 1.0], [0.0, 1.0, 2.0], "shape|must both"),
    ([0.0], [0.0], "owners"),
    ([[0.0, 1.0]], [[0.0, 1.0]], "must both"),
])
def test_bad_inputs_are_refused(log_w: list[float], ll: list[float], match: str) -> None:
    with pytest.raises(AttributionError, match=match):
        mixture_shapley(np.array(log_w), np.array(ll))
    with pytest.raises(AttributionError, match=match):
        mixture_utility(np.array(log_w), np.array(ll))


@pytest.mark.parametrize("clusters", [
    [[0, 1], [1, 2]],  # owner 1 twice
    [[0], [2]],  # owner 1 in none
    [[0, 1, 2], []],  # an empty cluster
    [[0, 1, 3]],  # no owner 3
    [[0, True, 2]],  # a bool is not an index
    [["a"], [1, 2]],
    [],
])
def test_clusters_must_partition_the_owners(clusters: list[list[object]]) -> None:
    log_w, ll = regime("comparable", 3)
    with pytest.raises(AttributionError):
        mixture_shapley(log_w, ll, clusters=clusters)  # type: ignore[arg-type]


def test_limits_are_checked() -> None:
    log_w, ll = regime("comparable", 3)
    with pytest.raises(AttributionError, match="exact_max_players"):
        mixture_shapley(log_w, ll, exact_max_players=26)
    with pytest.raises(AttributionError, match="owners"):
        mixture_shapley(np.zeros(16_386), np.zeros(16_386))
    with pytest.raises(AttributionError, match="bool matrix"):
        mixture_utility(log_w, ll)(np.zeros((2, 4), dtype=bool))


def test_module_examples_run() -> None:
    outcome = doctest.testmod(royalflow.shapley.mixture, raise_on_error=False)
    assert outcome.attempted >= 4 and outcome.failed == 0
