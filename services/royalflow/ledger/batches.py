"""Committing one decoded batch: one transaction applying the records AND the next offsets,
retried on transient database failures; a batch the database refuses for a property of its
data is applied record by record, so one bad record never costs a good one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiokafka import TopicPartition

from royalflow.contracts import AttributionRecord, ContributionEvent
from royalflow.errors import LedgerError
from royalflow.ledger.conflicts import Origin
from royalflow.ledger.journal import BatchResult, apply_batch
from royalflow.ledger.plan import BatchPlan

log = logging.getLogger(__name__)

DB_RETRIES = 40  # attempts per transaction (~1 min with backoff) before the service gives up and is restarted
DB_RETRY_MAX_SECONDS = 2.0

# Failures after which the same transaction may succeed: connection loss, server restart,
# serialization conflicts. Anything else is a property of the data (see BatchWriter._one_by_one).
TRANSIENT = (
    OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.OperatorInterventionError,
    asyncpg.SerializationError, asyncpg.DeadlockDetectedError, asyncio.TimeoutError,
)

Decoded = ContributionEvent | AttributionRecord
# (reason, detail, origin): the service's dead-letter writer.
DeadLetter = Callable[[str, str, Origin | None], Awaitable[None]]


@dataclass
class Prepared:
    """A decoded batch: (partition, raw record, decoded) per good record, next offset per partition,
    and the plan of its contributions (ledger/plan.py), made before the batch's turn to commit."""

    items: list[tuple[TopicPartition, Any, Decoded]] = field(default_factory=list)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    first_offsets: dict[tuple[str, int], int] = field(default_factory=dict)  # offset of each partition's first record
    plan: BatchPlan | None = None  # of every item's contribution, in order; None: not planned yet


class Origins(Mapping[int, Origin]):
    """``id(record) -> Origin`` of a batch, built on first use: only a refused record (rare)
    needs its origin, so the hot path builds nothing per record."""

    def __init__(self, items: list[tuple[TopicPartition, Any, Decoded]]) -> None:
        self._items = items
        self._by_id: dict[int, Origin] | None = None

    def _map(self) -> dict[int, Origin]:
        if self._by_id is None:
            self._by_id = {id(d): Origin(tp.topic, tp.partition, r.offset, r.key, r.value) for tp, r, d in self._items}
        return self._by_id

    def __getitem__(self, key: int) -> Origin:
        return self._map()[key]

    def __iter__(self) -> Iterator[int]:
        return iter(self._map())

    def __len__(self) -> int:
        return len(self._items)


async def with_retries(pool: asyncpg.Pool | None, what: str, fn, *, transaction: bool = False):  # type: ignore[no-untyped-def]
    """Run ``fn(conn)``; on a transient failure retry with bounded exponential backoff.
    Nothing commits on a failed attempt, and every write is idempotent, so a retry is safe."""
    if pool is None:
        raise LedgerError("ledger pool not started")
    delay = 0.1
    for attempt in range(1, DB_RETRIES + 1):
        try:
            async with pool.acquire() as conn:
                if not transaction:
                    return await fn(conn)
                async with conn.transaction():
                    return await fn(conn)
        except TRANSIENT as exc:
            log.warning("ledger: %s attempt %d/%d failed: %s", what, attempt, DB_RETRIES, exc)
            if attempt == DB_RETRIES:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, DB_RETRY_MAX_SECONDS)
    raise LedgerError("unreachable")


class BatchWriter:
    """Applies batches for one consumer group; refused records go to ``dead_letter``."""

    def __init__(self, pool: asyncpg.Pool, group_id: str, dead_letter: DeadLetter) -> None:
        self.pool = pool
        self.group_id = group_id
        self.dead_letter = dead_letter

    async def commit(
        self, items: list[tuple[TopicPartition, Any, Decoded]], offsets: dict[tuple[str, int], int], *, shard: int,
        plan: BatchPlan | None = None,
    ) -> BatchResult:
        """``plan``: ``plan_batch`` of the items' contributions, if the caller made it ahead."""
        try:
            return await with_retries(self.pool, "apply batch", self._apply(items, offsets, shard, plan),
                                      transaction=True)
        except (asyncpg.PostgresError, LedgerError) as exc:
            if isinstance(exc, TRANSIENT):
                raise  # the database is away for longer than the retries: exit, restart, resume
            log.warning("ledger: batch rejected (%s); applying its records one by one", exc)
            return await self._one_by_one(items, offsets, shard)

    def _apply(  # type: ignore[no-untyped-def]
        self, items: list[tuple[TopicPartition, Any, Decoded]], offsets: dict[tuple[str, int], int], shard: int,
        plan: BatchPlan | None = None,
    ):
        """The transaction body: apply, then dead-letter what the ledger refused BEFORE the
        commit, so an offset never moves past a refused record whose dead letter is not on the
        broker (a retry may send a dead letter twice: at least once, never lost)."""
        contributions = [d for _, _, d in items if isinstance(d, ContributionEvent)]
        audits = [d for _, _, d in items if isinstance(d, AttributionRecord)]
        origins = Origins(items)

        async def body(conn: asyncpg.Connection) -> BatchResult:
            result = await apply_batch(conn, contributions, audits, offsets, group_id=self.group_id, shard=shard,
                                       origins=origins, plan=plan)
            for refused in result.rejected:
                await self.dead_letter(refused.reason, refused.detail, refused.origin)
            return result

        return body

    async def _one_by_one(
        self, items: list[tuple[TopicPartition, Any, Decoded]], offsets: dict[tuple[str, int], int], shard: int
    ) -> BatchResult:
        """A record the database refuses (a constraint, an invalid value) is dead-lettered with
        reason processing_error; the others settle. Offsets commit last: a crash in between
        redelivers the batch and the records already settled are no-ops."""
        total = BatchResult()
        # Contributions first, then audits: the order the batch path applies them in.
        ordered = [i for i in items if isinstance(i[2], ContributionEvent)] + \
                  [i for i in items if isinstance(i[2], AttributionRecord)]
        for tp, raw, decoded in ordered:
            try:
                part = await with_retries(self.pool, "apply record", self._apply([(tp, raw, decoded)], {}, shard),
                                          transaction=True)
            except (asyncpg.PostgresError, LedgerError) as exc:
                if isinstance(exc, TRANSIENT):
                    raise
                await self.dead_letter("processing_error", str(exc)[:1000],
                                       Origin(tp.topic, tp.partition, raw.offset, raw.key, raw.value))
                continue
            total.new_contributions += part.new_contributions
            total.duplicates += part.duplicates
            total.postings += part.postings
            total.completed += part.completed
            total.reversed += part.reversed
            total.rejected += part.rejected
        await with_retries(self.pool, "commit offsets", self._apply([], offsets, shard), transaction=True)
        return total
