"""Withdrawing a model-family version: compensating entries, never edits.

Every settled, not yet reversed, owner credit produced by the version gets a reversal entry
(``reversal:<contribution id>``, referencing the entry that carried it) moving the credit to the
unattributed account, exactly as a reversal event would (see :mod:`royalflow.ledger.reversals`).
The generation's pool stays fully accounted for and can be re-attributed by a later version.

The platform's share (revenue - pool) is NOT reversed: the generation was sold and its revenue
earned; only who is owed the pool is in question. Work is done in bounded transactions.
"""

from __future__ import annotations

import asyncpg

from royalflow.contracts import UNATTRIBUTED_OWNER
from royalflow.ledger.posting import Entries, post
from royalflow.ledger.reversals import REFERENCE_PREFIX, add_reversals

CHUNK = 5000  # contributions reversed per transaction

_PENDING = """
SELECT c.contribution_id FROM generations g JOIN contributions c USING (generation_id)
WHERE g.family_id = $1 AND g.family_version = $2 AND c.family_id = $1 AND c.family_version = $2
  AND c.amount > 0 AND c.owner_id <> $3
  AND NOT EXISTS (SELECT 1 FROM journal_entries r WHERE r.reference = $4 || c.contribution_id)
ORDER BY c.contribution_id LIMIT $5
"""


async def withdraw_family(pool: asyncpg.Pool, family_id: str, version: str) -> int:
    """Reverse every credit of ``family_id`` ``version``; returns how many were reversed now
    (0 when run again: each contribution is reversed at most once)."""
    total = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            ids = [r["contribution_id"] for r in await conn.fetch(
                _PENDING, family_id, version, UNATTRIBUTED_OWNER, REFERENCE_PREFIX, CHUNK)]
            if not ids:
                return total
            entries = Entries()
            outcomes = await add_reversals(conn, entries, ids)
            await post(conn, entries, shard=0)
            total += sum(1 for o in outcomes.values() if o == "reversed")
