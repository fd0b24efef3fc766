"""From a LoRA family's likelihood samples to an ``Attribution``: Shapley values, their
standard errors and the audit trail, for exact mode (a utility per coalition) and
compositional mode (the mixture utility over component likelihoods, ``shapley.mixture``).

Players are the manifest's clusters of owners (the quotient game, ``shapley/quotient.py``):
Shapley values over the clusters, split within each cluster by data size, on every path (full,
screen + refine) since every path ends here. Exact mode values the 2^k coalitions that are
unions of clusters; compositional mode the mixture over clusters (b_C = sum of its members'
terms, ``shapley.mixture``), a cluster's near-copies counted once in its weight
(``cluster_data_sizes``). Without clusters every owner is its own player.

Standard errors add, in quadrature: the Monte-Carlo error of the likelihoods (exact mode:
phi per sample, phi being linear in v; compositional: batch means, the utility being
nonlinear), the Shapley estimator's own error, and, for families that screened their owners
(``screen.py``), the effect of the screen's bound b: every value recomputed with all screened
owners' likelihoods moved by +b and by -b together, the larger change kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from royalflow.attribution.family import Attribution
from royalflow.errors import AttributionError
from royalflow.shapley import ShapleyResult, batch_means_std_errors, exact_shapley, mixture_shapley
from royalflow.shapley.quotient import quotient_masks

EXACT_SHAPLEY_MAX_OWNERS = 14  # compositional families above this use the mixture quadrature (shapley.mixture)


@dataclass(frozen=True)
class Players:
    """The quotient game's players: clusters of owners (index lists), and the data-size split of
    quotient.py (2) stored sparsely (thousands of owners): phi_i = phi_{C(i)} w_i / w_{C(i)}.
    ``recorded``: the manifest lists clusters (audit records then carry them)."""

    clusters: tuple[tuple[str, ...], ...]
    indices: list[list[int]]
    cluster_of: np.ndarray  # (n,) cluster index of each owner
    fraction: np.ndarray  # (n,) w_i / sum_{l in C(i)} w_l
    recorded: bool

    @property
    def trivial(self) -> bool:
        return len(self.indices) == len(self.cluster_of)

    def split(self, cluster_values: np.ndarray) -> np.ndarray:
        """Owners' values from the clusters' (the last axis indexes clusters)."""
        return np.asarray(cluster_values)[..., self.cluster_of] * self.fraction

    def masks(self) -> np.ndarray:
        """Owner bitmask of every cluster coalition (index: cluster bitmask), exact mode."""
        members = np.zeros((len(self.indices), len(self.cluster_of)), dtype=bool)
        for j, group in enumerate(self.indices):
            members[j, group] = True
        return quotient_masks(members)


def players_of(owners: Sequence[str], clusters: Sequence[Sequence[str]] | None, sizes: Sequence[float]) -> Players:
    """Players from the manifest's clusters (None: every owner its own); AttributionError if they
    do not partition the owners or a data size is not positive."""
    position = {o: i for i, o in enumerate(owners)}
    groups = [list(c) for c in clusters] if clusters is not None else [[o] for o in owners]
    cluster_of = np.full(len(owners), -1, dtype=np.int64)
    for j, group in enumerate(groups):
        for owner in group:
            if owner not in position or cluster_of[position[owner]] >= 0:
                raise AttributionError(f"cluster member {owner!r} is not an owner, or is in two clusters")
            cluster_of[position[owner]] = j
    if np.any(cluster_of < 0) or any(not g for g in groups):
        raise AttributionError("clusters must partition the owners (each owner in exactly one, none empty)")
    w = np.asarray(sizes, dtype=np.float64)
    if w.shape != (len(owners),) or np.any(w <= 0):
        raise AttributionError("data sizes must be positive, one per owner")
    totals = np.bincount(cluster_of, weights=w, minlength=len(groups))
    return Players(tuple(tuple(c) for c in groups), [[position[o] for o in g] for g in groups], cluster_of,
                   w / totals[cluster_of], clusters is not None)


def cluster_log_weights(log_weights: np.ndarray, players: Players, distinct: Sequence[int] | None) -> np.ndarray:
    """Mixture log-weights with each cluster's members scaled so that the cluster weighs its
    distinct images (a duplicated shell's copies count once): w_i <- w_i d_C / sum_{l in C} w_l."""
    out = np.array(log_weights, dtype=np.float64)
    if distinct is None or players.trivial:
        return out
    if len(distinct) != len(players.indices) or any(d <= 0 for d in distinct):
        raise AttributionError("cluster_data_sizes must give a positive count per cluster")
    for group, d in zip(players.indices, distinct):
        idx = np.array(group) + 1
        out[idx] += np.log(d) - np.log(np.exp(out[idx]).sum())
    return out


def _players(family: Any) -> Players | None:
    """The family's non-trivial players, or None (plain Shapley values over the owners)."""
    players = getattr(family, "players", None)
    return None if players is None or players.trivial else players


def _clusters(family: Any) -> tuple[tuple[str, ...], ...] | None:
    players = getattr(family, "players", None)
    return players.clusters if players is not None and players.recorded else None


def exact_attribution(family: Any, per_sample: np.ndarray, evaluations: int) -> Attribution:
    n = len(family.owners)
    k = per_sample.shape[1]
    utilities = per_sample.mean(axis=1)
    players = _players(family)
    if players is None:
        result = exact_shapley(n, utilities)
        # Standard error: Shapley values are linear in v, so phi per Monte-Carlo sample k.
        phi_samples = np.stack([exact_shapley(n, per_sample[:, j]).values for j in range(k)])
        values = result.values
    else:  # quotient game: the union-of-clusters coalitions only, then the data-size split
        rows = per_sample[[family.masks.index(int(m)) for m in players.masks()]]  # (2^clusters, K)
        c = len(players.indices)
        values = players.split(exact_shapley(c, rows.mean(axis=1)).values)
        phi_samples = np.stack([players.split(exact_shapley(c, rows[:, j]).values) for j in range(k)])
    keys = [hex(m) for m in family.masks]
    return Attribution(
        owners=family.owners, shapley_values=values,
        std_errors=phi_samples.std(axis=0, ddof=1) / np.sqrt(k), method="exact", mode="exact",
        coalition_utilities=dict(zip(keys, map(float, utilities))),
        utility_std_errors=dict(zip(keys, map(float, per_sample.std(axis=1, ddof=1) / np.sqrt(k)))),
        model_evaluations=evaluations, fairness=family.fairness, clusters=_clusters(family),
    )


def compositional_attribution(family: Any, component: np.ndarray, evaluations: int, *,
                              screened: Sequence[int] | None = None, screen: dict[str, Any] | None = None) -> Attribution:
    """``component``: (n+1, K) samples, rows base/control then owners. ``screened``: the owners
    (0-based) that were REFINED when the family screened; every other owner is at its screened
    value and ``screen['bound_nats']`` applies to it."""
    if not np.all(np.isfinite(component)):
        raise AttributionError(f"family {family.family_id}: non-finite component likelihoods")
    k = component.shape[1]
    means = component.mean(axis=1)

    players = _players(family)

    def shapley_of(m: np.ndarray) -> ShapleyResult:
        if players is None:
            return mixture_shapley(family.log_weights, m, exact_max_players=EXACT_SHAPLEY_MAX_OWNERS)
        q = mixture_shapley(family.log_weights, m, clusters=players.indices, exact_max_players=EXACT_SHAPLEY_MAX_OWNERS)
        return ShapleyResult(values=players.split(q.values), std_errors=players.split(q.std_errors),
                             method=q.method, n_evaluations=q.n_evaluations, n_permutations=q.n_permutations,
                             converged=q.converged)

    result = shapley_of(means)
    mc_se = batch_means_std_errors(shapley_of, component)  # nonlinear utility
    se = np.sqrt(mc_se**2 + result.std_errors**2)
    utility_se = component.std(axis=1, ddof=1) / np.sqrt(k)
    if screen is not None:
        bound = float(screen["bound_nats"])
        moved = np.ones(means.shape[0], dtype=bool)
        moved[0] = False
        moved[[1 + o for o in (screened or [])]] = False
        if moved.any():
            up, down = shapley_of(means + bound * moved).values, shapley_of(means - bound * moved).values
            se = np.sqrt(se**2 + np.maximum(np.abs(up - result.values), np.abs(down - result.values)) ** 2)
        utility_se = np.where(moved, np.sqrt(utility_se**2 + bound**2), utility_se)
    names = ["component:_base", *[f"component:{o}" for o in family.owners]]
    return Attribution(
        owners=family.owners, shapley_values=result.values, std_errors=se, method=result.method,
        mode="compositional", coalition_utilities=dict(zip(names, map(float, means))),
        utility_std_errors=dict(zip(names, map(float, utility_se))), model_evaluations=evaluations,
        fairness=family.fairness, screen=screen, clusters=_clusters(family),
    )
