"""Applying one batch of contributions to PostgreSQL in ONE transaction, set-based.

The transaction inserts the contributions (unique ids: duplicates are no-ops), the journal
entries and postings of the new ones, the platform share of newly seen generations, the
balance and hourly deltas, generation progress, audit records, outbox rows and the consumer
offsets. Either all of it commits or none: a crash anywhere redelivers the batch, and the
unique keys make the redelivery change nothing.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from royalflow.contracts import AttributionRecord, ContributionEvent
from royalflow.errors import LedgerError
from royalflow.ledger.accounts import EXTERNAL_REVENUE, PLATFORM, account_owner, account_type, owner_account

_INSERT_CONTRIBUTIONS = """
INSERT INTO contributions (contribution_id, generation_id, owner_id, family_id, family_version, method,
                           shapley_value, std_error, share, amount, currency, event_time)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                     $7::float8[], $8::float8[], $9::float8[], $10::int8[], $11::text[], $12::timestamptz[])
ON CONFLICT (contribution_id) DO NOTHING
RETURNING contribution_id
"""

_UPSERT_GENERATIONS = """
INSERT INTO generations (generation_id, currency, revenue_amount, pool_amount, parts_total, family_id,
                         family_version, event_time)
SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[], $5::int4[], $6::text[], $7::text[],
                     $8::timestamptz[])
ON CONFLICT (generation_id) DO UPDATE SET inconsistent = CASE
    WHEN generations.pool_amount <> EXCLUDED.pool_amount OR generations.parts_total <> EXCLUDED.parts_total
      OR generations.revenue_amount <> EXCLUDED.revenue_amount OR generations.currency <> EXCLUDED.currency
    THEN 'parts disagree on revenue, pool, currency or parts_total' ELSE generations.inconsistent END
RETURNING generation_id, (xmax = 0) AS inserted
"""

_INSERT_ENTRIES = """
WITH e AS (
    INSERT INTO journal_entries (kind, reference, generation_id, event_time)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[])
    ON CONFLICT (reference) DO NOTHING
    RETURNING entry_id, reference
)
INSERT INTO postings (entry_id, account_id, currency, amount)
SELECT e.entry_id, p.account_id, p.currency, p.amount
FROM e JOIN unnest($5::text[], $6::text[], $7::text[], $8::int8[]) AS p(reference, account_id, currency, amount)
  USING (reference)
RETURNING account_id, currency, amount
"""

_PROGRESS = """
UPDATE generations g SET
    parts_received = g.parts_received + x.parts,
    amount_received = g.amount_received + x.amount,
    completed_at = CASE WHEN g.parts_received + x.parts = g.parts_total AND g.amount_received + x.amount = g.pool_amount
                        THEN now() ELSE g.completed_at END,
    inconsistent = CASE WHEN g.parts_received + x.parts > g.parts_total OR g.amount_received + x.amount > g.pool_amount
                             OR (g.parts_received + x.parts = g.parts_total AND g.amount_received + x.amount <> g.pool_amount)
                        THEN 'parts do not sum to the pool' ELSE g.inconsistent END
