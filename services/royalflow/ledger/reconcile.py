"""Reconciliation: every ledger invariant, checked from the data. Returns the problems found,
each naming the offending records; an empty list means the books are right."""

from __future__ import annotations

import time

import asyncpg

from royalflow.observability import metrics

PROBLEM_LIMIT = 50  # per check: enough to act on, bounded output

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


async def reconcile(pool: asyncpg.Pool) -> list[str]:
    problems: list[str] = []
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        # One snapshot for all checks: a ledger committing meanwhile cannot cause false alarms.
        for title, sql in CHECKS:
            rows = await conn.fetch(f"{sql} LIMIT {PROBLEM_LIMIT}")
            problems.extend(f"{title}: {r[0]}" for r in rows)
    metrics.RECONCILIATION_OK.set(0 if problems else 1)
    metrics.RECONCILIATION_PROBLEMS.set(len(problems))
    metrics.RECONCILIATION_TIMESTAMP.set(time.time())
    return problems
