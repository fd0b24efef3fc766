"""Shapley values by (antithetic) permutation sampling, with standard errors and a stopping rule.

For a uniformly random order pi of the players, the marginal contribution of player i,

    m_i(pi) = v(Pre_i(pi) u {i}) - v(Pre_i(pi)),                                     (1)

(Pre_i = the players before i) is an unbiased estimate of phi_i: phi_i is its mean over all n!
orders. Antithetic sampling pairs each order with its reverse, where every prefix becomes the
complement's prefix; for the usual near-monotone utilities the two marginals are negatively
correlated and their mean varies less. The two halves of a pair are NOT independent, so the
pair mean is one sample: with P independent samples x_p,

    phi_i ~ mean_p x_p,       SE_i = std_p(x_p) / sqrt(P)  (ddof = 1).               (2)

Sampling stops when every SE_i <= target (after at least MIN_SAMPLES_TO_STOP samples, so an
SE estimated from a handful of samples cannot stop it) or when the permutation budget is spent.
SE_i shrinks as 1/sqrt(P), so the next batch is sized to reach the target:

    P_next = P * (max_i SE_i / target)^2 - P, within [one sample, the batch limit].     (3)

Cost: the n-1 interior prefixes of every permutation are evaluated (v(empty) and v(N) once for
the run), so n_evaluations = 2 + permutations * (n - 1). All prefixes of a batch of permutations
go to the utility as one bool (k, n) matrix, split only where it would pass MAX_CALL_CELLS cells
(16 MiB of bools), so a batched model backend sees few, large calls. Nothing of size 2^n is
built: n may be several thousand (limit SAMPLE_MAX_PLAYERS), at O(n^2) cells per permutation.
The same seed gives the same numbers: permutations come from numpy's Generator(seed) in order.
"""

from __future__ import annotations

import math

import numpy as np

from royalflow.errors import AttributionError
from royalflow.shapley.exact import Utility, checked_utilities, player_count
from royalflow.shapley.result import ShapleyResult

SAMPLE_MAX_PLAYERS = 16_384  # one permutation is then 2.7e8 prefix cells; beyond, too slow anyway
MAX_CALL_CELLS = 1 << 24  # bool cells (coalitions x players) per utility call: 16 MiB
MAX_BATCH_PERMUTATIONS = 4096  # permutations between two stopping checks
MIN_SAMPLES_TO_STOP = 30  # independent samples (pairs) before an SE may stop the run
DEFAULT_MAX_PERMUTATIONS = 10_000


class _Moments:
    """Running count, mean and sum of squared deviations per player, merged batch by batch
    (Chan et al.'s parallel update): numerically stable, and no list of samples to re-stack."""

    def __init__(self, n: int) -> None:
        self.count = 0
        self.mean = np.zeros(n)
        self.m2 = np.zeros(n)

    def add(self, samples: np.ndarray) -> None:
        size = samples.shape[0]
        batch_mean = samples.mean(axis=0)
        batch_m2 = ((samples - batch_mean) ** 2).sum(axis=0)
        total = self.count + size
        delta = batch_mean - self.mean
        self.mean = self.mean + delta * (size / total)
        self.m2 = self.m2 + batch_m2 + delta**2 * (self.count * size / total)
        self.count = total

    def std_errors(self) -> np.ndarray:
        if self.count < 2:
            return np.full(self.mean.shape, np.inf)
        return np.sqrt(self.m2 / (self.count - 1) / self.count)  # (2)


