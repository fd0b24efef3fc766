"""The result of a Shapley computation, and the efficiency check every result must pass.

Efficiency is the axiom that makes Shapley values a split of the whole game:

    sum_i phi_i = v(N) - v(empty)                                                    (E)

Exact enumeration satisfies (E) up to rounding; permutation sampling does too, because the
marginal contributions along one permutation telescope to v(N) - v(empty); the mixture
quadrature up to its stated error (royalflow.shapley.log_sum).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from royalflow.errors import AttributionError

Method = Literal["exact", "permutation", "mixture"]


@dataclass(frozen=True, eq=False)  # arrays have no single truth value: compare fields explicitly
class ShapleyResult:
    """phi_i per player with its standard error.

    values         float64 (n,), the Shapley values phi_i (in the utility's units, e.g. nats)
    std_errors     float64 (n,), standard error of each value; zeros for exact enumeration
    method         "exact", "permutation", or "mixture" (royalflow.shapley.mixture's quadrature;
                   std_errors are then its error estimate, not a sampling error)
    n_evaluations  utility evaluations used (coalitions handed to the utility)
    n_permutations permutations sampled; 0 for exact
    converged      exact, mixture: True. permutation: True only if a target standard error was given and
                   every player reached it before the budget ran out.

    The arrays are copied and made read-only, so a result really is frozen. Results compare by
    identity; compare ``values`` and ``std_errors`` with numpy.
    """

    values: np.ndarray
    std_errors: np.ndarray
    method: Method
    n_evaluations: int
    n_permutations: int
    converged: bool

    def __post_init__(self) -> None:
        # 1. Own read-only float64 copies: a caller cannot change a result after the fact.
        values = np.array(self.values, dtype=np.float64)
        std_errors = np.array(self.std_errors, dtype=np.float64)
        if values.ndim != 1 or std_errors.shape != values.shape:
            raise AttributionError(f"values {values.shape} and std_errors {std_errors.shape} must both be (n,)")
        if self.method not in ("exact", "permutation", "mixture"):
            raise AttributionError(f"unknown Shapley method {self.method!r}")
        values.flags.writeable = False
        std_errors.flags.writeable = False
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "std_errors", std_errors)

    @property
    def n_players(self) -> int:
        return int(self.values.shape[0])


def efficiency_gap(result: ShapleyResult, v_full: float, v_empty: float) -> float:
    """sum_i phi_i - (v(N) - v(empty)), the violation of (E); zero up to rounding for both methods."""
    return float(np.sum(result.values) - (float(v_full) - float(v_empty)))
