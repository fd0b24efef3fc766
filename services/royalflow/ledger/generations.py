"""Generations in the ledger: first sight, progress over batches, completion and the flags.

A generation's parts are keyed by owner, so they reach the ledger over several partitions and
batches. Each batch settles the generations of its new parts in ONE statement: first sight
inserts the row (terms, the platform entry that carries revenue - pool) with the batch's parts
and amount; a generation seen before adds them. It completes when both reach its totals, and is
flagged, never completed, when they overrun them or the terms disagree.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

from royalflow.contracts import ContributionEvent
from royalflow.ledger.plan import Parts, fill

# Generations, one statement and ONE row version per generation per batch: first sight inserts
# the row (terms, platform entry) with this batch's progress; a generation seen before adds the
# batch's parts and amount. Parts are keyed by owner, so one generation's parts arrive over
# several partitions and batches: an insert-or-flag followed by a progress update wrote two row
# versions per generation and batch (measured: half the database's CPU per contribution).
# Reasons, in this order of precedence (as before): progress over the pool or the part count
# ('parts do not sum to the pool'), then terms that differ from the booked row or from the
# batch's first part ($12, which reaches the update as EXCLUDED.inconsistent).
_SETTLE_GENERATIONS = """
INSERT INTO generations AS g (generation_id, currency, revenue_amount, pool_amount, parts_total, family_id,
                              family_version, event_time, platform_entry_id, parts_received, amount_received,
                              completed_at, inconsistent)
SELECT x.generation_id, x.currency, x.revenue_amount, x.pool_amount, x.parts_total, x.family_id, x.family_version,
       x.event_time, x.platform_entry_id, x.parts, x.amount,
       CASE WHEN x.parts = x.parts_total AND x.amount = x.pool_amount THEN now() END,
       CASE WHEN x.parts > x.parts_total OR x.amount > x.pool_amount OR (x.parts = x.parts_total AND x.amount <> x.pool_amount)
            THEN 'parts do not sum to the pool'
            WHEN x.disagrees THEN 'parts disagree on revenue, pool, currency or parts_total' END
FROM unnest(string_to_array($1::text, $13::text), string_to_array($2::text, $13::text),
            string_to_array($3::text, ',')::int8[], string_to_array($4::text, ',')::int8[],
            string_to_array($5::text, ',')::int4[], string_to_array($6::text, $13::text),
            string_to_array($7::text, $13::text), $8::timestamptz[], string_to_array($9::text, ',', 'n')::int8[],
            string_to_array($10::text, ',')::int4[], string_to_array($11::text, ',')::int8[], $12::bool[])
    AS x(generation_id, currency, revenue_amount, pool_amount, parts_total, family_id, family_version, event_time,
         platform_entry_id, parts, amount, disagrees)
ON CONFLICT (generation_id) DO UPDATE SET
    parts_received = g.parts_received + EXCLUDED.parts_received,
    amount_received = g.amount_received + EXCLUDED.amount_received,
    completed_at = CASE WHEN g.parts_received + EXCLUDED.parts_received = g.parts_total
                         AND g.amount_received + EXCLUDED.amount_received = g.pool_amount THEN now() ELSE g.completed_at END,
    inconsistent = CASE
        WHEN g.parts_received + EXCLUDED.parts_received > g.parts_total OR g.amount_received + EXCLUDED.amount_received > g.pool_amount
          OR (g.parts_received + EXCLUDED.parts_received = g.parts_total AND g.amount_received + EXCLUDED.amount_received <> g.pool_amount)
        THEN 'parts do not sum to the pool'
        -- EXCLUDED.inconsistent is set when the batch's parts disagree among themselves, or they
        -- alone overrun their own terms, which with the booked terms equal is caught just above.
        WHEN g.pool_amount <> EXCLUDED.pool_amount OR g.parts_total <> EXCLUDED.parts_total
          OR g.revenue_amount <> EXCLUDED.revenue_amount OR g.currency <> EXCLUDED.currency OR EXCLUDED.inconsistent IS NOT NULL
        THEN 'parts disagree on revenue, pool, currency or parts_total'
        ELSE g.inconsistent END
RETURNING g.generation_id, (g.xmax = 0) AS inserted, g.event_time, g.completed_at
"""


async def settle_generations(
    conn: asyncpg.Connection, parts: Parts, platform_entries: dict[str, int]
) -> tuple[list[ContributionEvent], list[tuple[str, datetime, datetime]]]:
    """Book the generations of the batch's new ``parts`` (ledger/plan.py); ``platform_entries``:
    the platform-share entry id of this batch per currency. Returns (the first part of each
    generation seen for the first time, (generation, event time, completed at) of those complete now)."""
    settled = await conn.fetch(
        _SETTLE_GENERATIONS, *parts.generations_head, fill(parts.platform_template, parts.currencies, platform_entries),
        *parts.generations_tail,
    )
    new_generations = [parts.first[r["generation_id"]] for r in settled if r["inserted"]]
    completed = [(r["generation_id"], r["event_time"], r["completed_at"]) for r in settled if r["completed_at"]]
    return new_generations, completed