FROM unnest($1::text[], $2::int4[], $3::int8[]) AS x(generation_id, parts, amount)
WHERE g.generation_id = x.generation_id
RETURNING g.generation_id, g.event_time, g.completed_at
"""


@dataclass
class BatchResult:
    new_contributions: int = 0
    duplicates: int = 0
    postings: list[tuple[str, str, int]] = field(default_factory=list)  # (account, currency, amount)
    completed: list[tuple[str, datetime, datetime]] = field(default_factory=list)  # (generation, event, completed)


async def apply_batch(
    conn: asyncpg.Connection,
    contributions: list[ContributionEvent],
    audits: list[AttributionRecord],
    offsets: dict[tuple[str, int], int],
    *,
    group_id: str,
    shard: int,
) -> BatchResult:
    """Apply the batch; the caller holds the transaction."""
    result = BatchResult()
    unique = {c.contribution_id: c for c in contributions}  # the same id twice in one batch
    rows = list(unique.values())
    if rows:
        # 1. Contributions: the idempotency gate. Only ids not seen before come back.
        inserted = await conn.fetch(
            _INSERT_CONTRIBUTIONS,
            [c.contribution_id for c in rows], [c.generation_id for c in rows], [c.owner_id for c in rows],
            [c.family_id for c in rows], [c.family_version for c in rows], [c.method for c in rows],
            [c.shapley_value for c in rows], [c.std_error for c in rows], [c.share for c in rows],
            [c.amount for c in rows], [c.currency for c in rows], [c.occurred_at for c in rows],
        )
        new = [unique[r["contribution_id"]] for r in inserted]
        result.new_contributions = len(new)
        result.duplicates = len(contributions) - len(new)
        if new:
            await _apply_new(conn, new, result, shard)
    if audits:
        await conn.executemany(
            "INSERT INTO attributions (generation_id, family_id, family_version, record) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT (generation_id) DO NOTHING",
            [(a.generation_id, a.family_id, a.family_version, a.model_dump_json(by_alias=True)) for a in audits],
        )
    if offsets:
        # 9. Offsets commit with the postings they produced: the exactly-once effect.
        keys = sorted(offsets)
        await conn.execute(
            "INSERT INTO consumer_offsets (group_id, topic, partition, next_offset) "
            "SELECT $1, * FROM unnest($2::text[], $3::int4[], $4::int8[]) "
            "ON CONFLICT (group_id, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = now()",
            group_id, [k[0] for k in keys], [k[1] for k in keys], [offsets[k] for k in keys],
        )
    return result


async def _apply_new(conn: asyncpg.Connection, new: list[ContributionEvent], result: BatchResult, shard: int) -> None:
    # 2. Owner accounts appear on first credit.
    owners = sorted({owner_account(c.owner_id) for c in new})
    await conn.execute(
        "INSERT INTO accounts (account_id, account_type, owner_id) "
        "SELECT a, CASE WHEN a = 'unattributed' THEN 'unattributed' ELSE 'owner' END, o "
        "FROM unnest($1::text[], $2::text[]) AS x(a, o) ON CONFLICT DO NOTHING",
        owners, [account_owner(a) for a in owners],
    )
    # 3. Generations: first sight inserts the row (and, below, the platform share).
    first = {c.generation_id: c for c in new}
    gens = list(first.values())
    seen = await conn.fetch(
        _UPSERT_GENERATIONS,
        [g.generation_id for g in gens], [g.currency for g in gens], [g.revenue_amount for g in gens],
        [g.pool_amount for g in gens], [g.parts_total for g in gens], [g.family_id for g in gens],
        [g.family_version for g in gens], [g.occurred_at for g in gens],
    )
    new_generations = [first[r["generation_id"]] for r in seen if r["inserted"]]
    # Parts of one generation inside this batch must agree with each other too.
    terms = lambda c: (c.currency, c.revenue_amount, c.pool_amount, c.parts_total)  # noqa: E731
    disagreeing = sorted({c.generation_id for c in new if terms(c) != terms(first[c.generation_id])})
    if disagreeing:
        await conn.execute(
            "UPDATE generations SET inconsistent = 'parts disagree on revenue, pool, currency or parts_total' "
            "WHERE generation_id = ANY($1::text[])",
            disagreeing,
        )

    # 4. Journal entries and their postings (each entry sums to zero).
    kinds, refs, gen_ids, times = [], [], [], []
    p_refs, p_accounts, p_currencies, p_amounts = [], [], [], []

    def entry(kind: str, ref: str, c: ContributionEvent, account: str, amount: int) -> None:
        kinds.append(kind), refs.append(ref), gen_ids.append(c.generation_id), times.append(c.occurred_at)
        p_refs.extend((ref, ref)), p_accounts.extend((account, EXTERNAL_REVENUE))
        p_currencies.extend((c.currency, c.currency)), p_amounts.extend((amount, -amount))

    for c in new:
        if c.amount > 0:
            entry("royalty", c.contribution_id, c, owner_account(c.owner_id), c.amount)
    for g in new_generations:
        platform_amount = g.revenue_amount - g.pool_amount
        if platform_amount < 0:
            raise LedgerError(f"generation {g.generation_id}: pool exceeds revenue")
        if platform_amount > 0:
            entry("platform_share", f"platform:{g.generation_id}", g, PLATFORM, platform_amount)
    if refs:
        posted = await conn.fetch(_INSERT_ENTRIES, kinds, refs, gen_ids, times, p_refs, p_accounts, p_currencies, p_amounts)
        result.postings = [(r["account_id"], r["currency"].strip(), r["amount"]) for r in posted]

    # 5. Balance deltas, one row per (account, currency) in key order (deterministic lock order).
    #    Hot system accounts write their own shard; owner rows use shard 0.
    deltas: dict[tuple[str, str, int], int] = defaultdict(int)
    hourly: dict[tuple[str, str, datetime], int] = defaultdict(int)
    for account, currency, amount in result.postings:
        deltas[(account, currency, shard if account_type(account) in ("platform", "external") else 0)] += amount
    for c in new:
        if c.amount > 0:
            hour = c.occurred_at.replace(minute=0, second=0, microsecond=0)
            hourly[(owner_account(c.owner_id), c.currency, hour)] += c.amount
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

    # 6. Generation progress: parts and amount received; completion when both match.
    progress: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for c in new:
        progress[c.generation_id][0] += 1
        progress[c.generation_id][1] += c.amount
    ids = sorted(progress)
    done = await conn.fetch(_PROGRESS, ids, [progress[g][0] for g in ids], [progress[g][1] for g in ids])
    result.completed = [(r["generation_id"], r["event_time"], r["completed_at"]) for r in done if r["completed_at"]]

    # 7. Outbox: the new lifetime balance of every owner touched, for downstream consumers.
    touched = sorted({owner_account(c.owner_id) for c in new if c.amount > 0})
    if touched:
        await conn.execute(
            "INSERT INTO outbox (owner_id, currency, payload) "
            "SELECT a.owner_id, b.currency, jsonb_build_object('owner_id', a.owner_id, 'currency', b.currency, "
            "  'balance', sum(b.amount)::text, 'as_of', now()) "
            "FROM balances b JOIN accounts a USING (account_id) WHERE b.account_id = ANY($1::text[]) "
            "GROUP BY b.account_id, a.owner_id, b.currency",
            touched,
        )

