"""Applying one batch of contributions to PostgreSQL in ONE transaction, set-based.

The transaction inserts the contributions (unique ids: duplicates are no-ops), one royalty
journal entry per currency for the new ones (a posting per owner account: the sum of its
lines), one platform-share entry per currency for the generations first seen, the balance and
hourly deltas, generation progress, reversals, audit records, outbox rows and the consumer
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
from royalflow.ledger import reversals
from royalflow.ledger.accounts import EXTERNAL_REVENUE, PLATFORM, account_owner, owner_account
from royalflow.ledger.posting import Entries, allocate_entry_ids, post

_INSERT_CONTRIBUTIONS = """
INSERT INTO contributions (contribution_id, generation_id, owner_id, family_id, family_version, method,
                           shapley_value, std_error, share, amount, currency, event_time, entry_id)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                     $7::float8[], $8::float8[], $9::float8[], $10::int8[], $11::text[], $12::timestamptz[], $13::int8[])
ON CONFLICT (contribution_id) DO NOTHING
RETURNING contribution_id
"""

_UPSERT_GENERATIONS = """
INSERT INTO generations (generation_id, currency, revenue_amount, pool_amount, parts_total, family_id,
                         family_version, event_time, platform_entry_id)
SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[], $5::int4[], $6::text[], $7::text[],
                     $8::timestamptz[], $9::int8[])
ON CONFLICT (generation_id) DO UPDATE SET inconsistent = CASE
    WHEN generations.pool_amount <> EXCLUDED.pool_amount OR generations.parts_total <> EXCLUDED.parts_total
      OR generations.revenue_amount <> EXCLUDED.revenue_amount OR generations.currency <> EXCLUDED.currency
    THEN 'parts disagree on revenue, pool, currency or parts_total' ELSE generations.inconsistent END
RETURNING generation_id, (xmax = 0) AS inserted
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
    reversed: int = 0


@dataclass
class _BatchIds:
    """Entry ids of this batch, per currency, drawn before the lines that name them."""

    royalty: dict[str, int]
    platform: dict[str, int]


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
    rows = [c for c in unique.values() if c.kind == "attribution"]
    reversal_events = [c for c in unique.values() if c.kind == "reversal"]
    entries = Entries()
    new: list[ContributionEvent] = []
    if rows:
        currencies = sorted({c.currency for c in rows})
        drawn = await allocate_entry_ids(conn, 2 * len(currencies))
        ids = _BatchIds(dict(zip(currencies, drawn[0::2])), dict(zip(currencies, drawn[1::2])))
        # 1. Contributions: the idempotency gate. Only ids not seen before come back.
        inserted = await conn.fetch(
            _INSERT_CONTRIBUTIONS,
            [c.contribution_id for c in rows], [c.generation_id for c in rows], [c.owner_id for c in rows],
            [c.family_id for c in rows], [c.family_version for c in rows], [c.method for c in rows],
            [c.shapley_value for c in rows], [c.std_error for c in rows], [c.share for c in rows],
            [c.amount for c in rows], [c.currency for c in rows], [c.occurred_at for c in rows],
            [ids.royalty[c.currency] if c.amount > 0 else None for c in rows],
        )
        new = [unique[r["contribution_id"]] for r in inserted]
        if new:
            await _prepare_new(conn, new, result, entries, ids)
    new_reversals = await reversals.store(conn, reversal_events)
    result.new_contributions = len(new) + len(new_reversals)
    result.duplicates = len(contributions) - result.new_contributions
    # 7. One set-based write of every entry, posting, balance, hourly bucket and outbox row.
    result.postings = (await post(conn, entries, shard=shard)).postings
    # 8. Reversals whose contribution is now settled (in this batch or before) become
    #    compensating entries; they read the contributions just written, hence a second post.
    corrections = Entries()
    reversing = await reversals.claim_ready(
        conn, corrections, new_contribution_ids=[c.contribution_id for c in new], new_reversal_ids=new_reversals
    )
    result.postings += (await post(conn, corrections, shard=shard)).postings
    await reversals.link_entries(conn, reversing)
    result.reversed = len(reversing)
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


