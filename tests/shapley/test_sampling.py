"""Permutation sampling: reproducible, stops on its standard-error target or its budget, keeps
the axioms (exactly where the estimator allows), evaluates in bounded batches, scales to
thousands of players, and its error bars cover the exact values at about the nominal rate."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from royalflow.errors import AttributionError
from royalflow.shapley import SAMPLE_MAX_PLAYERS, efficiency_gap, exact_shapley, sample_shapley
from royalflow.shapley import sampling as sampling_module
from tests.shapley.games import as_callable, drop_player, swap_players

W = np.array([0.3, 1.2, 0.7, 2.0, 0.1, 0.9])


def smooth(coalitions: np.ndarray) -> np.ndarray:
    """Non-additive: a concave function of weight, a pairwise synergy and a three-way clash."""
    c = coalitions.astype(float)
    return np.sqrt(c @ W) + 0.5 * c[:, 1] * c[:, 3] - 0.8 * c[:, 0] * c[:, 4] * c[:, 5]


def vote(coalitions: np.ndarray) -> np.ndarray:
    """Weighted voting [7; 4, 3, 2, 2, 1, 1]: marginals are 0 or 1, rarely 1 for small players."""
    return (coalitions @ np.array([4, 3, 2, 2, 1, 1]) >= 7).astype(float)


def test_same_seed_same_numbers() -> None:
    a = sample_shapley(6, smooth, seed=42, max_permutations=200)
    b = sample_shapley(6, smooth, seed=42, max_permutations=200)
    assert a.values.tolist() == b.values.tolist() and a.std_errors.tolist() == b.std_errors.tolist()
    c = sample_shapley(6, smooth, seed=43, max_permutations=200)
    assert c.values.tolist() != a.values.tolist()


def test_batch_size_does_not_change_the_permutations() -> None:
    # The Generator is consumed in order, so batching only changes rounding, not the sample.
    runs = [sample_shapley(6, smooth, seed=7, max_permutations=300, batch_permutations=b) for b in (2, 34, None)]
    for run in runs[1:]:
        np.testing.assert_allclose(run.values, runs[0].values, atol=1e-12)
        np.testing.assert_allclose(run.std_errors, runs[0].std_errors, rtol=1e-9)


def test_stops_when_every_standard_error_reaches_the_target() -> None:
    target = 0.01
    hit = sample_shapley(6, smooth, seed=1, target_std_error=target, max_permutations=100_000)
    assert hit.converged and np.all(hit.std_errors <= target) and hit.n_permutations < 100_000
    # The stop is not wasteful: pairs needed ~ max_i var_i / target^2, by (2) and (3).
    reference = sample_shapley(6, smooth, seed=2, max_permutations=20_000)
    variance = reference.std_errors**2 * (reference.n_permutations // 2)
    assert hit.n_permutations // 2 <= 1.5 * variance.max() / target**2 + sampling_module.MIN_SAMPLES_TO_STOP


def test_stops_at_the_budget() -> None:
    capped = sample_shapley(6, smooth, seed=1, target_std_error=1e-9, max_permutations=65)
    assert not capped.converged and capped.n_permutations == 64  # whole antithetic pairs only
    plain = sample_shapley(6, smooth, seed=1, max_permutations=65, antithetic=False)
    assert plain.n_permutations == 65 and not plain.converged  # no target: nothing to converge to


def test_a_few_early_samples_cannot_stop_the_run() -> None:
    # The smallest player of `vote` is rarely pivotal: its first pairs often all read 0, an SE
    # of 0. The run must still gather MIN_SAMPLES_TO_STOP pairs before it may stop.
    result = sample_shapley(6, vote, seed=0, target_std_error=0.5, max_permutations=1000, batch_permutations=2)
    assert result.converged and result.n_permutations == 2 * sampling_module.MIN_SAMPLES_TO_STOP


def test_counts_every_utility_evaluation_in_one_call_per_batch() -> None:
    calls: list[int] = []

    def counted(coalitions: np.ndarray) -> np.ndarray:
        calls.append(len(coalitions))
        return smooth(coalitions)

    result = sample_shapley(6, counted, seed=3, max_permutations=100, batch_permutations=20)
    assert calls == [2] + [20 * 5] * 5  # v(empty), v(N) once; then the 5 interior prefixes of 20 perms
    assert result.n_evaluations == sum(calls) == 2 + 100 * 5


def test_splits_calls_above_the_cell_limit_without_changing_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    n = 40
    w = np.random.default_rng(1).random(n)
    utility = lambda c: np.sqrt(c @ w) + c[:, 0] * c[:, 1]  # noqa: E731
    whole = sample_shapley(n, utility, seed=5, max_permutations=8)
    cells: list[int] = []

    def counted(coalitions: np.ndarray) -> np.ndarray:
        cells.append(coalitions.size)
        return utility(coalitions)

    monkeypatch.setattr(sampling_module, "MAX_CALL_CELLS", 500)  # less than one permutation (39 x 40)
    split = sample_shapley(n, counted, seed=5, max_permutations=8)
    assert max(cells) <= 500 and len(cells) > 8
    np.testing.assert_allclose(split.values, whole.values, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 6), st.integers(0, 2**32 - 1))
def test_axioms_that_hold_exactly_for_every_sample(n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    v, w = rng.normal(size=1 << n), rng.normal(size=1 << n)
    result = sample_shapley(n, as_callable(v), seed=seed, max_permutations=20)
    # Efficiency: each permutation's marginals telescope to v(N) - v(empty).
    assert abs(efficiency_gap(result, v[-1], v[0])) < 1e-9
    # Null player: its marginal is 0 in every permutation, so its estimate and SE are 0.
    null = sample_shapley(n, as_callable(drop_player(v, n - 1)), seed=seed, max_permutations=20)
    assert null.values[-1] == pytest.approx(0.0, abs=1e-12) and null.std_errors[-1] == pytest.approx(0.0, abs=1e-12)
    # Linearity: the same seed draws the same permutations, and the estimator is linear in v.
    mixed = sample_shapley(n, as_callable(2.0 * v - 3.0 * w), seed=seed, max_permutations=20)
    other = sample_shapley(n, as_callable(w), seed=seed, max_permutations=20)
    np.testing.assert_allclose(mixed.values, 2.0 * result.values - 3.0 * other.values, atol=1e-9)


def test_symmetric_players_get_equal_values_within_error() -> None:
    v = np.random.default_rng(4).normal(size=1 << 6)
    symmetric = v + swap_players(v, 0, 5)
    result = sample_shapley(6, as_callable(symmetric), seed=9, max_permutations=4000)
    gap = abs(result.values[0] - result.values[5])
    assert gap <= 4 * np.hypot(result.std_errors[0], result.std_errors[5])
    np.testing.assert_allclose(result.values, exact_shapley(6, symmetric).values, atol=5 * result.std_errors.max())


@pytest.mark.parametrize("game", [smooth, vote], ids=["smooth", "vote"])
@pytest.mark.parametrize("antithetic", [True, False], ids=["antithetic", "plain"])
@pytest.mark.parametrize("target", [None, 0.02], ids=["budget", "target"])
def test_error_bars_cover_exact_values_at_nominal_rate(
    game: Callable[[np.ndarray], np.ndarray], antithetic: bool, target: float | None
) -> None:
    exact = exact_shapley(6, game).values
    covered = total = 0
    for seed in range(300):
        est = sample_shapley(6, game, seed=seed, max_permutations=400, antithetic=antithetic, target_std_error=target)
        covered += int(np.sum(np.abs(est.values - exact) <= 1.96 * est.std_errors))
        total += 6
    assert 0.88 <= covered / total <= 0.99, covered / total


def test_thousands_of_players() -> None:
    n = 2000
    w = np.random.default_rng(0).random(n)
    result = sample_shapley(n, lambda c: c @ w, seed=0, max_permutations=4)
    np.testing.assert_allclose(result.values, w, atol=1e-9)  # additive game: every permutation is exact
    assert result.n_evaluations == 2 + 4 * (n - 1)


def test_single_player_gets_the_whole_game() -> None:
    result = sample_shapley(1, lambda c: 3.0 * c[:, 0] - 1.0, seed=0, target_std_error=0.1)
    assert result.values.tolist() == [3.0] and result.std_errors.tolist() == [0.0] and result.converged


@pytest.mark.parametrize(
    ("n", "utility", "options"),
    [
        (SAMPLE_MAX_PLAYERS + 1, smooth, {}),
        (0, smooth, {}),
        (6, np.zeros(64), {}),  # a table: use exact_shapley
        (6, smooth, {"target_std_error": 0.0}),
        (6, smooth, {"target_std_error": float("nan")}),
        (6, smooth, {"max_permutations": 3}),  # fewer than two antithetic pairs
        (6, smooth, {"batch_permutations": 0}),
        (6, smooth, {"batch_permutations": sampling_module.MAX_BATCH_PERMUTATIONS + 1}),
        (6, lambda c: np.zeros(len(c) - 1), {}),
        (6, lambda c: np.full(len(c), np.inf), {}),
    ],
)
def test_bad_input_raises_attribution_error(n: int, utility: object, options: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(AttributionError):
        sample_shapley(n, utility, seed=0, **options)  # type: ignore[arg-type]