def _marginals(n: int, utility: Utility, perms: np.ndarray, v_empty: float, v_full: float) -> np.ndarray:
    """m[p, i] of (1) for every permutation row of ``perms`` (shape (P, n))."""
    count = perms.shape[0]
    rows = np.arange(count)[:, None]
    # 1. position[p, i] = where player i stands in permutation p; prefix j = {i : position < j}.
    positions = np.empty((count, n), dtype=np.int32)
    positions[rows, perms] = np.arange(n, dtype=np.int32)
    values = np.empty((count, n + 1), dtype=np.float64)
    values[:, 0] = v_empty
    values[:, n] = v_full
    # 2. Interior prefixes j = 1..n-1 of many permutations per call, bounded by MAX_CALL_CELLS;
    #    when one permutation alone is larger, its prefixes are split across calls.
    interior = n - 1
    if interior > 0:
        fits_whole = interior * n <= MAX_CALL_CELLS
        perms_per_call = max(1, MAX_CALL_CELLS // (interior * n))
        steps_per_call = interior if fits_whole else max(1, MAX_CALL_CELLS // n)
        for p0 in range(0, count, perms_per_call):
            p1 = min(p0 + perms_per_call, count)
            for j0 in range(1, n, steps_per_call):
                j1 = min(j0 + steps_per_call, n)
                steps = np.arange(j0, j1, dtype=np.int32)
                block = positions[p0:p1, None, :] < steps[None, :, None]  # (P', J', n)
                k = (p1 - p0) * (j1 - j0)
                answer = checked_utilities(utility(block.reshape(k, n)), k)
                values[p0:p1, j0:j1] = answer.reshape(p1 - p0, j1 - j0)
    # 3. Player perms[p, j] joins at step j: m = v(prefix j+1) - v(prefix j).               (1)
    out = np.empty((count, n), dtype=np.float64)
    out[rows, perms] = np.diff(values, axis=1)
    return out


def _checked_options(
    target_std_error: float | None, max_permutations: int, batch_permutations: int | None, per_sample: int, n: int
) -> tuple[int, int]:
    """(max_permutations, batch limit) after explicit checks; both multiples of ``per_sample``."""
    if target_std_error is not None and not (math.isfinite(target_std_error) and target_std_error > 0):
        raise AttributionError(f"target_std_error must be a positive number, got {target_std_error!r}")
    budget = int(max_permutations) - int(max_permutations) % per_sample
    if budget < 2 * per_sample:
        raise AttributionError(
            f"max_permutations must allow two independent samples ({2 * per_sample}), got {max_permutations}"
        )
    if batch_permutations is None:
        # Default: as many permutations as fill one utility call.
        batch = min(MAX_BATCH_PERMUTATIONS, max(1, MAX_CALL_CELLS // max(1, (n - 1) * n)))
    else:
        batch = int(batch_permutations)
        if not 1 <= batch <= MAX_BATCH_PERMUTATIONS:
            raise AttributionError(
                f"batch_permutations must be in 1..{MAX_BATCH_PERMUTATIONS}, got {batch_permutations}"
            )
    batch = max(per_sample, batch - batch % per_sample)
    return budget, batch


def sample_shapley(
    n: int,
    utility: Utility,
    *,
    seed: int,
    target_std_error: float | None = None,
    max_permutations: int = DEFAULT_MAX_PERMUTATIONS,
    antithetic: bool = True,
    batch_permutations: int | None = None,
) -> ShapleyResult:
    """Estimate the Shapley values of an n-player game by permutation sampling, formulas (1)-(3).

    ``utility`` takes a bool array (k, n) of coalitions (row = coalition, True = player in it)
    and returns k finite utilities. ``seed`` seeds numpy's Generator: same seed, same numbers.
    Stops when every player's standard error is <= ``target_std_error`` (``converged=True``) or
    after ``max_permutations`` permutations (rounded down to whole antithetic pairs); without a
    target it spends the whole budget and ``converged`` is False. ``batch_permutations`` caps the
    permutations evaluated between two stopping checks (default: as many as fill one utility
    call of MAX_CALL_CELLS cells). With ``antithetic`` every permutation comes with its reverse
    and the pair counts as one sample for the standard error.
    """
    n = player_count(n, SAMPLE_MAX_PLAYERS)
    if not callable(utility):
        raise AttributionError(
            "sample_shapley needs a callable utility over a (k, n) bool matrix; for a table use exact_shapley"
        )
    per_sample = 2 if antithetic else 1
    budget, batch = _checked_options(target_std_error, max_permutations, batch_permutations, per_sample, n)
    rng = np.random.default_rng(seed)

    # 1. v(empty) and v(N) end every permutation; evaluate them once.
    ends = np.zeros((2, n), dtype=bool)
    ends[1] = True
    v_empty, v_full = checked_utilities(utility(ends), 2)

    moments = _Moments(n)
    used = 0
    converged = False
    # With a target, the first batch is just enough to trust an SE; (3) sizes the rest.
    take = min(batch, MIN_SAMPLES_TO_STOP * per_sample) if target_std_error is not None else batch
    while used < budget:
        take = min(take, budget - used)
        samples_now = take // per_sample
        # 2. Uniform random orders: argsort of i.i.d. uniforms (ties have probability ~0).
        forward = np.argsort(rng.random((samples_now, n)), axis=1)
        perms = np.concatenate([forward, forward[:, ::-1]]) if antithetic else forward
        marginals = _marginals(n, utility, perms, float(v_empty), float(v_full))
        # 3. A pair is one sample: average the permutation with its reverse first.          (2)
        moments.add((marginals[:samples_now] + marginals[samples_now:]) / 2 if antithetic else marginals)
        used += take
        if target_std_error is None:
            continue
        worst = float(moments.std_errors().max())
        if moments.count >= MIN_SAMPLES_TO_STOP and worst <= target_std_error:
            converged = True
            break
        # 4. Next batch from (3); at least one sample, at most the batch limit.
        wanted = 1
        if math.isfinite(worst):
            wanted = math.ceil(moments.count * (worst / target_std_error) ** 2) - moments.count
        needed_for_trust = MIN_SAMPLES_TO_STOP - moments.count
        take = per_sample * min(batch // per_sample, max(1, wanted, needed_for_trust))
    return ShapleyResult(
        values=moments.mean,
        std_errors=moments.std_errors(),
        method="permutation",
        n_evaluations=2 + used * (n - 1),
        n_permutations=used,
        converged=converged,
    )
