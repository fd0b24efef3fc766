"""Small games shared by the Shapley tests: tables built from set functions, and the definition."""

from __future__ import annotations

from collections.abc import Callable
from itertools import permutations
from math import factorial

import numpy as np


def table(n: int, fn: Callable[[frozenset[int]], float]) -> np.ndarray:
    """The 2^n utilities of a set function, indexed by bitmask."""
    return np.array([fn(frozenset(i for i in range(n) if mask >> i & 1)) for mask in range(1 << n)], dtype=float)


def brute_force(n: int, v: np.ndarray) -> np.ndarray:
    """Average marginal contribution over all n! orders: the definition, not formula (1)."""
    phi = np.zeros(n)
    for order in permutations(range(n)):
        mask = 0
        for player in order:
            phi[player] += v[mask | 1 << player] - v[mask]
            mask |= 1 << player
    return phi / factorial(n)


def as_callable(v: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """The table v as a callable utility over a (k, n) bool coalition matrix."""

    def utility(coalitions: np.ndarray) -> np.ndarray:
        masks = coalitions.astype(np.int64) @ (1 << np.arange(coalitions.shape[1], dtype=np.int64))
        return v[masks]

    return utility


def swap_players(v: np.ndarray, a: int, b: int) -> np.ndarray:
    """The same game with players a and b renamed into each other."""
    masks = np.arange(len(v))
    bit_a, bit_b = (masks >> a) & 1, (masks >> b) & 1
    swapped = masks & ~((1 << a) | (1 << b)) | (bit_a << b) | (bit_b << a)
    return v[swapped]


def drop_player(v: np.ndarray, k: int) -> np.ndarray:
    """v(S \\ {k}): player k becomes a null player."""
    return v[np.arange(len(v)) & ~(1 << k)]
