"""Closing a settlement period: payouts rounded down to the minor unit, remainders carried.

For each owner account with a positive balance in the currency:
    payout    = floor(balance / units_per_minor) * units_per_minor      (whole cents for USD)
    remainder = balance - payout                                        (stays on the account)
The payout is a journal entry (owner debited, ``payouts:payable`` credited); nothing is lost
and the next period starts from the remainder.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from royalflow.errors import LedgerError
from royalflow.ledger.accounts import PAYOUTS
from royalflow.money import currency_for


def period_id(period_end: datetime, currency: str) -> str:
    return f"{period_end.isoformat()}/{currency}"


async def close_period(pool: asyncpg.Pool, period_end: datetime, *, currency: str = "USD") -> dict[str, Any]:
    if period_end.tzinfo is None:
        raise LedgerError("period_end must carry a timezone")
    unit = currency_for(currency).units_per_minor
    pid = period_id(period_end, currency)
    async with pool.acquire() as conn, conn.transaction(isolation="serializable"):
        if await conn.fetchval("SELECT 1 FROM periods WHERE period_id = $1", pid):
            raise LedgerError(f"period {pid} is already closed")
        await conn.execute("INSERT INTO periods (period_id, currency, period_end) VALUES ($1, $2, $3)", pid, currency, period_end)
        owners = await conn.fetch(
            "SELECT a.account_id, a.owner_id, sum(b.amount)::int8 AS balance FROM balances b JOIN accounts a USING (account_id) "
            "WHERE a.account_type = 'owner' AND b.currency = $1 GROUP BY a.account_id, a.owner_id "
            "HAVING sum(b.amount) > 0 ORDER BY a.account_id",
            currency,
        )
        paid_total = carried_total = 0
        for row in owners:
            balance = row["balance"]
            payout = balance // unit * unit
            remainder = balance - payout
            entry_id = None
            if payout > 0:
                entry_id = await conn.fetchval(
                    "INSERT INTO journal_entries (kind, reference, event_time) VALUES ('payout', $1, $2) RETURNING entry_id",
                    f"payout:{pid}:{row['owner_id']}", period_end,
                )
                await conn.executemany(
                    "INSERT INTO postings (entry_id, account_id, currency, amount) VALUES ($1, $2, $3, $4)",
                    [(entry_id, row["account_id"], currency, -payout), (entry_id, PAYOUTS, currency, payout)],
                )
                await conn.executemany(
                    "INSERT INTO balances (account_id, currency, shard, amount) VALUES ($1, $2, 0, $3) "
                    "ON CONFLICT (account_id, currency, shard) DO UPDATE SET amount = balances.amount + EXCLUDED.amount",
                    [(row["account_id"], currency, -payout), (PAYOUTS, currency, payout)],
                )
            await conn.execute(
                "INSERT INTO payouts (period_id, owner_id, currency, amount, carried_forward, entry_id) VALUES ($1, $2, $3, $4, $5, $6)",
                pid, row["owner_id"], currency, payout, remainder, entry_id,
            )
            paid_total += payout
            carried_total += remainder
    return {"period_id": pid, "currency": currency, "owners": len(owners), "paid": paid_total, "carried_forward": carried_total}


async def list_periods(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    rows = await pool.fetch("SELECT period_id, currency, period_end, closed_at FROM periods ORDER BY period_end")
    return [{**dict(r), "currency": r["currency"].strip()} for r in rows]
