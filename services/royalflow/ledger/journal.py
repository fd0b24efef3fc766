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
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from royalflow.contracts import AttributionRecord, ContributionEvent
from royalflow.errors import LedgerError
from royalflow.ledger import reversals
from royalflow.ledger.accounts import EXTERNAL_REVENUE, PLATFORM
from royalflow.ledger.conflicts import (
    Origin, Rejection, booked_conflicts, in_batch_rejections, rejection, store_audits,
)
from royalflow.ledger.generations import settle_generations
from royalflow.ledger.plan import BatchPlan, Parts, fill, plan_batch, plan_parts
from royalflow.ledger.posting import Entries, allocate_entry_ids, post

# The idempotency gate and the one-sale check in one statement. A part whose generation is booked
# with other terms (revenue, pool, currency, parts_total, family), or disagrees with the first
# part of its generation in this batch (lowest ordinality: offset order), is not inserted and
# comes back in clash_ids (clash_booked: against the booked generation, else against this
# batch); ids booked before are neither inserted nor clashing (compared afterwards, only when
# there are some). One row back: when every part is new, nothing per part crosses the wire.
# The terms come once per distinct set ($11-$16), each part names its set ($17): the parts of a
# generation share theirs, so six columns per part cross the wire once per generation instead.
_INSERT_CONTRIBUTIONS = """
WITH sent AS (
    SELECT * FROM unnest($11::text[], $12::int8[], $13::int8[], $14::int4[], $15::text[], $16::text[]) WITH ORDINALITY
        AS s(currency, revenue_amount, pool_amount, parts_total, family_id, family_version, term_no)
), x AS (
    SELECT p.contribution_id, p.generation_id, p.owner_id, s.family_id, s.family_version, p.method, p.shapley_value,
           p.std_error, p.share, p.amount, s.currency, p.event_time, p.entry_id, s.revenue_amount, s.pool_amount,
           s.parts_total, p.ord
    FROM unnest(string_to_array($1::text, $19::text), string_to_array($2::text, $19::text),
                string_to_array($3::text, $19::text), string_to_array($4::text, $19::text),
                string_to_array($5::text, ',')::float8[], string_to_array($6::text, ',')::float8[],
                string_to_array($7::text, ',')::float8[], string_to_array($8::text, ',')::int8[], $9::timestamptz[],
                string_to_array($10::text, ',', 'n')::int8[], string_to_array($17::text, ',')::int8[]) WITH ORDINALITY
        AS p(contribution_id, generation_id, owner_id, method, shapley_value, std_error, share, amount, event_time,
             entry_id, term_no, ord)
    JOIN sent s USING (term_no)
), firsts AS (
    SELECT DISTINCT ON (generation_id) generation_id, currency, revenue_amount, pool_amount, parts_total, family_id,
           family_version
    FROM x ORDER BY generation_id, ord
), terms AS (  -- one lookup per generation, not per part
    SELECT f.generation_id, g.generation_id IS NOT NULL AS booked,
           COALESCE(g.currency::text, f.currency) AS currency, COALESCE(g.revenue_amount, f.revenue_amount) AS revenue_amount,
           COALESCE(g.pool_amount, f.pool_amount) AS pool_amount, COALESCE(g.parts_total, f.parts_total) AS parts_total,
           COALESCE(g.family_id, f.family_id) AS family_id, COALESCE(g.family_version, f.family_version) AS family_version
    FROM firsts f LEFT JOIN generations g USING (generation_id)
), clash AS (
    SELECT x.contribution_id, t.booked FROM x JOIN terms t USING (generation_id)
    WHERE (x.currency, x.revenue_amount, x.pool_amount, x.parts_total, x.family_id, x.family_version)
          IS DISTINCT FROM (t.currency, t.revenue_amount, t.pool_amount, t.parts_total, t.family_id, t.family_version)
), ins AS (
    INSERT INTO contributions (contribution_id, generation_id, owner_id, family_id, family_version, method,
                               shapley_value, std_error, share, amount, currency, event_time, entry_id)
    SELECT contribution_id, generation_id, owner_id, family_id, family_version, method, shapley_value, std_error,
           share, amount, currency, event_time, entry_id
    FROM x WHERE contribution_id NOT IN (SELECT contribution_id FROM clash)
    ON CONFLICT (contribution_id) DO NOTHING
    RETURNING contribution_id
)
SELECT (SELECT count(*) FROM ins) AS inserted,
       -- the inserted ids only when some part was not inserted ($18: the parts sent)
       CASE WHEN (SELECT count(*) FROM ins) = $18 THEN NULL ELSE (SELECT COALESCE(array_agg(contribution_id), '{}') FROM ins) END
           AS inserted_ids,
       (SELECT array_agg(contribution_id ORDER BY contribution_id) FROM clash) AS clash_ids,
       (SELECT array_agg(booked ORDER BY contribution_id) FROM clash) AS clash_booked
"""

