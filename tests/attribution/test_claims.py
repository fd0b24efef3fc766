"""The agent's claim store: lookups, write-through, the bounded purge (tombstones on the claim's
partition), and reading the claims back from the real broker at start (tombstones honoured)."""

from __future__ import annotations

import asyncio
import time

import pytest

from royalflow import topics
from royalflow.attribution.claims import CLAIM_RETENTION_SECONDS, Claim
from royalflow.attribution.claimstore import ClaimStore
from royalflow.config import Settings
from royalflow.platform.kafka import ensure_topics, make_producer


class _Producer:
    """Stands in for the faust app's producer: records what would be sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, bytes, bytes | None]] = []

    async def send(self, topic: str, key: bytes, value: bytes | None, partition: int, timestamp: None,
                   headers: object) -> asyncio.Future[None]:
        self.sent.append((partition, key, value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


class _App:
    def __init__(self) -> None:
        self.producer = _Producer()


async def test_claims_are_recorded_looked_up_and_purged() -> None:
    store = ClaimStore(_App(), Settings(kafka_bootstrap_servers="127.0.0.1:9", topic_prefix="cl", topic_partitions=4))
    assert store.topic_name == "cl.generation-claims.v1"
    now = int(time.time())
    fresh, old = Claim("gen-a", "a" * 64, 1, now), Claim("gen-b", "b" * 64, 2, now - CLAIM_RETENTION_SECONDS - 5)
    await asyncio.gather(*await store.record([fresh, old]))
    assert store.topic.app.producer.sent == [(1, b"gen-a", fresh.encode()), (2, b"gen-b", old.encode())]
    assert store.lookup("gen-a") == fresh and store.lookup("gen-b") == old and store.lookup("gen-c") is None
    assert await store.purge() == 1
    assert store.lookup("gen-b") is None and store.lookup("gen-a") == fresh
    assert store.topic.app.producer.sent[-1] == (2, b"gen-b", None)  # a tombstone on the claim's own partition


@pytest.mark.integration
async def test_claims_are_read_back_from_the_topic_before_the_first_batch(settings: Settings) -> None:
    await ensure_topics(settings)
    now = int(time.time())
    kept, purged = Claim("gen-kept", "c" * 64, 0, now), Claim("gen-purged", "d" * 64, 3, now)
    producer = make_producer(settings)
    await producer.start()
    try:
        name = settings.topic(topics.GENERATION_CLAIMS)
        for claim in (kept, purged):
            await producer.send_and_wait(name, claim.encode(), key=claim.event_id.encode(), partition=claim.partition)
        await producer.send_and_wait(name, None, key=b"gen-purged", partition=3)  # tombstone
    finally:
        await producer.stop()
    store = ClaimStore(_App(), settings)
    await store.ready()
    await store.ready()  # once: later callers wait for the same load
    assert store.lookup("gen-kept") == kept
    assert store.lookup("gen-purged") is None
