"""The result of a Shapley computation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np


@dataclass(frozen=True)
class ShapleyResult:
    """phi_i per player, with standard errors (zero for exact enumeration)."""

    values: np.ndarray  # float64, shape (n,)
    std_errors: np.ndarray  # float64, shape (n,)
    method: Literal["exact", "permutation"]
    n_evaluations: int  # utility evaluations used
    n_permutations: int = 0  # permutations sampled (0 for exact)
    converged: bool = True  # sampling: every SE reached the target before the budget ran out

    def efficiency_gap(self, v_full: float, v_empty: float) -> float:
        """sum_i phi_i - (v(N) - v(empty)); zero for exact values up to rounding."""
        return float(self.values.sum() - (v_full - v_empty))
