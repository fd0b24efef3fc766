"""From Shapley values to money: the Shapley Royalty Share policy.

    share_i = max(phi_i, 0) / sum_j max(phi_j, 0)                (brief, "Royalty share")
    pool    = floor(revenue * pool_fraction)                      (platform keeps the rest)
    amount_i = largest-remainder apportionment of pool by share_i (parts sum to pool exactly)

When no owner has a positive value the whole pool goes to the explicit ``_unattributed``
account; it never vanishes. Every generation yields one contribution per owner (zero amounts
included, so the audit trail names every owner) plus, if needed, one unattributed part.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from royalflow.attribution.family import Attribution, Family, Prepared
from royalflow.contracts import AttributionRecord, ContributionEvent, UNATTRIBUTED_OWNER
from royalflow.errors import AttributionError
from royalflow.money import apportion, split_pool


def contribution_id(generation_id: str, owner_id: str, revision: int = 0) -> str:
    """The ledger's idempotency key: identical on every redelivery and recomputation."""
    return f"{generation_id}/{owner_id}/{revision}"


def royalty_parts(
    prepared: Prepared, family: Family, attribution: Attribution
) -> tuple[list[ContributionEvent], AttributionRecord]:
    event = prepared.event
    values = np.asarray(attribution.shapley_values, dtype=np.float64)
    if values.shape != (len(family.owners),) or not np.all(np.isfinite(values)):
        raise AttributionError(f"attribution of {event.event_id} produced non-finite or mis-shaped values")

    # 1. Pool and platform share from the family's pool fraction (exact integers).
    pool_amount, _platform_amount = split_pool(event.revenue.amount, Fraction(family.pool_fraction))

    # 2. Clip negatives, renormalise: share_i = max(phi_i,0) / sum_j max(phi_j,0).
    positive = np.clip(values, 0.0, None)
    total_positive = float(positive.sum())
    attributed = total_positive > 0.0
    shares = positive / total_positive if attributed else np.zeros_like(positive)

    # 3. Exact integer split of the pool (largest remainder, ties by owner id).
    if attributed and pool_amount > 0:
        amounts = apportion(pool_amount, [float(p) for p in positive], list(family.owners))
    else:
        amounts = [0] * len(family.owners)
    unattributed_amount = pool_amount - sum(amounts)
    parts_total = len(family.owners) + (0 if attributed else 1)

    common = dict(
        generation_id=event.event_id,
        occurred_at=event.occurred_at,
        family_id=family.family_id,
        family_version=family.version,
        currency=event.revenue.currency,
        asset_scale=event.revenue.asset_scale,
        pool_amount=pool_amount,
        revenue_amount=event.revenue.amount,
        parts_total=parts_total,
        kind="attribution",
    )
    parts = [
        ContributionEvent(
            contribution_id=contribution_id(event.event_id, owner),
            owner_id=owner,
            method=attribution.method,
            shapley_value=float(values[i]),
            std_error=float(attribution.std_errors[i]),
            share=float(shares[i]),
            amount=int(amounts[i]),
            **common,
        )
        for i, owner in enumerate(family.owners)
    ]
    if not attributed:
        parts.append(
            ContributionEvent(
                contribution_id=contribution_id(event.event_id, UNATTRIBUTED_OWNER),
                owner_id=UNATTRIBUTED_OWNER,
                method="unattributed",
                shapley_value=0.0,
                std_error=0.0,
                share=1.0,
                amount=unattributed_amount,
                **common,
            )
        )
    # 4. Explicit check on the money path: the parts are the pool, to the unit.
    if sum(p.amount for p in parts) != pool_amount:
        raise AttributionError(f"parts of {event.event_id} do not sum to its pool {pool_amount}")

    record = AttributionRecord(
        generation_id=event.event_id,
        occurred_at=event.occurred_at,
        family_id=family.family_id,
        family_version=family.version,
        method=attribution.method,
        mode=attribution.mode,
        owners=list(family.owners),
        shapley_values=[float(v) for v in values],
        std_errors=[float(s) for s in attribution.std_errors],
        coalition_utilities=attribution.coalition_utilities,
        utility_std_errors=attribution.utility_std_errors,
        seed=prepared.seed,
        revenue_amount=event.revenue.amount,
        pool_amount=pool_amount,
        currency=event.revenue.currency,
        asset_scale=event.revenue.asset_scale,
        content_sha256=event.content.sha256,
        model_evaluations=attribution.model_evaluations,
        conditioning=event.conditioning,
        content=event.content,
        clusters=[list(c) for c in attribution.clusters] if attribution.clusters else None,
        fairness=attribution.fairness,
        screen=attribution.screen,
    )
    return parts, record
