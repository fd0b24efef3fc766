"""Exact Shapley values by enumerating all 2^n coalitions, vectorised.

    phi_i = sum_{S subset N\\{i}} |S|! (n-|S|-1)! / n! * (v(S u {i}) - v(S))        (1)

Coalitions are bitmasks (bit i set <=> player i in S). With the 2^n utilities in one array,
(1) for player i is a weighted sum over the 2^(n-1) masks without bit i; numpy does each
player in one vectorised pass, so n = 20 (about a million coalitions) takes a fraction of a
second once the utilities are known.
"""

from __future__ import annotations

from collections.abc import Callable
from math import factorial

import numpy as np

from royalflow.errors import AttributionError
from royalflow.shapley.result import ShapleyResult

EXACT_MAX_PLAYERS = 25  # 2^25 float64 utilities = 256 MiB; beyond that, sample
CALLABLE_CHUNK_COALITIONS = 1 << 16  # bound on the (k, n) bool matrix handed to a callable

Utility = Callable[[np.ndarray], np.ndarray]


def popcounts(n: int) -> np.ndarray:
    """|S| for every mask 0 .. 2^n - 1."""
    counts = np.zeros(1 << n, dtype=np.int64)
    for bit in range(n):
        counts[1 << bit : 1 << (bit + 1)] = counts[: 1 << bit] + 1
    return counts


def coalition_matrix(masks: np.ndarray, n: int) -> np.ndarray:
    """Bool matrix (k, n): row r has player i iff bit i of masks[r] is set."""
    return ((masks[:, None] >> np.arange(n, dtype=np.int64)) & 1).astype(bool)


def evaluate_all(n: int, utility: Utility) -> np.ndarray:
    """v(S) for all 2^n masks, calling ``utility`` on bounded chunks of coalitions."""
    out = np.empty(1 << n, dtype=np.float64)
    for start in range(0, 1 << n, CALLABLE_CHUNK_COALITIONS):
        masks = np.arange(start, min(start + CALLABLE_CHUNK_COALITIONS, 1 << n), dtype=np.int64)
        values = np.asarray(utility(coalition_matrix(masks, n)), dtype=np.float64)
        if values.shape != masks.shape:
            raise AttributionError(f"utility returned shape {values.shape} for {len(masks)} coalitions")
        out[start : start + len(masks)] = values
    return out


def exact_shapley(n: int, utility: np.ndarray | Utility) -> ShapleyResult:
    """Exact Shapley values of an n-player game.

    ``utility`` is either an array of 2^n utilities indexed by bitmask, or a callable taking
    a bool array (k, n) of coalitions and returning k utilities.
    """
    if not isinstance(n, int) or n < 1:
        raise AttributionError(f"need at least one player, got n={n!r}")
    if n > EXACT_MAX_PLAYERS:
        raise AttributionError(f"exact Shapley is limited to {EXACT_MAX_PLAYERS} players (got {n}); use sample_shapley")
    v = evaluate_all(n, utility) if callable(utility) else np.asarray(utility, dtype=np.float64)
    if v.shape != (1 << n,):
        raise AttributionError(f"expected {1 << n} utilities for n={n}, got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise AttributionError("utilities must be finite")

    # 1. Weight of a coalition S without i: w(|S|) = |S|! (n-|S|-1)! / n!           (1)
    weights_by_size = np.array([factorial(s) * factorial(n - s - 1) / factorial(n) for s in range(n)])
    sizes = popcounts(n)
    masks = np.arange(1 << n, dtype=np.int64)
    values = np.empty(n, dtype=np.float64)
    for i in range(n):
        # 2. Masks without bit i, and the marginal contribution v(S u {i}) - v(S).
        without = masks[(masks >> i) & 1 == 0]
        marginal = v[without | (1 << i)] - v[without]
        values[i] = np.dot(weights_by_size[sizes[without]], marginal)
    return ShapleyResult(
        values=values, std_errors=np.zeros(n), method="exact", n_evaluations=1 << n, n_permutations=0, converged=True
    )
