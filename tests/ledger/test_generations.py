"""Generations over batches (ledger/generations.py, through apply_batch on a real PostgreSQL):
progress adds up across partitions' batches, completion comes with the last part, and overruns
are flagged, never completed."""

from __future__ import annotations

import asyncpg
import pytest

from royalflow.ledger.journal import apply_batch

from tests.ledger.factory import generation_parts

pytestmark = pytest.mark.integration


async def _apply(pool: asyncpg.Pool, parts, offset: int = 0):  # type: ignore[no-untyped-def]
    async with pool.acquire() as conn, conn.transaction():
        return await apply_batch(conn, parts, [], {("t", 0): offset}, group_id="g", shard=0)


async def test_a_generation_settles_over_batches_and_overruns_are_flagged(pool: asyncpg.Pool) -> None:
    """Parts keyed by owner reach the ledger over several partitions and batches: each batch adds
    its parts to the generation's progress (one statement), completion comes with the last, and
    a generation whose parts overrun their count or pool, or complete without summing to it, is
    flagged, never completed."""
    fine = generation_parts("g-fine", seed=1)
    await _apply(pool, fine[:1])
    await _apply(pool, fine[1:3], offset=1)
    row = await pool.fetchrow("SELECT parts_received, amount_received, completed_at, inconsistent FROM generations")
    assert (row["parts_received"], row["completed_at"], row["inconsistent"]) == (3, None, None)
    result = await _apply(pool, fine[3:], offset=3)
    row = await pool.fetchrow("SELECT parts_received, amount_received, completed_at, inconsistent FROM generations")
    assert (row["parts_received"], row["amount_received"]) == (4, fine[0].pool_amount)
    assert row["completed_at"] is not None and row["inconsistent"] is None
    assert [g for g, _, _ in result.completed] == ["g-fine"]

    # Four parts whose amounts sum past the pool: flagged when the sum runs over, in a later batch.
    over = [p.model_copy(update={"contribution_id": f"over/{p.owner_id}", "generation_id": "g-over",
                                 "amount": p.pool_amount // 2}) for p in generation_parts("g-over", seed=2)]
    await _apply(pool, over[:2], offset=5)
    assert await pool.fetchval("SELECT inconsistent FROM generations WHERE generation_id = 'g-over'") is None
    await _apply(pool, over[2:3], offset=6)
    assert await pool.fetchval("SELECT inconsistent FROM generations WHERE generation_id = 'g-over'") == \
        "parts do not sum to the pool"
    # All parts arrived but they sum to less than the pool: flagged, not completed.
    short = [p.model_copy(update={"contribution_id": f"short/{p.owner_id}", "generation_id": "g-short", "amount": 1})
             for p in generation_parts("g-short", seed=3)]
    result = await _apply(pool, short, offset=7)
    row = await pool.fetchrow("SELECT completed_at, inconsistent FROM generations WHERE generation_id = 'g-short'")
    assert (row["completed_at"], row["inconsistent"]) == (None, "parts do not sum to the pool")
    assert result.completed == []
