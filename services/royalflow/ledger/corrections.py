"""Compensating entries. History is never edited: a withdrawn model-family version gets a
reversal entry per royalty it produced, referencing the original (``corrects_entry_id``).

A reversal moves the owner's credit to the unattributed account, so the generation's pool is
still fully accounted for (and can be re-attributed by a later family version).
"""

from __future__ import annotations

import asyncpg

from royalflow.ledger.accounts import UNATTRIBUTED


async def withdraw_family(pool: asyncpg.Pool, family_id: str, version: str) -> int:
    async with pool.acquire() as conn, conn.transaction():
        originals = await conn.fetch(
            """
            SELECT e.entry_id, e.reference, e.generation_id, e.event_time, p.account_id, p.currency, p.amount
            FROM contributions c
            JOIN journal_entries e ON e.reference = c.contribution_id AND e.kind = 'royalty'
            JOIN postings p ON p.entry_id = e.entry_id AND p.amount > 0
            WHERE c.family_id = $1 AND c.family_version = $2 AND p.account_id <> $3
              AND NOT EXISTS (SELECT 1 FROM journal_entries r WHERE r.reference = 'reversal:' || e.reference)
            ORDER BY e.entry_id
            """,
            family_id, version, UNATTRIBUTED,
        )
        for row in originals:
            entry_id = await conn.fetchval(
                "INSERT INTO journal_entries (kind, reference, generation_id, corrects_entry_id, event_time) "
                "VALUES ('reversal', $1, $2, $3, $4) RETURNING entry_id",
                f"reversal:{row['reference']}", row["generation_id"], row["entry_id"], row["event_time"],
            )
            moves = [(row["account_id"], -row["amount"]), (UNATTRIBUTED, row["amount"])]
            await conn.executemany(
                "INSERT INTO postings (entry_id, account_id, currency, amount) VALUES ($1, $2, $3, $4)",
                [(entry_id, account, row["currency"], amount) for account, amount in moves],
            )
            await conn.executemany(
                "INSERT INTO balances (account_id, currency, shard, amount) VALUES ($1, $2, 0, $3) "
                "ON CONFLICT (account_id, currency, shard) DO UPDATE SET amount = balances.amount + EXCLUDED.amount",
                [(account, row["currency"], amount) for account, amount in moves],
            )
            # Rolling windows follow the correction, in the hour the original happened.
            hour = row["event_time"].replace(minute=0, second=0, microsecond=0)
            await conn.executemany(
                "INSERT INTO owner_hourly (account_id, currency, hour, amount) VALUES ($1, $2, $3, $4) "
                "ON CONFLICT (account_id, currency, hour) DO UPDATE SET amount = owner_hourly.amount + EXCLUDED.amount",
                [(account, row["currency"], hour, amount) for account, amount in moves],
            )
        return len(originals)
