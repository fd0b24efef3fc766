"""The ledger service: contributions and audit records from Kafka into PostgreSQL, exactly once
in effect.

Loop: ``getmany`` (bounded) -> decode (bad records to the dead-letter topic, awaited) ->
one transaction applying the batch AND the next offsets -> metrics. Offsets live in
PostgreSQL and are read back on every partition assignment, so a crash, rebalance or replay
resumes exactly after the last committed batch; Kafka's own commit is advisory (lag tooling).
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from royalflow.config import Settings
from royalflow.contracts import decode_contribution
from royalflow.contracts.events import WIRE, AttributionRecord
from royalflow.errors import ContractError
from royalflow.ledger.accounts import account_type
from royalflow.ledger.journal import apply_batch
from royalflow.ledger.migrate import migrate
from royalflow.ledger.outbox import OutboxRelay
from royalflow.observability import metrics
from royalflow.platform.database import create_pool
from royalflow.platform.deadletter import DeadLetterWriter
from royalflow.platform.kafka import client_kwargs, make_producer

log = logging.getLogger(__name__)

SERVICE = "ledger"
DB_RETRIES = 30  # attempts per batch before the service gives up (and is restarted)
DB_RETRY_MAX_SECONDS = 2.0


class _SeekFromDatabase(ConsumerRebalanceListener):
    def __init__(self, service: "LedgerService") -> None:
        self.service = service

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        pass  # every batch is committed before the next poll; nothing is in flight here

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self.service.seek_to_stored(assigned)


class LedgerService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.group_id = f"{settings.topic_prefix}-ledger"
        self.topics = (settings.topic("contributions.v1"), settings.topic("attributions.v1"))
        self.pool: asyncpg.Pool | None = None
        self.consumer: AIOKafkaConsumer | None = None
        self.ready = False

    async def seek_to_stored(self, assigned: list[TopicPartition]) -> None:
        if not assigned or self.pool is None or self.consumer is None:
            return
        rows = await self.pool.fetch(
            "SELECT topic, partition, next_offset FROM consumer_offsets WHERE group_id = $1", self.group_id
        )
        stored = {(r["topic"], r["partition"]): r["next_offset"] for r in rows}
        for tp in assigned:
            offset = stored.get((tp.topic, tp.partition))
            if offset is None:
                await self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, offset)

    async def run(self, stop: asyncio.Event) -> None:
        settings = self.settings
        self.pool = await create_pool(settings.database_url or "", max_size=settings.db_pool_max_size)
        await migrate(self.pool)
        producer = make_producer(settings)
        await producer.start()
        letters = DeadLetterWriter(producer, settings, SERVICE)
        self.consumer = AIOKafkaConsumer(
            **client_kwargs(settings),
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=4 * 1024 * 1024,
            fetch_max_bytes=32 * 1024 * 1024,
        )
        self.consumer.subscribe(list(self.topics), listener=_SeekFromDatabase(self))
        await self.consumer.start()
        relay = OutboxRelay(self.pool, producer, settings)
        relay_task = asyncio.create_task(relay.run(stop))
        self.ready = True
        try:
            while not stop.is_set():
                batches = await self.consumer.getmany(timeout_ms=200, max_records=settings.ledger_batch_size)
                if batches:
                    await self._process(batches, letters)
                metrics.observe_pool(SERVICE, self.pool)
        finally:
            self.ready = False
            stop.set()
            await relay_task
            await self.consumer.stop()
            await producer.stop()
            await self.pool.close()

    async def _process(self, batches: dict, letters: DeadLetterWriter) -> None:  # type: ignore[type-arg]
        contributions, audits, offsets = [], [], {}
        for tp, records in batches.items():
            metrics.RECORDS_CONSUMED.labels(SERVICE, tp.topic).inc(len(records))
            for record in records:
                try:
                    if tp.topic == self.topics[0]:
                        contributions.append(decode_contribution(record.value or b"", max_record_bytes=self.settings.max_record_bytes))
                    else:
                        audits.append(AttributionRecord.model_validate_json(record.value or b"", context=WIRE))
                except (ContractError, ValueError) as exc:
                    reason, detail = (exc.reason, exc.detail) if isinstance(exc, ContractError) else ("schema_violation", str(exc)[:500])
                    await letters.send(reason=reason, detail=detail, topic=tp.topic, partition=tp.partition,
                                       offset=record.offset, key=record.key, value=record.value)
                    metrics.RECORDS_DEAD_LETTERED.labels(SERVICE, tp.topic, reason).inc()
            offsets[(tp.topic, tp.partition)] = records[-1].offset + 1
        shard = min(p for _, p in offsets)
        started = time.perf_counter()
        result = await self._commit_with_retries(contributions, audits, offsets, shard)
        metrics.LEDGER_BATCH_DURATION.observe(time.perf_counter() - started)
        metrics.LEDGER_BATCH_SIZE.observe(len(contributions) + len(audits))
        metrics.LEDGER_DUPLICATES.inc(result.duplicates)
        for account, currency, amount in result.postings:
            metrics.LEDGER_POSTINGS.labels(currency).inc()
            if amount > 0 and account_type(account) in ("owner", "platform", "unattributed"):
                metrics.LEDGER_SETTLED_AMOUNT.labels(currency, account_type(account)).inc(amount)
        now = datetime.now(UTC)
        for _, event_time, _ in result.completed:
            metrics.SETTLEMENT_LATENCY.observe(max(0.0, (now - event_time).total_seconds()))
        # Advisory Kafka commit so standard lag tooling sees progress; PostgreSQL is the truth.
        try:
            assert self.consumer is not None
            await self.consumer.commit({TopicPartition(t, p): o for (t, p), o in offsets.items()})
        except KafkaError as exc:
            log.info("advisory Kafka commit failed (harmless): %s", exc)

    async def _commit_with_retries(self, contributions, audits, offsets, shard):  # type: ignore[no-untyped-def]
        assert self.pool is not None
        delay = 0.1
        for attempt in range(1, DB_RETRIES + 1):
            try:
                async with self.pool.acquire() as conn, conn.transaction():
                    return await apply_batch(conn, contributions, audits, offsets, group_id=self.group_id, shard=shard)
            except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
                    asyncpg.CannotConnectNowError, asyncpg.SerializationError, asyncpg.DeadlockDetectedError) as exc:
                # Nothing committed: the same batch is retried (idempotent) after a bounded backoff.
                log.warning("ledger batch attempt %d/%d failed: %s", attempt, DB_RETRIES, exc)
                if attempt == DB_RETRIES:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, DB_RETRY_MAX_SECONDS)
        raise AssertionError("unreachable")
