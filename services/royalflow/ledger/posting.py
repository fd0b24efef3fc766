"""Posting journal entries set-based: one INSERT for all entries and postings of a batch, then
one balance update per (account, currency, shard) and one hourly-bucket update per
(account, currency, hour), in key order (a deterministic lock order: concurrent ledger
consumers never deadlock), then the outbox rows of the owners touched.

Every derived figure (balances, hourly buckets, outbox) counts only the entries the INSERT
actually wrote, so an entry skipped by its unique reference changes nothing.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from royalflow.errors import LedgerError
from royalflow.ledger.accounts import account_type
from royalflow.ledger.columns import int_column, text_columns
from royalflow.ledger.times import hour_of

_INSERT_ENTRIES = """
WITH e AS (
    INSERT INTO journal_entries (entry_id, kind, reference, generation_id, event_time, corrects_entry_id, line_count)
    SELECT * FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::int8[], $7::int4[])
    ON CONFLICT (reference) DO NOTHING
    RETURNING entry_id
)
INSERT INTO postings (entry_id, account_id, currency, amount)
SELECT x.entry_id, x.account_id, x.currency, x.amount
FROM unnest($8::int8[], $9::text[], $10::text[], $11::int8[]) AS x(entry_id, account_id, currency, amount)
WHERE x.entry_id IN (SELECT entry_id FROM e)
RETURNING entry_id, account_id, currency, amount
"""


async def allocate_entry_ids(conn: asyncpg.Connection, count: int) -> list[int]:
    """Entry ids drawn before the lines that name them are written (gaps are harmless)."""
    if count <= 0:
        return []
    rows = await conn.fetch("SELECT nextval('journal_entries_entry_id_seq') AS id FROM generate_series(1, $1)", count)
    return [r["id"] for r in rows]


# Owner-like accounts carry hourly buckets (rolling windows) and outbox rows.
_OWNER_TYPES = ("owner", "unattributed")
# Hot system accounts: one balance row per shard (the consumer's lowest partition), so
# consumers on different partitions never wait on one row lock. Balance = SUM over shards.
_SHARDED_TYPES = ("platform", "external")


@dataclass
class Entries:
    """Column arrays of the journal entries (and their postings) one batch will insert, and the
    hourly-bucket deltas (by event time) that go with them."""

    entry_ids: list[int] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    refs: list[str] = field(default_factory=list)
    generation_ids: list[str | None] = field(default_factory=list)
    times: list[datetime] = field(default_factory=list)
    corrects: list[int | None] = field(default_factory=list)
    line_counts: list[int] = field(default_factory=list)
    p_entry_ids: list[int] = field(default_factory=list)
    p_accounts: list[str] = field(default_factory=list)
    p_currencies: list[str] = field(default_factory=list)
    p_amounts: list[int] = field(default_factory=list)
    hourly: list[tuple[int, str, str, datetime, int]] = field(default_factory=list)  # (entry, account, currency, hour, amount)
    # event time -> its hour: the parts of one generation share one event time, so a batch
    # converts each time once (equal instants have equal hours, whatever their offsets).
    hours: dict[datetime, datetime] = field(default_factory=dict, repr=False)

    def add(
        self, entry_id: int, kind: str, reference: str, generation_id: str | None, event_time: datetime, currency: str,
        moves: list[tuple[str, int]], *, corrects: int | None = None, lines: int = 1,
    ) -> None:
        # Double entry: an entry's postings sum to zero, checked here before anything is written.
        if sum(amount for _, amount in moves) != 0:
            raise LedgerError(f"entry {reference} does not balance: {moves}")
        self.entry_ids.append(entry_id)
        self.kinds.append(kind)
        self.refs.append(reference)
        self.generation_ids.append(generation_id)
        self.times.append(event_time)
        self.corrects.append(corrects)
        self.line_counts.append(lines)
        for account, amount in sorted(moves):
            self.p_entry_ids.append(entry_id)
            self.p_accounts.append(account)
            self.p_currencies.append(currency)
            self.p_amounts.append(amount)

    def credit_hour(self, entry_id: int, account: str, currency: str, event_time: datetime, amount: int) -> None:
        """An owner-like account's credit (or reversal) in the hour its event happened."""
        hour = self.hours.get(event_time)
        if hour is None:
            hour = self.hours[event_time] = hour_of(event_time)
        self.hourly.append((entry_id, account, currency, hour, amount))

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
        _INSERT_ENTRIES, entries.entry_ids, entries.kinds, entries.refs, entries.generation_ids, entries.times,
        entries.corrects, entries.line_counts, entries.p_entry_ids, entries.p_accounts, entries.p_currencies,
        entries.p_amounts,
    )
    # 1. Aggregate in memory: one delta per (account, currency, shard) and per hour bucket,
    #    counting only entries the INSERT wrote (a reference seen before writes nothing).
    written = {r["entry_id"] for r in rows}
    deltas: dict[tuple[str, str, int], int] = defaultdict(int)
    hourly: dict[tuple[str, str, datetime], int] = defaultdict(int)
    postings: list[tuple[str, str, int]] = []
    for r in rows:
        account, currency, amount = r["account_id"], r["currency"].strip(), r["amount"]
        postings.append((account, currency, amount))
        deltas[(account, currency, shard if account_type(account) in _SHARDED_TYPES else 0)] += amount
    for entry_id, account, currency, hour, amount in entries.hourly:
        if entry_id in written:
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
        # Late events spread a batch over many hours: thousands of rows, sent as texts (columns.py).
        (accounts, currencies), separator = text_columns([k[0] for k in keys], [k[1] for k in keys])
        await conn.execute(
            "INSERT INTO owner_hourly (account_id, currency, hour, amount) "
            "SELECT * FROM unnest(string_to_array($1::text, $5::text), string_to_array($2::text, $5::text), "
            "$3::timestamptz[], string_to_array($4::text, ',')::int8[]) "
            "ON CONFLICT (account_id, currency, hour) DO UPDATE SET amount = owner_hourly.amount + EXCLUDED.amount",
            accounts, currencies, [k[2] for k in keys], int_column([hourly[k] for k in keys]), separator,
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
