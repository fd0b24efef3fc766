"""Reconciliation: every ledger invariant, checked from the data. Returns the problems found,
each naming the offending records; an empty list means the books are right.

Beyond the books balancing, the books must tie to the attributions: every booked contribution
agrees with the attribution (audit) record of its generation (same revenue, pool, currency and
family; its owner among the record's owners; its amount the record's split of the pool), and a
generation booked without any attribution record, or an attribution record without any booked
contribution, is reported once a grace period has passed (the two travel on different topics).
A record forged with a valid key but not computed by the agent shows up here, by exact id.
"""

from __future__ import annotations

import json
import time

import asyncpg

from royalflow.observability import metrics

PROBLEM_LIMIT = 50  # per check: enough to act on, bounded output
DEFAULT_ATTRIBUTION_GRACE_SECONDS = 300.0  # Settings.attribution_grace_seconds
IDS_NAMED = 10  # contribution ids named per generation in one problem line

CHECKS: tuple[tuple[str, str], ...] = (
    (
        "generation parts do not sum to the pool",
        """SELECT g.generation_id || ': parts ' || COALESCE(sum(c.amount), 0) || ' != pool ' || g.pool_amount
           FROM generations g LEFT JOIN contributions c USING (generation_id)
           WHERE g.completed_at IS NOT NULL GROUP BY g.generation_id, g.pool_amount
           HAVING COALESCE(sum(c.amount), 0) <> g.pool_amount OR count(c.*) <> max(g.parts_total)""",
    ),
    (
        "generation marked inconsistent",
        "SELECT generation_id || ': ' || inconsistent FROM generations WHERE inconsistent IS NOT NULL",
    ),
    (
        "journal entry does not balance",
        """SELECT 'entry ' || entry_id || ' (' || currency || '): sum ' || sum(amount)
           FROM postings GROUP BY entry_id, currency HAVING sum(amount) <> 0""",
    ),
    (
        "journal does not balance per currency",
        "SELECT currency || ': postings sum to ' || sum(amount) FROM postings GROUP BY currency HAVING sum(amount) <> 0",
    ),
    (
        "balance differs from the sum of its postings",
        """SELECT COALESCE(b.account_id, p.account_id) || ' ' || COALESCE(b.currency, p.currency) || ': balance '
                  || COALESCE(b.amount, 0) || ' != postings ' || COALESCE(p.amount, 0)
           FROM (SELECT account_id, currency, sum(amount) AS amount FROM balances GROUP BY 1, 2) b
           FULL JOIN (SELECT account_id, currency, sum(amount) AS amount FROM postings GROUP BY 1, 2) p
             ON b.account_id = p.account_id AND b.currency = p.currency
           WHERE COALESCE(b.amount, 0) <> COALESCE(p.amount, 0)""",
    ),
    (
        "contribution lines differ from the royalty postings that carry them",
        """SELECT 'entry ' || COALESCE(l.entry_id, p.entry_id) || ' ' || COALESCE(l.account_id, p.account_id)
                  || ': lines ' || COALESCE(l.amount, 0) || ' != posted ' || COALESCE(p.amount, 0)
           FROM (SELECT entry_id, CASE WHEN owner_id = '_unattributed' THEN 'unattributed' ELSE 'owner:' || owner_id END
                        AS account_id, sum(amount) AS amount
                 FROM contributions WHERE entry_id IS NOT NULL GROUP BY 1, 2) l
           FULL JOIN (SELECT p.entry_id, p.account_id, p.amount FROM postings p JOIN journal_entries e USING (entry_id)
                      WHERE e.kind = 'royalty' AND p.amount > 0) p
             ON p.entry_id = l.entry_id AND p.account_id = l.account_id
           WHERE COALESCE(l.amount, 0) <> COALESCE(p.amount, 0)""",
    ),
    (
        "paid contribution not carried by any entry",
        """SELECT 'contribution ' || contribution_id || ': amount ' || amount || ' without entry'
           FROM contributions WHERE amount > 0 AND entry_id IS NULL""",
    ),
    (
        "platform share differs from revenue - pool of its generations",
        """SELECT 'entry ' || COALESCE(g.entry_id, p.entry_id) || ': generations ' || COALESCE(g.amount, 0)
                  || ' != posted ' || COALESCE(p.amount, 0)
           FROM (SELECT platform_entry_id AS entry_id, sum(revenue_amount - pool_amount) AS amount
                 FROM generations WHERE platform_entry_id IS NOT NULL GROUP BY 1) g
           FULL JOIN (SELECT p.entry_id, p.amount FROM postings p JOIN journal_entries e USING (entry_id)
                      WHERE e.kind = 'platform_share' AND p.amount > 0) p ON p.entry_id = g.entry_id
           WHERE COALESCE(g.amount, 0) <> COALESCE(p.amount, 0)""",
    ),
    (
        "payouts plus open balance differ from credits",
        """SELECT a.account_id || ' ' || c.currency || ': payouts ' || COALESCE(y.paid, 0) || ' + balance '
                  || COALESCE(b.bal, 0) || ' != credits ' || COALESCE(c.credits, 0)
           FROM accounts a
           JOIN (SELECT p.account_id, p.currency,
                        COALESCE(sum(p.amount) FILTER (WHERE e.kind IN ('royalty', 'reversal')), 0) AS credits
                 FROM postings p JOIN journal_entries e USING (entry_id) GROUP BY 1, 2) c USING (account_id)
           LEFT JOIN (SELECT account_id, currency, sum(amount) AS bal FROM balances GROUP BY 1, 2) b
             ON b.account_id = a.account_id AND b.currency = c.currency
           LEFT JOIN (SELECT owner_id, currency, sum(amount) AS paid FROM payouts GROUP BY 1, 2) y
             ON y.owner_id = a.owner_id AND y.currency = c.currency
           WHERE a.account_type IN ('owner', 'unattributed')
             AND COALESCE(y.paid, 0) + COALESCE(b.bal, 0) <> COALESCE(c.credits, 0)""",
    ),
)


