"""Exact splits of an integer amount.

``apportion`` is the largest-remainder (Hamilton) method on exact rationals: every part is
floor(total * w_i / W) plus at most one unit, the parts sum to ``total`` exactly, and ties
in the remainder are broken by the caller's key (owner id), so the split is deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

from royalflow.errors import MoneyError


def apportion(total: int, weights: Sequence[float | int | Fraction], tie_keys: Sequence[str]) -> list[int]:
    """Split ``total`` in proportion to non-negative ``weights``; parts sum to ``total``.

    Weights are converted to exact fractions (a float is an exact binary rational), so the
    result does not depend on float summation order. All-zero weights are an error: the
    caller must route such a pool somewhere explicit (e.g. the unattributed account).
    """
    if not isinstance(total, int) or total < 0:
        raise MoneyError(f"total must be a non-negative integer, got {total!r}")
    if len(weights) != len(tie_keys):
        raise MoneyError("weights and tie_keys differ in length")
    # Exact rationals as integers over one common denominator (a float is an exact binary
    # rational): w_i = n_i / d_i = W_i / D with D = lcm(d_i). Same arithmetic as Fractions,
    # without their per-operation gcd (measured: 2x faster on the agent's 4-owner split).
    ratios = [_ratio(w) for w in weights]
    if any(n < 0 for n, _ in ratios):
        raise MoneyError("weights must be non-negative")
    common = math.lcm(*(d for _, d in ratios)) if ratios else 1
    scaled = [n * (common // d) for n, d in ratios]
    weight_sum = sum(scaled)
    if weight_sum == 0:
        raise MoneyError("cannot apportion over all-zero weights")

    # 1. Quotas q_i = total * W_i / sum(W); floors first, remainders as numerators over sum(W).
    floors_and_rest = [divmod(total * w, weight_sum) for w in scaled]
    parts = [f for f, _ in floors_and_rest]
    # 2. Hand the leftover units, one each, to the largest remainders q_i - floor(q_i);
    #    ties go to the smaller tie key (deterministic, documented).
    leftover = total - sum(parts)
    order = sorted(range(len(parts)), key=lambda i: (-floors_and_rest[i][1], tie_keys[i]))
    for i in order[:leftover]:
        parts[i] += 1
    # 3. Explicit check on the money path.
    if sum(parts) != total:
        raise MoneyError(f"apportionment lost units: {sum(parts)} != {total}")
    return parts


def _ratio(weight: float | int | Fraction) -> tuple[int, int]:
    """(numerator, positive denominator) of a weight, exactly."""
    if isinstance(weight, (int, float)):
        return weight.as_integer_ratio()  # ValueError for NaN, OverflowError for infinities, as Fraction
    exact = Fraction(weight)
    return exact.numerator, exact.denominator


def split_pool(revenue_amount: int, pool_fraction: Fraction) -> tuple[int, int]:
    """Split revenue into (royalty pool, platform share), rounding the pool down.

    The pool is floor(revenue * fraction); the platform keeps the rest, so the two sum to
    revenue exactly.
    """
    if not (0 <= pool_fraction <= 1):
        raise MoneyError(f"pool fraction {pool_fraction} is outside [0, 1]")
    if revenue_amount < 0:
        raise MoneyError(f"revenue {revenue_amount} is negative")
    pool = revenue_amount * pool_fraction.numerator // pool_fraction.denominator
    return pool, revenue_amount - pool
