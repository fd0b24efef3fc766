"""Publishing generation events to ``<prefix>.generations.v1``, keyed by event id."""

from __future__ import annotations

from royalflow import topics
import asyncio
from collections.abc import Iterable

from royalflow.config import Settings
from royalflow.contracts import GenerationEvent
from royalflow.contracts.events import to_json_bytes
from royalflow.platform.kafka import make_producer

MAX_IN_FLIGHT = 1000  # bound on unacknowledged sends


class Publisher:
    """``async with Publisher(settings) as pub: await pub.publish(events)``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = settings.topic(topics.GENERATIONS)
        self._producer = make_producer(settings)

    async def __aenter__(self) -> "Publisher":
        await self._producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._producer.stop()

    async def publish(self, events: Iterable[GenerationEvent]) -> int:
        return await self.publish_raw((e.event_id.encode(), to_json_bytes(e)) for e in events)

    async def publish_raw(self, records: Iterable[tuple[bytes | None, bytes]]) -> int:
        """Publish raw (key, value) pairs; waits until every one is acknowledged (acks=all)."""
        pending: list[asyncio.Future[object]] = []
        count = 0
        for key, value in records:
            pending.append(await self._producer.send(self.topic, value, key=key))
            count += 1
            if len(pending) >= MAX_IN_FLIGHT:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        return count
