"""Valid contribution sets for ledger tests: each generation's parts sum exactly to its pool."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from royalflow.attribution.royalty import contribution_id
from royalflow.contracts import ContributionEvent
from royalflow.money import apportion

OWNERS = ("owner-a", "owner-b", "owner-c", "owner-d")


def generation_parts(
    generation_id: str, *, seed: int, owners: tuple[str, ...] = OWNERS, occurred_at: datetime | None = None,
    family_version: str = "1",
) -> list[ContributionEvent]:
    rng = random.Random(seed)
    revenue = rng.randint(1_000_000, 50_000_000)
    pool = revenue * 3 // 10
    weights = [rng.random() for _ in owners]
    amounts = apportion(pool, weights, list(owners))
    when = occurred_at or datetime(2026, 11, 25, 10, tzinfo=UTC) - timedelta(minutes=rng.randint(0, 60 * 24 * 40))
    total = sum(weights)
    return [
        ContributionEvent(
            contribution_id=contribution_id(generation_id, owner), generation_id=generation_id, owner_id=owner,
            occurred_at=when, family_id="digits-categorical", family_version=family_version, method="exact",
            shapley_value=w, std_error=0.0, share=w / total, amount=a, currency="USD", asset_scale=9,
            pool_amount=pool, revenue_amount=revenue, parts_total=len(owners),
        )
        for owner, w, a in zip(owners, weights, amounts)
    ]
