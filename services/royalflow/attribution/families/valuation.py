"""From a LoRA family's likelihood samples to an ``Attribution``: Shapley values, their
standard errors and the audit trail, for exact mode (a utility per coalition) and
compositional mode (the mixture utility over component likelihoods, ``shapley.mixture``).

Standard errors add, in quadrature: the Monte-Carlo error of the likelihoods (exact mode:
phi per sample, phi being linear in v; compositional: batch means, the utility being
nonlinear), the Shapley estimator's own error, and, for families that screened their owners
(``screen.py``), the effect of the screen's bound b: every value recomputed with all screened
owners' likelihoods moved by +b and by -b together, the larger change kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from royalflow.attribution.family import Attribution
from royalflow.errors import AttributionError
from royalflow.shapley import ShapleyResult, batch_means_std_errors, exact_shapley, sample_shapley


def mixture_shapley(log_weights: np.ndarray, component_ll: np.ndarray, *, seed: int) -> ShapleyResult:
    """Shapley values over the mixture utility (exact up to 14 owners, then sampling)."""
    terms = log_weights + component_ll
    weights = np.exp(log_weights)

    def v(coalitions: np.ndarray) -> np.ndarray:
        member = np.concatenate([np.ones((coalitions.shape[0], 1), bool), coalitions.astype(bool)], axis=1)
        masked = np.where(member, terms, -np.inf)
        top = masked.max(axis=1, keepdims=True)
        return top[:, 0] + np.log(np.exp(masked - top).sum(axis=1)) - np.log(np.where(member, weights, 0.0).sum(axis=1))

    n = len(component_ll) - 1
    if n <= 14:
        return exact_shapley(n, v)
    return sample_shapley(n, v, seed=seed, target_std_error=0.01, max_permutations=200)


def exact_attribution(family: Any, per_sample: np.ndarray, evaluations: int) -> Attribution:
    n = len(family.owners)
    k = per_sample.shape[1]
    utilities = per_sample.mean(axis=1)
    result = exact_shapley(n, utilities)
    # Standard error: Shapley values are linear in v, so phi per Monte-Carlo sample k.
    phi_samples = np.stack([exact_shapley(n, per_sample[:, j]).values for j in range(k)])
    keys = [hex(m) for m in family.masks]
    return Attribution(
        owners=family.owners, shapley_values=result.values,
        std_errors=phi_samples.std(axis=0, ddof=1) / np.sqrt(k), method="exact", mode="exact",
        coalition_utilities=dict(zip(keys, map(float, utilities))),
        utility_std_errors=dict(zip(keys, map(float, per_sample.std(axis=1, ddof=1) / np.sqrt(k)))),
        model_evaluations=evaluations, fairness=family.fairness,
    )


def compositional_attribution(family: Any, component: np.ndarray, evaluations: int, seed: int, *,
                              screened: Sequence[int] | None = None, screen: dict[str, Any] | None = None) -> Attribution:
    """``component``: (n+1, K) samples, rows base/control then owners. ``screened``: the owners
    (0-based) that were REFINED when the family screened; every other owner is at its screened
    value and ``screen['bound_nats']`` applies to it."""
    if not np.all(np.isfinite(component)):
        raise AttributionError(f"family {family.family_id}: non-finite component likelihoods")
    k = component.shape[1]
    means = component.mean(axis=1)

    def shapley_of(m: np.ndarray) -> ShapleyResult:
        return mixture_shapley(family.log_weights, m, seed=seed)

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
        fairness=family.fairness, screen=screen,
    )
