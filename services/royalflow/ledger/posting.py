"""Posting journal entries set-based: one INSERT for all entries and postings of a batch, then
one balance update per (account, currency, shard) and one hourly-bucket update per
(account, currency, hour), in key order (a deterministic lock order: concurrent ledger
consumers never deadlock), then the outbox rows of the owners touched.

Every derived figure (balances, hourly buckets, outbox) is computed from the postings the
INSERT actually returned, so an entry skipped by its unique reference changes nothing.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from royalflow.errors import LedgerError
from royalflow.ledger.accounts import account_type

_INSERT_ENTRIES = """
WITH e AS (
    INSERT INTO journal_entries (kind, reference, generation_id, event_time, corrects_entry_id)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::int8[])
    ON CONFLICT (reference) DO NOTHING
    RETURNING entry_id, reference, event_time
), p AS (
    INSERT INTO postings (entry_id, account_id, currency, amount)
    SELECT e.entry_id, x.account_id, x.currency, x.amount
    FROM e JOIN unnest($6::text[], $7::text[], $8::text[], $9::int8[]) AS x(reference, account_id, currency, amount)
      USING (reference)
    RETURNING entry_id, account_id, currency, amount
)
SELECT p.account_id, p.currency, p.amount, e.event_time FROM p JOIN e USING (entry_id)
"""

# Owner-like accounts carry hourly buckets (rolling windows) and outbox rows.
_OWNER_TYPES = ("owner", "unattributed")
# Hot system accounts: one balance row per shard (the consumer's lowest partition), so
# consumers on different partitions never wait on one row lock. Balance = SUM over shards.
_SHARDED_TYPES = ("platform", "external")


@dataclass
class Entries:
    """Column arrays of the journal entries (and their postings) one batch will insert."""

    kinds: list[str] = field(default_factory=list)
    refs: list[str] = field(default_factory=list)
    generation_ids: list[str | None] = field(default_factory=list)
    times: list[datetime] = field(default_factory=list)
    corrects: list[int | None] = field(default_factory=list)
    p_refs: list[str] = field(default_factory=list)
    p_accounts: list[str] = field(default_factory=list)
    p_currencies: list[str] = field(default_factory=list)
    p_amounts: list[int] = field(default_factory=list)

    def add(
        self, kind: str, reference: str, generation_id: str | None, event_time: datetime, currency: str,
        moves: list[tuple[str, int]], corrects: int | None = None,
    ) -> None:
        # Double entry: an entry's postings sum to zero, checked here before anything is written.
        if sum(amount for _, amount in moves) != 0:
            raise LedgerError(f"entry {reference} does not balance: {moves}")
        self.kinds.append(kind)
        self.refs.append(reference)
        self.generation_ids.append(generation_id)
        self.times.append(event_time)
        self.corrects.append(corrects)
        for account, amount in moves:
            self.p_refs.append(reference)
            self.p_accounts.append(account)
            self.p_currencies.append(currency)
            self.p_amounts.append(amount)

    def __len__(self) -> int:
        return len(self.refs)


@dataclass
class Posted:
    postings: list[tuple[str, str, int]]  # (account, currency, amount)
    touched_owner_accounts: list[str]


async def post(conn: asyncpg.Connection, entries: Entries, *, shard: int) -> Posted:
    """Insert the entries, then apply their balance and hourly deltas and outbox rows."""
    if not entries:
        return Posted([], [])
    rows = await conn.fetch(
        _INSERT_ENTRIES, entries.kinds, entries.refs, entries.generation_ids, entries.times, entries.corrects,
        entries.p_refs, entries.p_accounts, entries.p_currencies, entries.p_amounts,
    )
    # 1. Aggregate in memory: one delta per (account, currency, shard) and per hour bucket.
    deltas: dict[tuple[str, str, int], int] = defaultdict(int)
    hourly: dict[tuple[str, str, datetime], int] = defaultdict(int)
    postings: list[tuple[str, str, int]] = []
    for r in rows:
        account, currency, amount = r["account_id"], r["currency"].strip(), r["amount"]
        postings.append((account, currency, amount))
        kind = account_type(account)
        deltas[(account, currency, shard if kind in _SHARDED_TYPES else 0)] += amount
        if kind in _OWNER_TYPES:
            hour = r["event_time"].replace(minute=0, second=0, microsecond=0)
            hourly[(account, currency, hour)] += amount
    # 2. Sorted keys: every transaction takes row locks in the same order.
    if deltas:
        keys = sorted(deltas)
        await conn.execute(
            "INSERT INTO balances (account_id, currency, shard, amount) "
            "SELECT * FROM unnest($1::text[], $2::text[], $3::int4[], $4::int8[]) "
            "ON CONFLICT (account_id, currency, shard) DO UPDATE SET amount = balances.amount + EXCLUDED.amount",
            [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys], [deltas[k] for k in keys],
        )
    if hourly:
        keys = sorted(hourly)
        await conn.execute(
            "INSERT INTO owner_hourly (account_id, currency, hour, amount) "
            "SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::int8[]) "
            "ON CONFLICT (account_id, currency, hour) DO UPDATE SET amount = owner_hourly.amount + EXCLUDED.amount",
            [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys], [hourly[k] for k in keys],
        )
    # 3. Outbox, same transaction: the new balance of every owner touched, for balances.v1.
    touched = sorted({a for a, _, _ in postings if account_type(a) in _OWNER_TYPES})
    if touched:
        await conn.execute(
            "INSERT INTO outbox (owner_id, currency, payload) "
            "SELECT a.owner_id, b.currency, jsonb_build_object('owner_id', a.owner_id, 'currency', b.currency, "
            "  'balance', sum(b.amount)::text, 'as_of', now()) "
            "FROM balances b JOIN accounts a USING (account_id) WHERE b.account_id = ANY($1::text[]) "
            "GROUP BY b.account_id, a.owner_id, b.currency",
            touched,
        )
    return Posted(postings, touched)
