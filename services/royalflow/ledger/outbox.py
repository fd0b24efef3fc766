"""The transactional outbox relay: balance changes written with the postings are published to
the compacted ``<prefix>.balances.v1`` topic, keyed by owner, then marked published.

At-least-once: a crash between publish and mark republishes; consumers keep the latest per key.
"""

from __future__ import annotations

from royalflow import topics
import asyncio
import json
import logging

import asyncpg
from aiokafka import AIOKafkaProducer

from royalflow.config import Settings
from royalflow.observability import metrics

log = logging.getLogger(__name__)

BATCH_ROWS = 1000
IDLE_SECONDS = 0.5


class OutboxRelay:
    def __init__(self, pool: asyncpg.Pool, producer: AIOKafkaProducer, settings: Settings) -> None:
        self.pool = pool
        self.producer = producer
        self.topic = settings.topic(topics.BALANCES)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                sent = await self.publish_once()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("outbox relay: %s", exc)
                sent = 0
            if sent < BATCH_ROWS:
                try:
                    await asyncio.wait_for(stop.wait(), IDLE_SECONDS)
                except TimeoutError:
                    pass

    async def publish_once(self) -> int:
        rows = await self.pool.fetch(
            "SELECT outbox_id, owner_id, payload FROM outbox WHERE published_at IS NULL ORDER BY outbox_id LIMIT $1",
            BATCH_ROWS,
        )
        if not rows:
            metrics.OUTBOX_PENDING.set(0)
            return 0
        pending = [
            await self.producer.send(self.topic, json.dumps(json.loads(r["payload"])).encode(), key=r["owner_id"].encode())
            for r in rows
        ]
        await asyncio.gather(*pending)
        await self.pool.execute(
            "UPDATE outbox SET published_at = now() WHERE outbox_id = ANY($1::int8[])", [r["outbox_id"] for r in rows]
        )
        metrics.RECORDS_PRODUCED.labels("ledger", self.topic).inc(len(rows))
        return len(rows)