# The attribution record's split of the pool, per owner: amount_i = pool * max(phi_i, 0) / sum_j max(phi_j, 0)
# up to the largest-remainder unit (the agent's policy, attribution/royalty.py). Computed in
# numeric from the record's JSON; a part more than one unit away was not computed from it.
_WEIGHTS = """
WITH w AS (
    SELECT a.generation_id, o.owner, (a.record->>'pool_amount')::numeric AS pool,
           greatest((a.record->'shapley_values'->>(o.ord::int - 1))::numeric, 0) AS weight
    FROM attributions a CROSS JOIN LATERAL jsonb_array_elements_text(a.record->'owners') WITH ORDINALITY AS o(owner, ord)
    WHERE jsonb_typeof(a.record->'owners') = 'array' AND jsonb_typeof(a.record->'shapley_values') = 'array'
      AND jsonb_array_length(a.record->'owners') = jsonb_array_length(a.record->'shapley_values')
), t AS (SELECT generation_id, sum(weight) AS total FROM w GROUP BY 1)
"""

TIE_CHECKS: tuple[tuple[str, str], ...] = (
    (
        "generation differs from its attribution record",
        """SELECT 'generation ' || g.generation_id || ': booked revenue ' || g.revenue_amount || ', pool ' || g.pool_amount
                  || ' ' || g.currency || ', family ' || g.family_id || '/' || g.family_version
                  || '; attribution record: revenue ' || COALESCE(a.record->>'revenue_amount', '?') || ', pool '
                  || COALESCE(a.record->>'pool_amount', '?') || ' ' || COALESCE(a.record->>'currency', '?')
                  || ', family ' || a.family_id || '/' || a.family_version || '; contributions: '
                  || (SELECT array_to_string((array_agg(c.contribution_id ORDER BY c.contribution_id))[1:{ids}], ', ')
                      FROM contributions c WHERE c.generation_id = g.generation_id)
           FROM generations g JOIN attributions a USING (generation_id)
           WHERE (a.record->>'revenue_amount')::numeric IS DISTINCT FROM g.revenue_amount
              OR (a.record->>'pool_amount')::numeric IS DISTINCT FROM g.pool_amount
              OR a.record->>'currency' IS DISTINCT FROM g.currency::text
              OR a.family_id <> g.family_id OR a.family_version <> g.family_version""",
    ),
    (
        "contribution for an owner its attribution record does not name",
        """SELECT 'contribution ' || c.contribution_id || ': owner ' || c.owner_id
                  || ' is not among the owners of the attribution record of ' || c.generation_id
           FROM contributions c JOIN attributions a USING (generation_id)
           WHERE c.owner_id <> '_unattributed' AND NOT COALESCE(a.record->'owners' ? c.owner_id, false)""",
    ),
    (
        "contribution amount differs from its attribution record's split",
        _WEIGHTS + """
           SELECT 'contribution ' || c.contribution_id || ': amount ' || c.amount || ', but the attribution record of '
                  || c.generation_id || ' gives ' || CASE WHEN t.total > 0 THEN trunc(w.pool * w.weight / t.total)::text
                                                          || ' (or one unit more)' ELSE '0 (nothing attributed)' END
           FROM contributions c JOIN w ON w.generation_id = c.generation_id AND w.owner = c.owner_id
           JOIN t ON t.generation_id = c.generation_id
           WHERE CASE WHEN t.total > 0 THEN abs(c.amount - w.pool * w.weight / t.total) >= 1 ELSE c.amount <> 0 END""",
    ),
    (
        "unattributed part although the attribution record attributes the pool",
        _WEIGHTS + """
           SELECT 'contribution ' || c.contribution_id || ': ' || c.amount || ' to _unattributed, but the attribution '
                  || 'record of ' || c.generation_id || ' has owners with positive values'
           FROM contributions c JOIN t ON t.generation_id = c.generation_id
           WHERE c.owner_id = '_unattributed' AND t.total > 0 AND c.amount > 0""",
    ),
    (
        "applied reversal states another amount than the contribution it reversed",
        """SELECT 'reversal ' || r.reversal_id || ': states ' || r.amount || ', contribution ' || r.corrects
                  || ' was ' || c.amount
           FROM reversals r JOIN contributions c ON c.contribution_id = r.corrects
           WHERE r.outcome = 'reversed' AND r.amount <> c.amount""",
    ),
)