async def _prepare_new(
    conn: asyncpg.Connection, new: list[ContributionEvent], result: BatchResult, entries: Entries, ids: _BatchIds
) -> None:
    """Accounts, generations and progress of the new contributions; their entries go to ``entries``."""
    # 2. Owner accounts appear on first credit.
    owners = sorted({owner_account(c.owner_id) for c in new})
    await conn.execute(
        "INSERT INTO accounts (account_id, account_type, owner_id) "
        "SELECT a, CASE WHEN a = 'unattributed' THEN 'unattributed' ELSE 'owner' END, o "
        "FROM unnest($1::text[], $2::text[]) AS x(a, o) ON CONFLICT DO NOTHING",
        owners, [account_owner(a) for a in owners],
    )
    # 3. Generations: first sight inserts the row and books its platform share (revenue - pool).
    first = {c.generation_id: c for c in new}
    gens = [first[g] for g in sorted(first)]  # key order: concurrent consumers lock rows alike
    seen = await conn.fetch(
        _UPSERT_GENERATIONS,
        [g.generation_id for g in gens], [g.currency for g in gens], [g.revenue_amount for g in gens],
        [g.pool_amount for g in gens], [g.parts_total for g in gens], [g.family_id for g in gens],
        [g.family_version for g in gens], [g.occurred_at for g in gens],
        [ids.platform[g.currency] if g.revenue_amount > g.pool_amount else None for g in gens],
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

    # 4. One royalty entry per currency: credit each owner account the sum of its lines,
    #    debit external:revenue the total. Hot owners get ONE posting per batch.
    credits: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    lines: dict[str, int] = defaultdict(int)
    latest: dict[str, datetime] = {}
    for c in new:
        if c.amount > 0:
            account = owner_account(c.owner_id)
            credits[c.currency][account] += c.amount
            lines[c.currency] += 1
            latest[c.currency] = max(latest.get(c.currency, c.occurred_at), c.occurred_at)
            entries.credit_hour(ids.royalty[c.currency], account, c.currency, c.occurred_at, c.amount)
    for currency, by_account in sorted(credits.items()):
        entry_id = ids.royalty[currency]
        moves = [*by_account.items(), (EXTERNAL_REVENUE, -sum(by_account.values()))]
        entries.add(entry_id, "royalty", f"royalty:{entry_id}", None, latest[currency], currency, moves,
                    lines=lines[currency])
    # 5. One platform-share entry per currency for the generations first seen in this batch.
    platform: dict[str, list[ContributionEvent]] = defaultdict(list)
    for g in new_generations:
        if g.pool_amount > g.revenue_amount:
            raise LedgerError(f"generation {g.generation_id}: pool exceeds revenue")
        if g.revenue_amount > g.pool_amount:
            platform[g.currency].append(g)
    for currency, gens_in in sorted(platform.items()):
        entry_id = ids.platform[currency]
        amount = sum(g.revenue_amount - g.pool_amount for g in gens_in)
        entries.add(entry_id, "platform_share", f"platform:{entry_id}", None, max(g.occurred_at for g in gens_in),
                    currency, [(PLATFORM, amount), (EXTERNAL_REVENUE, -amount)], lines=len(gens_in))

    # 6. Generation progress: parts and amount received; completion when both match.
    progress: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for c in new:
        progress[c.generation_id][0] += 1
        progress[c.generation_id][1] += c.amount
    ids_sorted = sorted(progress)
    done = await conn.fetch(_PROGRESS, ids_sorted, [progress[g][0] for g in ids_sorted], [progress[g][1] for g in ids_sorted])
    result.completed = [(r["generation_id"], r["event_time"], r["completed_at"]) for r in done if r["completed_at"]]