@dataclass
class BatchResult:
    new_contributions: int = 0
    duplicates: int = 0
    postings: list[tuple[str, str, int]] = field(default_factory=list)  # (account, currency, amount)
    completed: list[tuple[str, datetime, datetime]] = field(default_factory=list)  # (generation, event, completed)
    reversed: int = 0
    rejected: list[Rejection] = field(default_factory=list)  # refused after decoding: dead-letter them


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
    origins: Mapping[int, Origin] | None = None,
    plan: BatchPlan | None = None,
) -> BatchResult:
    """Apply the batch; the caller holds the transaction. ``contributions`` and ``audits`` come
    in offset order per partition (the first of two payloads under one id wins); ``origins``
    (by ``id(record)``) name where each came from, for the dead letters of refused records,
    which come back in ``result.rejected`` (the caller dead-letters them before committing).
    ``plan``: ``plan_batch(contributions)``, computed ahead by the caller (ledger/plan.py)."""
    result = BatchResult()
    # The same id twice in one batch: an equal payload is a duplicate, a different one is judged
    # against what is booked (the first of all), else against the first in the batch.
    plan = plan if plan is not None else plan_batch(contributions)
    unique, rows, reversal_events = plan.unique, plan.rows, plan.reversals
    later_rows = [(c, first) for c, first in unique.later if first.kind == "attribution"]
    entries = Entries()
    new: list[ContributionEvent] = []
    if plan.parts is not None:
        parts = plan.parts
        drawn = await allocate_entry_ids(conn, 2 * len(parts.currencies))
        ids = _BatchIds(dict(zip(parts.currencies, drawn[0::2])), dict(zip(parts.currencies, drawn[1::2])))
        # 1. Contributions: the idempotency gate. Only ids not seen before come back as new;
        #    parts that disagree with their generation come back refused.
        outcome = await conn.fetchrow(
            _INSERT_CONTRIBUTIONS, *parts.insert_head, fill(parts.entry_template, parts.currencies, ids.royalty),
            *parts.insert_tail,
        )
        returning: list[ContributionEvent] = []
        new_parts: Parts | None = parts
        if outcome["inserted_ids"] is None:
            new = rows  # every part new: the hot path, as planned
        else:
            inserted = set(outcome["inserted_ids"] or ())
            clash = dict(zip(outcome["clash_ids"] or (), outcome["clash_booked"] or ()))
            new = [c for c in rows if c.contribution_id in inserted]
            returning = [c for c in rows if c.contribution_id not in inserted and c.contribution_id not in clash]
            new_parts = plan_parts(new) if new else None
            for c in rows:
                if c.contribution_id in clash:
                    where = "is booked with" if clash[c.contribution_id] else "has, in this batch, an earlier part with"
                    result.rejected.append(rejection(c, origins, (
                        f"contribution {c.contribution_id}: generation {c.generation_id} {where} other revenue, pool, "
                        "currency, parts_total or family; the first one wins and this part moves nothing")))
        if new_parts is not None:
            await _prepare_new(conn, new_parts, result, entries, ids)
        # Ids booked before (neither new nor refused) and later payloads under any id of the
        # batch: equal to the booked payload is a redelivery, anything else is refused.
        refused, booked_ids = await booked_conflicts(conn, returning + [c for c, _ in later_rows], origins)
        result.rejected += refused
        result.rejected += in_batch_rejections([p for p in later_rows if p[0].contribution_id not in booked_ids],
                                               "contribution_id", origins)
    # Later payloads under a reversal's id: the first (the stored one or this batch's) wins.
    result.rejected += in_batch_rejections([p for p in unique.later if p[1].kind == "reversal"], "contribution_id", origins)
    new_reversals, reversal_rejected = await reversals.store(conn, reversal_events, origins)
    result.rejected += reversal_rejected
    result.new_contributions = len(new) + len(new_reversals)
    # 7. One set-based write of every entry, posting, balance, hourly bucket and outbox row.
    result.postings = (await post(conn, entries, shard=shard)).postings
    # 8. Reversals whose contribution is now settled (in this batch or before) become
    #    compensating entries; they read the contributions just written, hence a second post.
    corrections = Entries()
    reversing, refused = await reversals.claim_ready(
        conn, corrections, new_contribution_ids=[c.contribution_id for c in new], new_reversal_ids=new_reversals
    )
    result.rejected += refused
    result.postings += (await post(conn, corrections, shard=shard)).postings
    await reversals.link_entries(conn, reversing)
    result.reversed = len(reversing)
    # Every contribution neither new nor refused was seen before with the same payload: a no-op.
    refused_contributions = len(result.rejected) - len(refused)
    result.duplicates = len(contributions) - result.new_contributions - refused_contributions
    _, audit_rejected = await store_audits(conn, audits, origins)
    result.rejected += audit_rejected
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


async def _prepare_new(conn: asyncpg.Connection, new: Parts, result: BatchResult, entries: Entries, ids: _BatchIds) -> None:
    """Accounts, generations and progress of the new contributions; their entries go to ``entries``."""
    # 2. Owner accounts appear on first credit.
    await conn.execute(
        "INSERT INTO accounts (account_id, account_type, owner_id) "
        "SELECT a, CASE WHEN a = 'unattributed' THEN 'unattributed' ELSE 'owner' END, o "
        "FROM unnest($1::text[], $2::text[]) AS x(a, o) ON CONFLICT DO NOTHING",
        new.accounts, new.account_owners,
    )
    # 3. Generations: first sight inserts the row and books its platform share (revenue - pool);
    #    every generation adds this batch's parts and amount, and completes when both match.
    new_generations, result.completed = await settle_generations(conn, new, ids.platform)

    # 4. One royalty entry per currency: credit each owner account the sum of its lines,
    #    debit external:revenue the total. Hot owners get ONE posting per batch.
    for currency, by_account in sorted(new.credits.items()):
        entry_id = ids.royalty[currency]
        moves = [*by_account.items(), (EXTERNAL_REVENUE, -sum(by_account.values()))]
        entries.add(entry_id, "royalty", f"royalty:{entry_id}", None, new.latest[currency], currency, moves,
                    lines=new.lines[currency])
    entries.hourly += [(ids.royalty[currency], account, currency, hour, amount)
                       for currency, account, hour, amount in new.hourly]
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
