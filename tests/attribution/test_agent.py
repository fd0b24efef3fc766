"""The faust attribution agent as a real process on the real broker: valid events become
contribution parts that sum to each pool; bad records become dead letters with reasons."""

from __future__ import annotations

from royalflow import topics
import asyncio
import base64
import json
from collections import defaultdict
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from royalflow.attribution.categorical import demo_manifest, write_manifest
from royalflow.config import Settings
from royalflow.contracts import ContributionEvent
from royalflow.contracts.events import WIRE
from royalflow.platform.deadletter import read_dead_letters
from royalflow.platform.kafka import client_kwargs, ensure_topics
from royalflow.platform.supervisor import Supervisor
from royalflow.producer import Publisher
from royalflow.producer.samples import sample_events

pytestmark = pytest.mark.integration

EVENTS = 60


async def _consume(settings: Settings, topic: str, expected: int, timeout_seconds: float) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        settings.topic(topic), **client_kwargs(settings), group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    values: list[bytes] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_seconds
        while len(values) < expected and loop.time() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                values.extend(r.value for r in records)
    finally:
        await consumer.stop()
    return values


async def test_agent_attributes_and_dead_letters(settings: Settings, tmp_path: Path) -> None:
    manifest = demo_manifest()
    write_manifest(settings.families_dir, manifest)
    await ensure_topics(settings)
    events = sample_events(EVENTS, family_id=manifest["family_id"], family_version="1", seed=7, run_id="agent")
    unknown_family = sample_events(1, family_id="no-such-family", family_version="9", run_id="unknown")[0]
    tampered = events[0].model_copy(
        update={"event_id": "tampered", "content": events[0].content.model_copy(update={"sha256": "0" * 64})}
    )
    bad = [
        (b"k1", b"{not json"),
        (b"k2", json.dumps({"schema": "royalflow.generation.v1"}).encode()),
        (b"k3", events[1].model_dump_json(by_alias=True).replace('"amount":', '"amount":-').encode()),
        (b"k4", b"x" * (settings.max_record_bytes + 1)),
        (b"k5", unknown_family.model_dump_json(by_alias=True).encode()),
        (b"k6", tampered.model_dump_json(by_alias=True).encode()),
    ]
    with Supervisor(settings, tmp_path / "logs") as supervisor:
        supervisor.start("attribution")
        async with Publisher(settings) as publisher:
            await publisher.publish(events[: EVENTS // 2])
            await publisher.publish_raw(bad)
            await publisher.publish(events[EVENTS // 2 :])
            await publisher.publish(events[:10])  # duplicates: identical outputs, deduplicated downstream
        parts = await _consume(settings, "contributions.v1", (EVENTS + 10) * 4, timeout_seconds=120)
        supervisor.check_alive()

    by_generation: dict[str, dict[str, ContributionEvent]] = defaultdict(dict)
    for raw in parts:
        part = ContributionEvent.model_validate_json(raw, context=WIRE)
        previous = by_generation[part.generation_id].get(part.owner_id)
        assert previous is None or previous == part, "a redelivery must reproduce identical numbers"
        by_generation[part.generation_id][part.owner_id] = part
    assert set(by_generation) == {e.event_id for e in events}
    for event in events:
        owners = by_generation[event.event_id]
        pool = next(iter(owners.values())).pool_amount
        assert pool == event.revenue.amount * 3 // 10
        assert sum(p.amount for p in owners.values()) == pool
        # The owner holding the event's digit class earns the largest share.
        holder = next(o for o, cs in manifest["class_counts"].items() if str(event.conditioning.class_label) in cs)
        assert max(owners.values(), key=lambda p: p.amount).owner_id == holder

    letters = await read_dead_letters(settings, timeout_seconds=10)
    reasons = {base64.b64decode(letter.original_key_base64 or ""): letter.reason for letter in letters}
    assert reasons == {
        b"k1": "malformed_json",
        b"k2": "schema_violation",
        b"k3": "invalid_amount",
        b"k4": "oversized_payload",
        b"k5": "unknown_model_family",
        b"k6": "bad_content",
    }
    for letter in letters:
        assert letter.source_topic == settings.topic(topics.GENERATIONS) and letter.detail
    original = {key: value for key, value in bad}
    for letter in letters:
        key = base64.b64decode(letter.original_key_base64 or "")
        if key != b"k4":
            assert base64.b64decode(letter.original_value_base64) == original[key]
