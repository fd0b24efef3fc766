"""Shapley values by antithetic permutation sampling, with standard errors and a stopping rule.

For a uniformly random permutation pi, the marginal contribution of player i,
    m_i(pi) = v(Pre_i(pi) u {i}) - v(Pre_i(pi)),                                     (1)
is an unbiased estimate of phi_i. Antithetic sampling pairs each permutation with its
reverse; the pair mean (m_i(pi) + m_i(rev pi)) / 2 is one sample (pairs are independent,
the two halves are not), so
    phi_i ~ mean over pairs,   SE_i = std over pairs / sqrt(pairs).                  (2)
Sampling stops when every SE_i <= target, or the permutation budget is spent. Utilities are
evaluated in batches: all n+1 prefixes of a batch of permutations form one (k, n) matrix.
"""

from __future__ import annotations

import numpy as np

from royalflow.errors import AttributionError
from royalflow.shapley.exact import Utility
from royalflow.shapley.result import ShapleyResult

MIN_PAIRS = 8  # never trust an SE from fewer pairs
MAX_BATCH_COALITIONS = 1 << 18  # bound on the coalition matrix per utility call


def _marginals(n: int, utility: Utility, perms: np.ndarray) -> np.ndarray:
    """m[p, i] of (1) for each permutation row of ``perms`` (shape (P, n))."""
    count = perms.shape[0]
    # 1. Prefix coalitions: row j of permutation p holds its first j players (j = 0..n).
    positions = np.empty_like(perms)
    positions[np.arange(count)[:, None], perms] = np.arange(n)
    prefixes = positions[:, None, :] < np.arange(n + 1)[None, :, None]  # (P, n+1, n)
    values = np.asarray(utility(prefixes.reshape(-1, n)), dtype=np.float64).reshape(count, n + 1)
    if not np.all(np.isfinite(values)):
        raise AttributionError("utilities must be finite")
    # 2. Player perms[p, j] joins at step j: m = v(prefix j+1) - v(prefix j).
    steps = np.diff(values, axis=1)
    out = np.empty((count, n), dtype=np.float64)
    out[np.arange(count)[:, None], perms] = steps
    return out


def sample_shapley(
    n: int,
    utility: Utility,
    *,
    seed: int,
    target_std_error: float | None = None,
    max_permutations: int = 10_000,
    antithetic: bool = True,
    batch_permutations: int | None = None,
) -> ShapleyResult:
    """Estimate Shapley values of an n-player game by (antithetic) permutation sampling.

    ``utility`` takes a bool array (k, n) of coalitions and returns k utilities. Same seed,
    same numbers. Stops at ``target_std_error`` (every player) or ``max_permutations``.
    """
    if n < 1:
        raise AttributionError(f"need at least one player, got n={n}")
    if max_permutations < 2:
        raise AttributionError("max_permutations must be at least 2")
    rng = np.random.default_rng(seed)
    per_pair = 2 if antithetic else 1
    batch = batch_permutations or max(per_pair, min(256, MAX_BATCH_COALITIONS // (n + 1)))
    batch = max(per_pair, batch - batch % per_pair)
    samples: list[np.ndarray] = []  # one row per pair (antithetic) or per permutation
    used = 0
    converged = False
    while used < max_permutations:
        take = min(batch, max_permutations - used)
        take -= take % per_pair
        if take == 0:
            break
        half = take // per_pair
        forward = np.argsort(rng.random((half, n)), axis=1)
        perms = np.concatenate([forward, forward[:, ::-1]]) if antithetic else forward
        marginals = _marginals(n, utility, perms)
        # 3. Antithetic pairs average first: one independent sample per pair.       (2)
        samples.append((marginals[:half] + marginals[half:]) / 2 if antithetic else marginals)
        used += take
        stacked = np.concatenate(samples)
        if target_std_error is not None and len(stacked) >= MIN_PAIRS:
            se = stacked.std(axis=0, ddof=1) / np.sqrt(len(stacked))
            if np.all(se <= target_std_error):
                converged = True
                break
    stacked = np.concatenate(samples)
    count = len(stacked)
    se = stacked.std(axis=0, ddof=1) / np.sqrt(count) if count > 1 else np.full(n, np.inf)
    return ShapleyResult(
        values=stacked.mean(axis=0),
        std_errors=se,
        method="permutation",
        n_evaluations=used * (n + 1),
        n_permutations=used,
        converged=converged or target_std_error is None,
    )
