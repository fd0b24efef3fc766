"""ShapleyResult is frozen and checked; the efficiency gap; the package's documented examples run."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

import royalflow.shapley
from royalflow.errors import AttributionError
from royalflow.shapley import ShapleyResult, efficiency_gap, exact_shapley


def test_result_is_frozen_and_owns_its_arrays() -> None:
    values = np.array([1.0, 2.0])
    result = ShapleyResult(values, np.zeros(2), "exact", n_evaluations=4, n_permutations=0, converged=True)
    values[0] = 9.0  # the caller's array is not the result's
    assert result.values.tolist() == [1.0, 2.0] and result.values.dtype == np.float64 and result.n_players == 2
    with pytest.raises(ValueError):
        result.values[0] = 9.0
    with pytest.raises(ValueError):
        result.std_errors[0] = 1.0
    with pytest.raises(AttributeError):
        result.method = "permutation"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("values", "std_errors", "method"),
    [
        (np.zeros(3), np.zeros(2), "exact"),
        (np.zeros((2, 2)), np.zeros((2, 2)), "exact"),
        (np.zeros(2), np.zeros(2), "banzhaf"),
    ],
)
def test_result_rejects_inconsistent_fields(values: np.ndarray, std_errors: np.ndarray, method: str) -> None:
    with pytest.raises(AttributionError):
        ShapleyResult(
            values, std_errors, method, n_evaluations=0, n_permutations=0, converged=True  # type: ignore[arg-type]
        )


def test_efficiency_gap() -> None:
    v = np.array([1.0, 2.0, 5.0, 10.0])  # v(empty) = 1, v(N) = 10
    result = exact_shapley(2, v)
    assert efficiency_gap(result, v_full=10.0, v_empty=1.0) == pytest.approx(0.0, abs=1e-12)
    assert efficiency_gap(result, v_full=11.0, v_empty=1.0) == pytest.approx(-1.0)


def test_package_examples_run() -> None:
    outcome = doctest.testmod(royalflow.shapley, raise_on_error=False)
    assert outcome.attempted >= 4 and outcome.failed == 0
