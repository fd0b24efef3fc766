"""Read-side queries of the ledger. Every amount is an exact integer in the asset scale."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import asyncpg

from royalflow.errors import LedgerError
from royalflow.ledger.accounts import owner_account

WINDOWS = {"1h": "1 hour", "24h": "24 hours", "7d": "7 days", "30d": "30 days"}


async def owner_balances(pool: asyncpg.Pool, owner_id: str) -> list[dict[str, Any]]:
    """Per currency: lifetime credits, available balance (after payouts and reversals), and
    credits in the rolling 1h/24h/7d/30d windows by event time."""
    account = owner_account(owner_id)
    rows = await pool.fetch(
        """
        SELECT c.currency,
               COALESCE((SELECT sum(amount) FROM balances b WHERE b.account_id = $1 AND b.currency = c.currency), 0)::int8 AS available,
               COALESCE((SELECT sum(amount) FROM owner_hourly h WHERE h.account_id = $1 AND h.currency = c.currency), 0)::int8 AS lifetime,
               COALESCE((SELECT sum(amount) FROM owner_hourly h WHERE h.account_id = $1 AND h.currency = c.currency AND h.hour > now() - interval '1 hour' - interval '1 hour'), 0)::int8 AS w1h,
               COALESCE((SELECT sum(amount) FROM owner_hourly h WHERE h.account_id = $1 AND h.currency = c.currency AND h.hour > now() - interval '24 hours' - interval '1 hour'), 0)::int8 AS w24h,
               COALESCE((SELECT sum(amount) FROM owner_hourly h WHERE h.account_id = $1 AND h.currency = c.currency AND h.hour > now() - interval '7 days' - interval '1 hour'), 0)::int8 AS w7d,
               COALESCE((SELECT sum(amount) FROM owner_hourly h WHERE h.account_id = $1 AND h.currency = c.currency AND h.hour > now() - interval '30 days' - interval '1 hour'), 0)::int8 AS w30d
        FROM (SELECT DISTINCT currency FROM balances WHERE account_id = $1) c
        ORDER BY c.currency
        """,
        account,
    )
    return [
        {
            "owner_id": owner_id,
            "currency": r["currency"].strip(),
            "lifetime": r["lifetime"],
            "available": r["available"],
            "windows": {"1h": r["w1h"], "24h": r["w24h"], "7d": r["w7d"], "30d": r["w30d"]},
        }
        for r in rows
    ]


async def all_balances(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    """Every owner account (and the unattributed account): current balance per currency.

    ``lifetime`` is the current balance of the account (credits minus reversals and payouts),
    the figure the demo and tests reconcile against the royalty pools.
    """
    rows = await pool.fetch(
        """
        SELECT a.owner_id, b.currency, sum(b.amount)::int8 AS balance
        FROM balances b JOIN accounts a USING (account_id)
        WHERE a.account_type IN ('owner', 'unattributed')
        GROUP BY a.owner_id, b.currency ORDER BY a.owner_id, b.currency
        """
    )
    return [{"owner_id": r["owner_id"], "currency": r["currency"].strip(), "lifetime": r["balance"]} for r in rows]


async def settled_generation_count(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM generations WHERE completed_at IS NOT NULL"))


async def settlement_totals(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    """Per currency over settled generations: revenue, royalty pool, platform share."""
    rows = await pool.fetch(
        """
        SELECT currency, sum(revenue_amount)::int8 AS revenue, sum(pool_amount)::int8 AS pool,
               sum(revenue_amount - pool_amount)::int8 AS platform, count(*) AS generations
        FROM generations WHERE completed_at IS NOT NULL GROUP BY currency ORDER BY currency
        """
    )
    return [{**dict(r), "currency": r["currency"].strip()} for r in rows]


async def incomplete_generations(pool: asyncpg.Pool, *, limit: int = 100) -> list[dict[str, Any]]:
    """Generations still waiting for parts, or whose parts disagree with their pool."""
    rows = await pool.fetch(
        """
        SELECT generation_id, parts_received, parts_total, amount_received, pool_amount, currency,
               first_seen_at, inconsistent
        FROM generations WHERE completed_at IS NULL OR inconsistent IS NOT NULL
        ORDER BY first_seen_at LIMIT $1
        """,
        limit,
    )
    return [dict(r) for r in rows]


# A page cursor is opaque to clients but has one published shape, so that a client generated
# from the OpenAPI document can tell a cursor it may send: the 8 big-endian bytes of the last
# ingest_seq on the page, base64url without padding. 11 characters; the first one keeps the top
# bit clear (a bigint is signed) and the last one carries 4 bits and 2 zero bits. EVERY string
# of this shape decodes to a sequence in [0, 2^63 - 1], so a conforming cursor is never refused.
CURSOR_PATTERN = r"^[A-Za-f][A-Za-z0-9_-]{9}[AEIMQUYcgkosw048]$"
CURSOR_LENGTH = 11
_CURSOR = re.compile(CURSOR_PATTERN)
_SEQ_BYTES = 8


def _encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(seq.to_bytes(_SEQ_BYTES, "big")).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    if not _CURSOR.fullmatch(cursor):
        raise LedgerError(f"invalid cursor {cursor!r}: pass next_cursor from a previous page unchanged")
    return int.from_bytes(base64.urlsafe_b64decode(cursor + "="), "big")


async def contributions_page(
    pool: asyncpg.Pool, owner_id: str, *, after: str | None, limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of an owner's contributions in settlement order; keyset-paginated."""
    start = _decode_cursor(after) if after else 0
    rows = await pool.fetch(
        """
        SELECT ingest_seq, contribution_id, generation_id, family_id, family_version, method, shapley_value,
               std_error, share, amount, currency, event_time, settled_at
        FROM contributions WHERE owner_id = $1 AND ingest_seq > $2 ORDER BY ingest_seq LIMIT $3
        """,
        owner_id, start, limit + 1,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    page = [{k: v for k, v in dict(r).items() if k != "ingest_seq"} | {"currency": r["currency"].strip()} for r in rows]
    return page, (_encode_cursor(rows[-1]["ingest_seq"]) if more and rows else None)


async def generation_audit(pool: asyncpg.Pool, generation_id: str) -> dict[str, Any] | None:
    """Everything behind a generation's payouts: revenue, pool, parts, utilities, completeness."""
    gen = await pool.fetchrow("SELECT * FROM generations WHERE generation_id = $1", generation_id)
    if gen is None:
        return None
    parts = await pool.fetch(
        "SELECT owner_id, shapley_value, std_error, share, amount, method, family_version, contribution_id "
        "FROM contributions WHERE generation_id = $1 ORDER BY owner_id",
        generation_id,
    )
    record = await pool.fetchval("SELECT record FROM attributions WHERE generation_id = $1", generation_id)
    return {
        "generation_id": generation_id,
        "currency": gen["currency"].strip(),
        "revenue_amount": gen["revenue_amount"],
        "pool_amount": gen["pool_amount"],
        "platform_amount": gen["revenue_amount"] - gen["pool_amount"],
        "family_id": gen["family_id"],
        "family_version": gen["family_version"],
        "event_time": gen["event_time"],
        "complete": gen["completed_at"] is not None,
        "inconsistent": gen["inconsistent"],
        "parts": [dict(p) for p in parts],
        "attribution": json.loads(record) if record else None,
    }
