"""The ledger service: contributions, reversals and audit records from Kafka into PostgreSQL,
exactly once in effect.

Loop: ``getmany`` (bounded) -> decode (bad records to the dead-letter topic, awaited) ->
one transaction applying the batch AND the next offsets -> metrics. Offsets live in
PostgreSQL and are read back on every partition assignment, so a crash, rebalance or replay
resumes exactly after the last committed batch; Kafka's own commit is advisory (lag tooling).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from datetime import UTC, datetime

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from royalflow import topics
from royalflow.config import Settings
from royalflow.contracts import ContributionEvent, decode_ledger_record
from royalflow.contracts.keys import key_material
from royalflow.errors import ContractError, LedgerError
from royalflow.ledger.accounts import account_type
from royalflow.ledger.batches import TRANSIENT, BatchWriter, Prepared, with_retries
from royalflow.ledger.conflicts import Origin
from royalflow.ledger.journal import BatchResult
from royalflow.ledger.migrate import migrate
from royalflow.ledger.offsets import OffsetGuard
from royalflow.ledger.plan import planning
from royalflow.ledger.reconciler import Reconciler
from royalflow.ledger.sweeper import ReversalSweeper
from royalflow.ledger.times import finite
from royalflow.ledger.outbox import OutboxRelay
from royalflow.observability import metrics
from royalflow.platform.database import create_pool
from royalflow.platform.deadletter import DeadLetterWriter
from royalflow.platform.kafka import client_kwargs, make_producer
from royalflow.platform.lifetime import bounded

log = logging.getLogger(__name__)

SERVICE = "ledger"
GAUGE_SECONDS = 5.0  # refresh period of the incomplete-generations gauge
YIELD_EVERY = 50  # records decoded between yields to the event loop
ADVISORY_COMMIT_SECONDS = 1.0  # Kafka-side offsets (lag tooling only) are at most this stale
DEAD_LETTERED_MEMORY = 10_000  # decode-time dead letters remembered per process
UNKNOWN_ORIGIN = "unknown"  # dead letters of rows stored before their origin was kept


class _SeekFromDatabase(ConsumerRebalanceListener):
    def __init__(self, service: "LedgerService") -> None:
        self.service = service

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        # Wait for the batch in flight to commit, so the next owner starts after it.
        async with self.service.batch_lock:
            pass

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        # The fetcher may already have handed out records of these partitions: let that batch
        # commit first, then seek to what PostgreSQL says (which includes it).
        async with self.service.batch_lock:
            await self.service.seek_to_stored(assigned)


class LedgerService:
    def __init__(self, settings: Settings, *, group_id: str | None = None, instance_id: str | None = None) -> None:
        self.settings = settings
        self.group_id = group_id or f"{settings.topic_prefix}-ledger"
        # Static group membership: a restarted instance with the same id takes its partitions
        # back at once instead of waiting for the dead member's session to expire.
        self.instance_id = instance_id
        self.contributions_topic = settings.topic(topics.CONTRIBUTIONS)
        self.corrections_topic = settings.topic(topics.CORRECTIONS)
        self.attributions_topic = settings.topic(topics.ATTRIBUTIONS)
        self.topics = (self.contributions_topic, self.attributions_topic, self.corrections_topic)
        # Every record is authenticated in the decode step; bad keys fail here, at start.
        self.verifier = key_material(settings).verifier()
        self.pool: asyncpg.Pool | None = None
        self.consumer: AIOKafkaConsumer | None = None
        self.letters: DeadLetterWriter | None = None
        self.writer: BatchWriter | None = None
        self.batch_lock = asyncio.Lock()
        # Next offset per partition as committed in PostgreSQL. Records below it were settled
        # already (a fetch that raced a seek hands them out again) and are skipped.
        self.positions: dict[tuple[str, int], int] = {}
        self.advisory: dict[tuple[str, int], int] = {}  # offsets not yet committed to Kafka (advisory)
        self.advisory_at = 0.0  # monotonic time of the last advisory commit
        # Records this process dead-lettered at decode, oldest first (bounded): a batch fetched
        # again after a rebalance does not send their letters twice.
        self.dead_lettered: OrderedDict[tuple[str, int, int], None] = OrderedDict()
        self.offset_guard = OffsetGuard(settings)  # partitions whose stored offset is beyond the log end
        self.ready = False

    async def seek_to_stored(self, assigned: list[TopicPartition]) -> None:
        if not assigned or self.pool is None or self.consumer is None:
            return
        rows = await self._with_retries(
            "read offsets", lambda conn: conn.fetch(
                "SELECT topic, partition, next_offset FROM consumer_offsets WHERE group_id = $1", self.group_id
            )
        )
        stored = {(r["topic"], r["partition"]): r["next_offset"] for r in rows}
        # Stored offsets beyond the log end: such partitions are paused, not sought (a fetch
        # there would reset to the beginning and the records below the stored offset, new to
        # this broker, would be skipped as settled).
        beyond = {(b.topic, b.partition) for b in await self.offset_guard.check(self.consumer, assigned, stored)}
        for tp in assigned:
            offset = stored.get((tp.topic, tp.partition))
            self.positions[(tp.topic, tp.partition)] = offset or 0
            if (tp.topic, tp.partition) in beyond:
                continue
            if offset is None:
                await self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, offset)
        log.info("ledger: assigned %d partitions, positions from PostgreSQL", len(assigned))

    async def run(self, stop: asyncio.Event) -> None:
        settings = self.settings
        self.pool = await create_pool(settings.database_url or "", max_size=settings.db_pool_max_size)
        await migrate(self.pool)
        producer = make_producer(settings)
        await producer.start()
        self.letters = DeadLetterWriter(producer, settings, SERVICE)
        self.writer = BatchWriter(self.pool, self.group_id, self._dead_letter_from)
        self.consumer = AIOKafkaConsumer(
            **client_kwargs(settings),
            group_id=self.group_id,
            group_instance_id=self.instance_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=4 * 1024 * 1024,
            fetch_max_wait_ms=round(settings.kafka_fetch_wait_seconds * 1000),
            fetch_max_bytes=32 * 1024 * 1024,
        )
        self.consumer.subscribe(list(self.topics), listener=_SeekFromDatabase(self))
        await self.consumer.start()
        relay = OutboxRelay(self.pool, producer, settings)
        reconciler = Reconciler(self.pool, settings)
        sweeper = ReversalSweeper(self.pool, settings, self._dead_letter_from)
        helpers = [asyncio.create_task(relay.run(stop)), asyncio.create_task(self._gauges(stop)),
                   asyncio.create_task(reconciler.run(stop)), asyncio.create_task(sweeper.run(stop))]
        self.ready = True
        in_flight: asyncio.Task[None] | None = None
        try:
            while not stop.is_set():
                # Returns as soon as records are there; waits at most ledger_batch_seconds when idle.
                batches = await self.consumer.getmany(
                    timeout_ms=round(settings.ledger_batch_seconds * 1000), max_records=settings.ledger_batch_size
                )
                if not batches:
                    if in_flight is not None:
                        await in_flight
                        in_flight = None
                    continue
                # Pipelining: decode batch N+1 while PostgreSQL commits batch N (the other core).
                # Commits stay strictly in order: N+1 starts only after N is durable.
                prepared = await self._prepare(batches)
                if in_flight is not None:
                    await in_flight
                in_flight = asyncio.create_task(self._commit(prepared))
                # Let it send its first statement before this loop turns to the next fetch.
                await asyncio.sleep(0)
                metrics.observe_pool(SERVICE, self.pool)
            if in_flight is not None:
                await bounded(in_flight, "the last batch's commit")
        finally:
            self.ready = False
            stop.set()
            if in_flight is not None and not in_flight.done():
                in_flight.cancel()  # an uncommitted batch is simply redelivered
            # Each step bounded: with the broker or PostgreSQL gone, aiokafka's leave-group and
            # flush and asyncpg's close wait out their own long timeouts (the process exits by
            # its shutdown deadline anyway; this makes the usual stop quick and clean).
            await asyncio.gather(bounded(asyncio.gather(*helpers, return_exceptions=True), "the ledger's helper tasks"),
                                 bounded(self.consumer.stop(), "closing the Kafka consumer"))
            await asyncio.gather(bounded(producer.stop(), "closing the Kafka producer"),
                                 bounded(self.pool.close(), "closing the database pool"))

    def _short(self, topic: str) -> str:
        return topic.removeprefix(f"{self.settings.topic_prefix}.")

    async def _prepare(self, batches: dict) -> Prepared:  # type: ignore[type-arg]
        """Decode a fetched batch; bad records go to the dead-letter topic (awaited) here."""
        prepared = Prepared()
        decoded_count = 0
        verifier, limit = self.verifier, self.settings.max_record_bytes
        for tp, fetched in batches.items():
            position = self.positions.get((tp.topic, tp.partition), 0)
            records = [r for r in fetched if r.offset >= position]
            if not records:
                continue
            metrics.RECORDS_CONSUMED.labels(SERVICE, tp.topic).inc(len(records))
            short = self._short(tp.topic)  # once per partition, not per record
            append = prepared.items.append
            for record in records:
                decoded_count += 1
                if decoded_count % YIELD_EVERY == 0:
                    await asyncio.sleep(0)  # let the in-flight commit send its next statement
                try:
                    decoded = decode_ledger_record(short, record.value or b"", verifier=verifier, key=record.key,
                                                   headers=record.headers, max_record_bytes=limit)
                except (ContractError, ValueError) as exc:
                    reason, detail = (exc.reason, exc.detail) if isinstance(exc, ContractError) else ("schema_violation", str(exc)[:500])
                    await self._dead_letter(reason, detail, tp, record)
                    continue
                append((tp, record, decoded))
            prepared.offsets[(tp.topic, tp.partition)] = records[-1].offset + 1
            prepared.first_offsets[(tp.topic, tp.partition)] = records[0].offset
        # The batch's columns and aggregates, while the batch before commits (ledger/plan.py).
        # A batch that cannot be planned (ids holding every separator) is planned again in its
        # transaction, whose failure sends it down the record-by-record path.
        steps = planning([d for _, _, d in prepared.items if isinstance(d, ContributionEvent)])
        try:
            while True:
                next(steps)
                await asyncio.sleep(0)  # between steps: let the in-flight commit send its next statement
        except StopIteration as done:
            prepared.plan = done.value
        except LedgerError as exc:
            log.warning("ledger: batch not planned ahead (%s)", exc)
        return prepared

    async def _commit(self, prepared: Prepared) -> None:
        async with self.batch_lock:
            # A rebalance may have happened since the batch was decoded: keep only partitions
            # still ours, and records PostgreSQL has not seen (positions were re-read on assignment).
            owned = self.consumer.assignment() if self.consumer is not None else set()
            keep = lambda tp, record: tp in owned and record.offset >= self.positions.get((tp.topic, tp.partition), 0)  # noqa: E731
            # Records of a partition come in offset order: when each partition is still ours
            # and its first record is new, every record is (the usual case: no check per record).
            if all(TopicPartition(*k) in owned and first >= self.positions.get(k, 0)
                   for k, first in prepared.first_offsets.items()):
                items = prepared.items
            else:
                items = [(tp, r, d) for tp, r, d in prepared.items if keep(tp, r)]
            offsets = {k: o for k, o in prepared.offsets.items() if TopicPartition(*k) in owned
                       and o > self.positions.get(k, 0)}
            if not offsets:
                return
            # Hot system accounts write the shard of this consumer's lowest contributions partition.
            own = [p for (t, p) in offsets if t == self.contributions_topic] or [p for _, p in offsets]
            started = time.perf_counter()
            if self.writer is None:
                raise LedgerError("batch writer not started")
            # The plan holds when no record was dropped above (the usual case).
            result = await self.writer.commit(items, offsets, shard=min(own),
                                              plan=prepared.plan if items is prepared.items else None)
            self.positions.update(offsets)
        log.debug("ledger: committed %d records in %.3fs", len(items), time.perf_counter() - started)
        self._observe(result, len(items), time.perf_counter() - started, offsets)
        # Advisory Kafka commit so standard lag tooling sees progress; PostgreSQL is the truth.
        # At most once per ADVISORY_COMMIT_SECONDS: under load batches are small and many, and a
        # commit per batch put a broker round trip into every batch's turn (the next batch's
        # commit waits for this task) for a figure nobody reads twice a second.
        self.advisory.update(offsets)
        now = time.monotonic()
        if now - self.advisory_at < ADVISORY_COMMIT_SECONDS or self.consumer is None:
            return
        owned = self.consumer.assignment()
        pending = {TopicPartition(t, p): o for (t, p), o in self.advisory.items() if TopicPartition(t, p) in owned}
        self.advisory.clear()
        self.advisory_at = now
        try:
            if pending:
                await self.consumer.commit(pending)
        except KafkaError as exc:
            log.info("advisory Kafka commit failed (harmless): %s", exc)

    async def _dead_letter(self, reason: str, detail: str, tp: TopicPartition, record) -> None:  # type: ignore[no-untyped-def]
        where = (tp.topic, tp.partition, record.offset)
        if where in self.dead_lettered:
            # Already on the dead-letter topic (awaited): the batch came again because a rebalance
            # dropped its offsets before they committed. The bytes at an offset never change, so
            # the letter would be the same one again.
            return
        await self._dead_letter_from(reason, detail, Origin(tp.topic, tp.partition, record.offset, record.key, record.value))
        self.dead_lettered[where] = None
        if len(self.dead_lettered) > DEAD_LETTERED_MEMORY:
            self.dead_lettered.popitem(last=False)

    async def _dead_letter_from(self, reason: str, detail: str, origin: Origin | None) -> None:
        """A dead letter for a record refused after decoding (from the batch or from storage)."""
        if self.letters is None:
            raise LedgerError("dead-letter writer not started")
        # Rows stored before origins were kept have none: say so rather than invent one.
        where = origin or Origin(UNKNOWN_ORIGIN, 0, 0, None, None)
        await self.letters.send(reason=reason, detail=detail, topic=where.topic, partition=where.partition,
                                offset=where.offset, key=where.key, value=where.value)
        metrics.RECORDS_DEAD_LETTERED.labels(SERVICE, where.topic, reason).inc()

    async def _with_retries(self, what: str, fn, *, transaction: bool = False):  # type: ignore[no-untyped-def]
        return await with_retries(self.pool, what, fn, transaction=transaction)

    def _observe(self, result: BatchResult, records: int, seconds: float, offsets: dict[tuple[str, int], int]) -> None:
        metrics.LEDGER_BATCH_DURATION.observe(seconds)
        metrics.LEDGER_BATCH_SIZE.observe(records)
        metrics.LEDGER_DUPLICATES.inc(result.duplicates)
        for account, currency, amount in result.postings:
            metrics.LEDGER_POSTINGS.labels(currency).inc()
            if amount > 0 and account_type(account) in ("owner", "platform", "unattributed"):
                metrics.LEDGER_SETTLED_AMOUNT.labels(currency, account_type(account)).inc(amount)
        now = datetime.now(UTC)
        for _, event_time, _ in result.completed:
            when = finite(event_time)  # None: ±infinity stored before times were bounded
            if when is not None:
                metrics.SETTLEMENT_LATENCY.observe(max(0.0, (now - when).total_seconds()))
        if self.consumer is not None:
            for (topic, partition), next_offset in offsets.items():
                high = self.consumer.highwater(TopicPartition(topic, partition))
                if high is not None:
                    metrics.CONSUMER_LAG.labels(SERVICE, topic, str(partition)).set(max(0, high - next_offset))

    async def _gauges(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                if self.pool is not None:
                    count = await self.pool.fetchval("SELECT count(*) FROM generations WHERE completed_at IS NULL")
                    metrics.INCOMPLETE_GENERATIONS.set(count)
            except TRANSIENT + (asyncpg.PostgresError,) as exc:
                log.info("ledger: gauge refresh failed: %s", exc)
            try:
                await asyncio.wait_for(stop.wait(), GAUGE_SECONDS)
            except TimeoutError:
                pass
