"""The bounded wait of reversals: a reversal may arrive before its contribution (another topic,
another partition), so it waits in ``reversals``; but not forever. Every few seconds the
sweeper gives up on reversals pending longer than ``reversal_wait_seconds`` whose contribution
never arrived: each is dead-lettered ``unknown_contribution`` with its original bytes and
origin, in the same transaction that marks it, and is never applied later (a contribution
that turns up afterwards is booked and stays with its owner).

It also applies the rare reversal left pending past the wait although its contribution is
booked (two consumers committed both at the same instant, each blind to the other's row).
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg
from aiokafka.errors import KafkaError

from royalflow.config import Settings
from royalflow.ledger import reversals
from royalflow.ledger.batches import TRANSIENT, DeadLetter, with_retries
from royalflow.ledger.posting import Entries, post
from royalflow.observability import metrics

log = logging.getLogger(__name__)

SWEEP_LIMIT = 500  # reversals given up on (or applied) per transaction: a bounded dead-letter burst
SWEEP_MAX_SECONDS = 5.0
SWEEP_MIN_SECONDS = 0.2


def sweep_period_seconds(wait_seconds: float) -> float:
    """A quarter of the wait, within [0.2 s, 5 s]: a reversal is given up on at most that late."""
    return min(SWEEP_MAX_SECONDS, max(SWEEP_MIN_SECONDS, wait_seconds / 4))


class ReversalSweeper:
    def __init__(self, pool: asyncpg.Pool, settings: Settings, dead_letter: DeadLetter) -> None:
        self.pool = pool
        self.wait_seconds = settings.reversal_wait_seconds
        self.dead_letter = dead_letter

    async def sweep_once(self) -> tuple[int, int]:
        """One bounded pass; returns (given up on, applied late)."""

        async def body(conn: asyncpg.Connection) -> tuple[int, int]:
            refused = await reversals.expire(conn, wait_seconds=self.wait_seconds, limit=SWEEP_LIMIT)
            late = await reversals.overdue_ready(conn, wait_seconds=self.wait_seconds, limit=SWEEP_LIMIT)
            entries = Entries()
            reversing, mismatched = await reversals.claim_ready(conn, entries, new_contribution_ids=[], new_reversal_ids=late)
            # Reversal entries touch owner and unattributed accounts only: no sharded account.
            await post(conn, entries, shard=0)
            await reversals.link_entries(conn, reversing)
            # Dead letters before the commit: never marked given-up without its dead letter sent.
            for r in refused + mismatched:
                await self.dead_letter(r.reason, r.detail, r.origin)
            metrics.LEDGER_PENDING_REVERSALS.set(
                await conn.fetchval("SELECT count(*) FROM reversals WHERE applied_at IS NULL"))
            return len(refused), len(reversing)

        expired, applied = await with_retries(self.pool, "reversal sweep", body, transaction=True)
        if expired or applied:
            log.info("ledger: reversal sweep: %d given up on (unknown contribution), %d applied late", expired, applied)
        return expired, applied

    async def run(self, stop: asyncio.Event) -> None:
        period = sweep_period_seconds(self.wait_seconds)
        while not stop.is_set():
            try:
                await self.sweep_once()
            except (asyncpg.PostgresError, KafkaError, *TRANSIENT) as exc:
                # Retried at the next tick (nothing was marked: the dead letters go out before
                # the commit); a database or broker away for long stops the batches too.
                log.warning("ledger: reversal sweep failed: %s", exc)
            try:
                await asyncio.wait_for(stop.wait(), period)
            except TimeoutError:
                pass
