"""The Shapley engine: exact enumeration and permutation sampling over any coalition utility,
and the mixture utility of compositional families with its own fast Shapley values.

A game has n players 0..n-1 and a utility v over coalitions, given either as
  * a float array of the 2^n utilities indexed by bitmask (bit i set <=> player i in S), or
  * a callable taking a bool array (k, n), one coalition per row, and returning k floats.

    >>> import numpy as np
    >>> from royalflow.shapley import exact_shapley, sample_shapley
    >>> glove = np.array([0, 0, 0, 1, 0, 1, 0, 1], dtype=float)  # player 0 left, 1-2 right gloves
    >>> exact_shapley(3, glove).values.round(4).tolist()
    [0.6667, 0.1667, 0.1667]
    >>> w = np.arange(1.0, 5.0)
    >>> sample_shapley(4, lambda c: c @ w, seed=0, max_permutations=8).values.tolist()  # additive
    [1.0, 2.0, 3.0, 4.0]

``exact_shapley`` for up to EXACT_MAX_PLAYERS (25) players; ``sample_shapley`` for more, with
standard errors and a stopping rule. Both return a frozen ``ShapleyResult``.
``mixture_utility`` / ``mixture_shapley`` (royalflow.shapley.mixture): the one definition of the
compositional mixture utility, valued exactly up to 14 players and by deterministic quadrature
(method "mixture", with an error estimate) up to 16,384.
"""

from royalflow.shapley.batch_means import BATCH_MEANS_GROUPS, batch_means_std_errors
from royalflow.shapley.exact import EXACT_MAX_PLAYERS, Utility, coalition_matrix, exact_shapley
from royalflow.shapley.mixture import (
    MIXTURE_EXACT_MAX_PLAYERS, MIXTURE_MAX_PLAYERS, mixture_shapley, mixture_utility,
)
from royalflow.shapley.result import ShapleyResult, efficiency_gap
from royalflow.shapley.sampling import SAMPLE_MAX_PLAYERS, sample_shapley

__all__ = [
    "BATCH_MEANS_GROUPS",
    "EXACT_MAX_PLAYERS",
    "MIXTURE_EXACT_MAX_PLAYERS",
    "MIXTURE_MAX_PLAYERS",
    "SAMPLE_MAX_PLAYERS",
    "ShapleyResult",
    "Utility",
    "batch_means_std_errors",
    "coalition_matrix",
    "efficiency_gap",
    "exact_shapley",
    "mixture_shapley",
    "mixture_utility",
    "sample_shapley",
]
