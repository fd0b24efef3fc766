"""Dead letters: bad input goes to ``<prefix>.deadletter.v1`` with its original bytes, where
it came from and why. A consumer never crashes on input and never drops it silently."""

from __future__ import annotations

from royalflow import topics
import asyncio
import base64
import logging
from datetime import UTC, datetime
from typing import NamedTuple

from aiokafka import AIOKafkaProducer

from royalflow.config import Settings
from royalflow.contracts.events import DeadLetter, to_json_bytes

log = logging.getLogger(__name__)

DETAIL_MAX_CHARS = 4000


class RawRecord(NamedTuple):
    """A record as consumed: where it came from and its bytes as published (what a dead letter
    carries). The agent batches these; the ledger keeps them as the origin of a refused record
    (a tuple: its fields go straight into the reversals table's origin columns)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def dead_letter(
    *,
    consumer: str,
    reason: str,
    detail: str,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    max_value_bytes: int,
) -> DeadLetter:
    value = value or b""
    log.warning("dead-letter %s %s[%d]@%d: %s", reason, topic, partition, offset, detail[:200])
    return DeadLetter(
        reason=reason,  # type: ignore[arg-type]
        detail=detail[:DETAIL_MAX_CHARS],
        source_topic=topic,
        source_partition=partition,
        source_offset=offset,
        original_key_base64=base64.b64encode(key).decode() if key is not None else None,
        # Oversized payloads are cut to the limit so the dead letter itself fits the topic;
        # original_size_bytes keeps the true size.
        original_value_base64=base64.b64encode(value[:max_value_bytes]).decode(),
        original_size_bytes=len(value),
        consumer=consumer,
        dead_lettered_at=datetime.now(UTC),
    )


class DeadLetterWriter:
    """Sends dead letters with an aiokafka producer (the ledger; faust uses its own topic)."""

    def __init__(self, producer: AIOKafkaProducer, settings: Settings, consumer: str) -> None:
        self._producer = producer
        self._topic = settings.topic(topics.DEADLETTER)
        self._max_bytes = settings.max_record_bytes
        self._consumer = consumer
        self.count = 0

    async def send(
        self, *, reason: str, detail: str, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None
    ) -> None:
        letter = dead_letter(
            consumer=self._consumer, reason=reason, detail=detail, topic=topic,
            partition=partition, offset=offset, key=key, value=value, max_value_bytes=self._max_bytes,
        )
        # Awaiting the delivery keeps "nothing dropped silently": the caller only moves its
        # offset past the record once the dead letter is on the broker.
        await self._producer.send_and_wait(self._topic, to_json_bytes(letter), key=topic.encode())
        self.count += 1


async def read_dead_letters(settings: Settings, *, timeout_seconds: float = 5.0, limit: int = 10_000) -> list[DeadLetter]:
    """Every dead letter on the topic so far (no consumer group, from offset zero)."""
    from aiokafka import AIOKafkaConsumer

    from royalflow.contracts.events import WIRE
    from royalflow.platform.kafka import client_kwargs

    consumer = AIOKafkaConsumer(
        settings.topic(topics.DEADLETTER), **client_kwargs(settings),
        group_id=None, auto_offset_reset="earliest", enable_auto_commit=False,
    )
    await consumer.start()
    letters: list[DeadLetter] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_seconds
        while len(letters) < limit and loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=200, max_records=1000)
            for records in batch.values():
                letters.extend(DeadLetter.model_validate_json(r.value, context=WIRE) for r in records)
            partitions = list(consumer.assignment())
            if partitions:
                ends = await consumer.end_offsets(partitions)
                if all([await consumer.position(tp) >= ends[tp] for tp in partitions]):
                    break
    finally:
        await consumer.stop()
    return letters
