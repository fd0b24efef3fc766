"""Exact Shapley values by enumerating all 2^n coalitions, vectorised.

    phi_i = sum_{S subset N\\{i}} w(|S|) * (v(S u {i}) - v(S)),
    w(s)  = s! (n-s-1)! / n!                                                         (1)

Coalitions are bitmasks: bit i set <=> player i in S, so v is one float64 array of length 2^n.
Viewing v as shape (2^(n-i-1), 2, 2^i) puts every mask without bit i in [:, 0, :] and its
partner S u {i} in [:, 1, :] at the same position, so (1) for player i is one elementwise
difference, product and sum over 2^(n-1) entries, with no index arrays. n = 20 (a million
coalitions) takes about a tenth of a second once the utilities are known.

Limits: at most EXACT_MAX_PLAYERS = 25 players (2^25 float64 utilities are 256 MiB, and the
pass needs about three times that). A callable utility is evaluated on chunks of at most
CALLABLE_CHUNK_COALITIONS coalitions, so the bool matrix handed to it is at most
65,536 x 25 cells however large n is.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from math import factorial

import numpy as np

from royalflow.errors import AttributionError
from royalflow.shapley.result import ShapleyResult

EXACT_MAX_PLAYERS = 25  # 2^25 float64 utilities = 256 MiB; beyond that, sample_shapley
CALLABLE_CHUNK_COALITIONS = 1 << 16  # rows of the (k, n) bool matrix per utility call

Utility = Callable[[np.ndarray], np.ndarray]
"""A coalition utility: bool array (k, n), row r = coalition r (True = player in it) -> float array (k,)."""


def player_count(n: object, limit: int) -> int:
    """n as a plain int in 1..limit, or AttributionError."""
    try:
        count = operator.index(n)  # type: ignore[arg-type]
    except TypeError:
        raise AttributionError(f"the number of players must be an integer, got {n!r}") from None
    if isinstance(n, bool) or count < 1:
        raise AttributionError(f"need at least one player, got n={n!r}")
    if count > limit:
        raise AttributionError(f"{count} players is over the limit of {limit} for this method")
    return count


def coalition_matrix(masks: np.ndarray, n: int) -> np.ndarray:
    """Bool matrix (k, n): row r holds player i iff bit i of masks[r] is set (n <= 64)."""
    # Little-endian bytes of each mask, unpacked least significant bit first: column i = bit i.
    as_bytes = np.asarray(masks, dtype="<u8").reshape(-1).view(np.uint8).reshape(-1, 8)
    return np.unpackbits(as_bytes, axis=1, count=n, bitorder="little").view(bool)


def coalition_sizes(n: int) -> np.ndarray:
    """|S| (popcount) of every mask 0 .. 2^n - 1, built by doubling: sizes[m | 2^b] = sizes[m] + 1."""
    sizes = np.zeros(1 << n, dtype=np.uint8)
    for bit in range(n):
        sizes[1 << bit : 1 << (bit + 1)] = sizes[: 1 << bit] + 1
    return sizes


def checked_utilities(values: object, count: int) -> np.ndarray:
    """A utility's answer for ``count`` coalitions as finite float64 (count,), or AttributionError."""
    out = np.asarray(values, dtype=np.float64)
    if out.shape != (count,):
        raise AttributionError(f"utility returned shape {out.shape} for {count} coalitions; expected ({count},)")
    if not np.all(np.isfinite(out)):
        raise AttributionError("utilities must be finite (got NaN or infinity)")
    return out


def all_utilities(n: int, utility: Utility) -> np.ndarray:
    """v(S) for all 2^n masks, calling ``utility`` on chunks of CALLABLE_CHUNK_COALITIONS rows."""
    out = np.empty(1 << n, dtype=np.float64)
    for start in range(0, 1 << n, CALLABLE_CHUNK_COALITIONS):
        masks = np.arange(start, min(start + CALLABLE_CHUNK_COALITIONS, 1 << n), dtype=np.int64)
        out[start : start + len(masks)] = checked_utilities(utility(coalition_matrix(masks, n)), len(masks))
    return out


def exact_shapley(n: int, utility: np.ndarray | Utility) -> ShapleyResult:
    """Exact Shapley values of an n-player game, by formula (1) over all 2^n coalitions.

    ``utility`` is either
      * an array of the 2^n utilities indexed by bitmask (bit i set <=> player i in S), or
      * a callable taking a bool array (k, n) of coalitions and returning k utilities; it is
        called on chunks of at most 65,536 coalitions.
    Raises AttributionError for n > EXACT_MAX_PLAYERS (use ``sample_shapley``), a table of the
    wrong length, or utilities that are not finite.
    """
    n = player_count(n, EXACT_MAX_PLAYERS)
    if callable(utility):
        v = all_utilities(n, utility)
    else:
        table = np.asarray(utility, dtype=np.float64)
        if table.shape != (1 << n,):
            raise AttributionError(f"expected {1 << n} utilities (2^{n}, indexed by bitmask), got shape {table.shape}")
        v = checked_utilities(table, 1 << n)

    # 1. w(|S|) of (1) for every mask; exact integer factorials, one rounding each. The full
    #    coalition never lacks a player, so its weight (index n) is never read: 0.
    weights_by_size = np.array([factorial(s) * factorial(n - s - 1) / factorial(n) for s in range(n)] + [0.0])
    weights = weights_by_size[coalition_sizes(n)]
    values = np.empty(n, dtype=np.float64)
    for i in range(n):
        # 2. Pair every S without i ([:, 0, :]) with S u {i} ([:, 1, :]) by a reshape (no copy).
        pairs = v.reshape(-1, 2, 1 << i)
        # 3. Difference first, then weight, then sum: the marginals are often tiny next to v
        #    (log-likelihoods of thousands of nats), so subtracting two weighted totals would
        #    cancel away the digits that matter.
        marginal = pairs[:, 1, :] - pairs[:, 0, :]
        marginal *= weights.reshape(-1, 2, 1 << i)[:, 0, :]
        values[i] = marginal.sum()
    return ShapleyResult(
        values=values,
        std_errors=np.zeros(n),
        method="exact",
        n_evaluations=1 << n,
        n_permutations=0,
        converged=True,
    )
