"""The mixture utility of compositional families, and its Shapley values for up to 16,384 owners.

A compositional family values an item x by the mixture of its components: base/control 0 and
one per owner, with data sizes w_j and log-likelihoods l_j = log p_j(x):

    v(S) = log(w_0 e^{l_0} + sum_{i in S} w_i e^{l_i}) - log(w_0 + sum_{i in S} w_i).     (1)

1. ``mixture_utility``: (1) as a callable over a bool (k, n) coalition matrix, log-sum-exp stable.
2. ``mixture_shapley``: Shapley values of (1). Up to ``exact_max_players`` players by exact
   enumeration of that callable (royalflow.shapley.exact); above, without sampling: Shapley
   values are linear in the game and (1) is a difference of two log-sum games,
       v(S) = g(S; b^num) - g(S; b^den),   g(S; b) = log(1 + sum_{i in S} b_i),          (2)
       b^num_i = w_i e^{l_i} / (w_0 e^{l_0}),   b^den_i = w_i / w_0,
   (the constants log(w_0 e^{l_0}) and log w_0 cancel in every marginal), each valued by
   royalflow.shapley.log_sum: quadrature on an exact integral, with an error estimate per
   player that becomes ``std_errors`` (num + den). The denominator game does not depend on the
   item: it is computed once per weight vector (a small cache).
3. Quotient game over clusters C_1..C_k (index lists partitioning the owners): the quotient of
   a mixture is the mixture over clusters, b_C = sum_{i in C} b_i, so the fast path values
   k players; the exact path evaluates (1) on the union of the clusters in each coalition,
   exactly as royalflow.shapley.quotient.quotient_coalitions does.

    >>> import numpy as np
    >>> log_w, ll = np.log([4.0, 1.0, 1.0]), np.array([0.0, 2.0, 0.0])  # base, two owners
    >>> r = mixture_shapley(log_w, ll)
    >>> r.method, r.values.round(4).tolist()
    ('exact', [0.7741, -0.0491])
    >>> q = mixture_shapley(log_w, ll, exact_max_players=0)  # the fast path, forced
    >>> q.method, q.values.round(4).tolist(), bool(q.std_errors.max() < 1e-3)
    ('mixture', [0.7741, -0.0491], True)
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence

import numpy as np

from royalflow.errors import AttributionError
from royalflow.shapley.exact import EXACT_MAX_PLAYERS, Utility, exact_shapley
from royalflow.shapley.log_sum import log_sum_shapley
from royalflow.shapley.quotient import quotient_coalitions
from royalflow.shapley.result import ShapleyResult

MIXTURE_EXACT_MAX_PLAYERS = 14  # 2^14 coalitions: a few ms; the fast path above
MIXTURE_MAX_PLAYERS = 16_384  # owners (and clusters); as sample_shapley's limit
DENOMINATOR_CACHE_SIZE = 64  # weight vectors (families x cluster layouts) kept valued


def _checked(log_weights: object, component_ll: object) -> tuple[np.ndarray, np.ndarray]:
    """Both as finite float64 (n + 1,), 1 <= n <= MIXTURE_MAX_PLAYERS, or AttributionError."""
    lw = np.asarray(log_weights, dtype=np.float64)
    ll = np.asarray(component_ll, dtype=np.float64)
    if lw.ndim != 1 or ll.shape != lw.shape:
        raise AttributionError(f"log_weights {lw.shape} and component_ll {ll.shape} must both be (n + 1,)")
    if not 2 <= lw.shape[0] <= MIXTURE_MAX_PLAYERS + 1:
        raise AttributionError(f"need the base and 1..{MIXTURE_MAX_PLAYERS} owners, got {lw.shape[0]} components")
    if not np.all(np.isfinite(lw)):
        raise AttributionError("every mixture weight must be positive and finite (log weights finite)")
    if not np.all(np.isfinite(ll)):
        raise AttributionError("component log-likelihoods must be finite")
    return lw, ll


def _labels(clusters: Sequence[Sequence[int]], n: int) -> np.ndarray:
    """Cluster index of every owner, (n,), from index lists that partition 0..n-1; else AttributionError."""
    if not 1 <= len(clusters) <= MIXTURE_MAX_PLAYERS:
        raise AttributionError(f"need 1..{MIXTURE_MAX_PLAYERS} clusters, got {len(clusters)}")
    labels = np.full(n, -1, dtype=np.int64)
    for j, group in enumerate(clusters):
        if len(group) == 0:
            raise AttributionError(f"cluster {j} is empty; clusters must partition the owners")
        for index in group:
            try:
                i = operator.index(index)
            except TypeError:
                raise AttributionError(f"cluster member {index!r} is not an owner index") from None
            if isinstance(index, bool) or not 0 <= i < n:
                raise AttributionError(f"cluster member {index!r} is not an owner index in 0..{n - 1}")
            if labels[i] >= 0:
                raise AttributionError(f"owner {i} is in two clusters; clusters must partition the owners")
            labels[i] = j
    if np.any(labels < 0):
        raise AttributionError(f"owners {np.flatnonzero(labels < 0)[:10].tolist()} are in no cluster")
    return labels


def _by_cluster(values: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """log sum_{i in C} e^{values_i} for every cluster C (the quotient's log b_C)."""
    order = np.argsort(labels, kind="stable")
    starts = np.searchsorted(labels[order], np.arange(k))
    return np.logaddexp.reduceat(values[order], starts)


def mixture_utility(log_weights: np.ndarray, component_ll: np.ndarray) -> Utility:
    """v of (1) over a bool (k, n) coalition matrix, from log w_0..w_n and l_0..l_n (n + 1 each)."""
    lw, ll = _checked(log_weights, component_ll)
    terms = lw + ll
    weights = np.exp(lw)
    n = lw.shape[0] - 1

    def v(coalitions: np.ndarray) -> np.ndarray:
        if coalitions.ndim != 2 or coalitions.shape[1] != n:
            raise AttributionError(f"coalitions must be a (k, {n}) bool matrix, got shape {coalitions.shape}")
        # The base is in every coalition; log-sum-exp from the largest present term.
        member = np.concatenate([np.ones((coalitions.shape[0], 1), bool), coalitions.astype(bool)], axis=1)
        masked = np.where(member, terms, -np.inf)
        top = masked.max(axis=1, keepdims=True)
        log_num = top[:, 0] + np.log(np.exp(masked - top).sum(axis=1))
        return log_num - np.log(np.where(member, weights, 0.0).sum(axis=1))

    return v


@functools.lru_cache(maxsize=DENOMINATOR_CACHE_SIZE)
def _denominator(beta: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Shapley values (and error estimates) of g(S; b^den), keyed by log b^den's bytes."""
    phi, error = log_sum_shapley(np.frombuffer(beta, dtype=np.float64))
    phi.flags.writeable = False
    error.flags.writeable = False
    return phi, error


def mixture_shapley(
    log_weights: np.ndarray,
    component_ll: np.ndarray,
    *,
    clusters: Sequence[Sequence[int]] | None = None,
    exact_max_players: int = MIXTURE_EXACT_MAX_PLAYERS,
) -> ShapleyResult:
    """Shapley values of (1) over the owners, or over ``clusters`` (index lists partitioning
    0..n-1; the result then has one value per cluster, in their order).

    ``log_weights`` = log w_0..w_n and ``component_ll`` = l_0..l_n (index 0: base/control).
    Players <= ``exact_max_players`` (at most 25): exact enumeration, method "exact". More:
    method "mixture", deterministic, ``std_errors`` = the stated error estimate (log_sum step 6).
    Raises AttributionError for non-finite inputs, shapes that disagree, bad clusters, and (fast
    path) a grand mixture over 5,000 nats likelier than the base (log_sum.MAX_LOG_TOTAL).
    """
    lw, ll = _checked(log_weights, component_ll)
    n = lw.shape[0] - 1
    labels = None if clusters is None else _labels(clusters, n)
    players = n if clusters is None else len(clusters)
    limit = operator.index(exact_max_players)
    if not 0 <= limit <= EXACT_MAX_PLAYERS:
        raise AttributionError(f"exact_max_players must be in 0..{EXACT_MAX_PLAYERS}, got {exact_max_players!r}")
    if players <= limit:
        owner_v = mixture_utility(lw, ll)
        if labels is None:
            return exact_shapley(n, owner_v)
        members = labels[None, :] == np.arange(players)[:, None]
        return exact_shapley(players, lambda c: owner_v(quotient_coalitions(members, c)))
    # (2) over the players: log b_i, or for a cluster log b_C = logsumexp of its members' log b_i.
    terms = lw + ll
    beta_num, beta_den = terms[1:] - terms[0], lw[1:] - lw[0]
    if labels is not None:
        beta_num, beta_den = _by_cluster(beta_num, labels, players), _by_cluster(beta_den, labels, players)
    phi_num, error_num = log_sum_shapley(beta_num)
    phi_den, error_den = _denominator(beta_den.tobytes())
    return ShapleyResult(
        values=phi_num - phi_den,
        std_errors=error_num + error_den,
        method="mixture",
        n_evaluations=0,
        n_permutations=0,
        converged=True,
    )