# $1: the grace period in seconds. Parts and their attribution record travel on different
# topics and partitions, so one may come a while before the other.
GRACE_CHECKS: tuple[tuple[str, str], ...] = (
    (
        "generation booked without an attribution record",
        """SELECT 'generation ' || g.generation_id || ': no attribution record '
                  || round(extract(epoch FROM now() - g.first_seen_at)) || ' s after its first part; contributions: '
                  || (SELECT array_to_string((array_agg(c.contribution_id ORDER BY c.contribution_id))[1:{ids}], ', ')
                      FROM contributions c WHERE c.generation_id = g.generation_id)
           FROM generations g
           WHERE g.first_seen_at < now() - make_interval(secs => $1)
             AND NOT EXISTS (SELECT 1 FROM attributions a WHERE a.generation_id = g.generation_id)""",
    ),
    (
        "attribution record without any booked contribution",
        """SELECT 'attribution record of ' || a.generation_id || ': no contribution booked '
                  || round(extract(epoch FROM now() - a.received_at)) || ' s after it was received'
           FROM attributions a
           WHERE a.received_at < now() - make_interval(secs => $1)
             AND NOT EXISTS (SELECT 1 FROM generations g WHERE g.generation_id = a.generation_id)""",
    ),
)


async def reconcile(pool: asyncpg.Pool, *, attribution_grace_seconds: float | None = DEFAULT_ATTRIBUTION_GRACE_SECONDS) -> list[str]:
    """Run every check on one snapshot. ``attribution_grace_seconds=None`` leaves out the two
    checks for records missing their counterpart (a book of contributions with no agent)."""
    problems: list[str] = []
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        # One snapshot for all checks: a ledger committing meanwhile cannot cause false alarms.
        for title, sql in CHECKS + TIE_CHECKS:
            rows = await conn.fetch(f"{sql.replace('{ids}', str(IDS_NAMED))} LIMIT {PROBLEM_LIMIT}")
            problems.extend(f"{title}: {r[0]}" for r in rows)
        if attribution_grace_seconds is not None:
            for title, sql in GRACE_CHECKS:
                rows = await conn.fetch(f"{sql.replace('{ids}', str(IDS_NAMED))} LIMIT {PROBLEM_LIMIT}",
                                        float(attribution_grace_seconds))
                problems.extend(f"{title}: {r[0]}" for r in rows)
    metrics.RECONCILIATION_OK.set(0 if problems else 1)
    metrics.RECONCILIATION_PROBLEMS.set(len(problems))
    metrics.RECONCILIATION_TIMESTAMP.set(time.time())
    return problems


RUN_SOURCES = ("ledger", "api", "portal")
RUNS_KEPT = 1000  # reconciliation_runs is a recent history, not an archive


async def record_run(pool: asyncpg.Pool, source: str, problems: list[str]) -> None:
    """Keep a run's outcome in reconciliation_runs (the portal shows the last one), trimming the
    history to the newest RUNS_KEPT runs."""
    if source not in RUN_SOURCES:
        raise ValueError(f"reconciliation source must be one of {RUN_SOURCES}")
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("INSERT INTO reconciliation_runs (source, ok, problems) VALUES ($1, $2, $3::jsonb)",
                           source, not problems, json.dumps(problems))
        await conn.execute("DELETE FROM reconciliation_runs WHERE run_id <= (SELECT max(run_id) FROM reconciliation_runs) - $1",
                           RUNS_KEPT)


async def last_run(pool: asyncpg.Pool) -> dict[str, object] | None:
    """The newest recorded run: source, finished_at, ok, problems; None before the first."""
    row = await pool.fetchrow("SELECT source, finished_at, ok, problems FROM reconciliation_runs ORDER BY run_id DESC LIMIT 1")
    return None if row is None else {**dict(row), "problems": json.loads(row["problems"])}
