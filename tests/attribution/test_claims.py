"""The claims table of the agent, without a broker: lookups, records and the bounded purge
(expired claims leave the table and get a tombstone on their changelog partition)."""

from __future__ import annotations

import asyncio
import time

import faust
import pytest

from royalflow.attribution.agents import ClaimTable
from royalflow.attribution.claims import CLAIM_RETENTION_SECONDS, Claim
from royalflow.config import Settings


async def test_claims_are_recorded_looked_up_and_purged(monkeypatch: pytest.MonkeyPatch) -> None:
    app = faust.App("claims-test", broker="kafka://127.0.0.1:9", value_serializer="raw", key_serializer="raw",
                    store="memory://")
    table = ClaimTable(app, Settings(kafka_bootstrap_servers="127.0.0.1:9", topic_prefix="cl", topic_partitions=4))
    assert table.table.changelog_topic.get_topic_name() == "cl.generation-claims.v1"
    assert table.table.changelog_topic.partitions == 4
    sent: list[tuple[int, bytes, bytes | None]] = []

    def send_changelog(partition: int, key: bytes, value: bytes | None, **_: object) -> asyncio.Future[None]:
        sent.append((partition, key, value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    monkeypatch.setattr(table.table, "send_changelog", send_changelog)
    now = int(time.time())
    fresh, old = Claim("gen-a", "a" * 64, 1, now), Claim("gen-b", "b" * 64, 2, now - CLAIM_RETENTION_SECONDS - 5)
    futures = table.record([fresh, old])
    await asyncio.gather(*futures)
    assert sent == [(1, b"gen-a", fresh.encode()), (2, b"gen-b", old.encode())]
    assert table.lookup("gen-a") == fresh and table.lookup("gen-b") == old and table.lookup("gen-c") is None
    assert await table.purge() == 1
    assert table.lookup("gen-b") is None and table.lookup("gen-a") == fresh
    assert sent[-1] == (2, b"gen-b", None)  # a tombstone on the claim's own partition
