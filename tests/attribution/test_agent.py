"""The faust attribution agent as a real process on the real broker: valid events become
contribution parts that sum to each pool; bad records become dead letters with reasons."""

from __future__ import annotations

from royalflow import topics
import asyncio
import base64
import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from royalflow.attribution.families.categorical import demo_manifest, write_manifest
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
        # Records that decode are keyed by their event id (claims are partition-local).
        (unknown_family.event_id.encode(), unknown_family.model_dump_json(by_alias=True).encode()),
        (b"tampered", tampered.model_dump_json(by_alias=True).encode()),
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
        unknown_family.event_id.encode(): "unknown_model_family",
        b"tampered": "bad_content",
    }
    for letter in letters:
        assert letter.source_topic == settings.topic(topics.GENERATIONS) and letter.detail
    original = {key: value for key, value in bad}
    for letter in letters:
        key = base64.b64decode(letter.original_key_base64 or "")
        if key != b"k4":
            assert base64.b64decode(letter.original_value_base64) == original[key]


def _with(event, **fields: object) -> bytes:  # type: ignore[no-untyped-def]
    doc = json.loads(event.model_dump_json(by_alias=True))
    doc.update(fields)
    return json.dumps(doc).encode()


async def _consume_until(settings: Settings, done, timeout_seconds: float = 120) -> list[bytes]:  # type: ignore[no-untyped-def]
    """Contributions from the start of the topic until ``done(values)`` holds (bounded)."""
    consumer = AIOKafkaConsumer(
        settings.topic(topics.CONTRIBUTIONS), **client_kwargs(settings), group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    values: list[bytes] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_seconds
        while not done(values) and loop.time() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                values.extend(r.value for r in records)
    finally:
        await consumer.stop()
    return values


def _short(key: str) -> str:
    return key if len(key) <= 128 else key[:10]  # "h-huge-key..." of any length


def _parts(values: list[bytes]) -> dict[str, dict[str, ContributionEvent]]:
    by_generation: dict[str, dict[str, ContributionEvent]] = defaultdict(dict)
    for raw in values:
        part = ContributionEvent.model_validate_json(raw, context=WIRE)
        by_generation[part.generation_id][part.owner_id] = part
    return by_generation


async def test_poison_records_cost_no_valid_one_and_the_agent_keeps_consuming(settings: Settings, tmp_path: Path) -> None:
    manifest = demo_manifest()
    write_manifest(settings.families_dir, manifest)
    await ensure_topics(settings)
    events = sample_events(24, family_id=manifest["family_id"], family_version="1", seed=11, run_id="poison")
    later = sample_events(8, family_id=manifest["family_id"], family_version="1", seed=12, run_id="later")
    first, edge = events[0], events[1]
    conflicting = first.model_copy(update={"revenue": first.revenue.model_copy(update={"amount": 7_777_777})})
    in_two_days = (datetime.now(UTC) + timedelta(days=2)).isoformat()

    def keyed(event_id: str, value: bytes) -> tuple[bytes, bytes]:
        return event_id.encode(), value

    hostile = {
        "h-int": keyed("h-int", b'{"event_id": "h-int", "revenue": {"amount": ' + b"9" * 5000 + b"}}"),
        "h-deep": keyed("h-deep", b'{"a":' * 50_000 + b"1" + b"}" * 50_000),
        "h-key": (b"someone-else", events[2].model_dump_json(by_alias=True).encode()),
        "h-year-1": keyed("h-year-1", _with(events[3].model_copy(update={"event_id": "h-year-1"}),
                                            occurred_at="0001-01-01T00:00:00+14:00")),
        "h-year-9999": keyed("h-year-9999", _with(events[3].model_copy(update={"event_id": "h-year-9999"}),
                                                  occurred_at="9999-12-31T23:59:59-14:00")),
        "h-edge-early": keyed("h-edge-early", _with(events[3].model_copy(update={"event_id": "h-edge-early"}),
                                                    occurred_at="2000-01-01T00:00:00+14:00")),  # 1999-12-31T10:00Z
        "h-future": keyed("h-future", _with(events[3].model_copy(update={"event_id": "h-future"}),
                                            occurred_at=in_two_days)),
        # Keys are not bounded by max_record_bytes: as bytes in the dead letter this one and its
        # value would not fit the dead-letter topic, so the dead letter carries a cut key.
        "h-huge-key": (b"h-huge-key" + b"k" * 1_000_000, b"x" * 600_000),
    }
    expected = {
        "h-int": "malformed_json", "h-deep": "malformed_json", "h-key": "schema_violation",
        "h-year-1": "invalid_timestamp", "h-year-9999": "invalid_timestamp", "h-edge-early": "invalid_timestamp",
        "h-future": "invalid_timestamp", first.event_id: "conflicting_duplicate", "h-huge-key": "malformed_json",
    }
    edge_bytes = _with(edge, occurred_at="2000-01-01T00:00:00-14:00")  # 2000-01-01T14:00Z: inside the window
    batch = [
        keyed(first.event_id, first.model_dump_json(by_alias=True).encode()),
        keyed(first.event_id, conflicting.model_dump_json(by_alias=True).encode()),  # same batch, after the first
        keyed(edge.event_id, edge_bytes),
        *[(k, v) for k, v in hostile.values()],
        *[keyed(e.event_id, e.model_dump_json(by_alias=True).encode()) for e in events[2:]],
    ]
    with Supervisor(settings, tmp_path / "logs") as supervisor:
        supervisor.start("attribution")
        async with Publisher(settings) as publisher:
            await publisher.publish_raw(batch)  # one burst: poison and valid records share batches
            parts = _parts(await _consume(settings, topics.CONTRIBUTIONS, len(events) * 4, timeout_seconds=120))
            await publisher.publish(later)  # the agent is still consuming after the poison
        parts = _parts(await _consume(settings, topics.CONTRIBUTIONS, (len(events) + len(later)) * 4, timeout_seconds=120))
        supervisor.check_alive()
        assert supervisor.restart_count == 0

    assert set(parts) == {e.event_id for e in events + later}
    pool = sum(p.amount for p in parts[first.event_id].values())
    assert pool == first.revenue.amount * 3 // 10  # the first payload won, in the same batch
    assert {p.occurred_at for p in parts[edge.event_id].values()} == {datetime(2000, 1, 1, 14, tzinfo=UTC)}

    letters = await read_dead_letters(settings, timeout_seconds=10)
    reasons = {_short(base64.b64decode(letter.original_key_base64 or "").decode()): letter for letter in letters}
    assert {k: letter.reason for k, letter in reasons.items()} == {
        ("someone-else" if k == "h-key" else k): reason for k, reason in expected.items()
    }
    huge = reasons.pop("h-huge-key")
    assert len(base64.b64decode(huge.original_key_base64 or "")) == 1024 and "cut to 1024" in huge.detail
    assert base64.b64decode(huge.original_value_base64) == hostile.pop("h-huge-key")[1]
    assert "digits" in reasons["h-int"].detail and "nesting" in reasons["h-deep"].detail
    assert "must equal event_id" in reasons["someone-else"].detail
    assert "the first one stands" in reasons[first.event_id].detail
    for key, value in [*hostile.values(), batch[1]]:
        assert base64.b64decode(reasons[_short(key.decode())].original_value_base64) == value


async def test_the_first_payload_wins_across_a_restart(settings: Settings, tmp_path: Path) -> None:
    manifest = demo_manifest()
    write_manifest(settings.families_dir, manifest)
    await ensure_topics(settings)
    events = sample_events(6, family_id=manifest["family_id"], family_version="1", seed=5, run_id="restart")
    first = events[0]
    conflicting = first.model_copy(update={"producer": "another-producer"})
    with Supervisor(settings, tmp_path / "logs") as supervisor:
        supervisor.start("attribution")
        async with Publisher(settings) as publisher:
            await publisher.publish(events)
        assert len(await _consume(settings, topics.CONTRIBUTIONS, len(events) * 4, timeout_seconds=120)) == len(events) * 4
        supervisor.services["attribution"].kill()  # kill -9: the claims come back from the changelog only
        supervisor.start("attribution")
        neighbours = sample_events(2, family_id=manifest["family_id"], family_version="1", seed=6, run_id="beside")
        async with Publisher(settings) as publisher:
            # A conflicting copy and an identical redelivery, between two new valid events.
            await publisher.publish([neighbours[0], conflicting, events[1], neighbours[1]])
        wanted = {e.event_id for e in events} | {n.event_id for n in neighbours}
        values = await _consume_until(settings, lambda vs: set(_parts(vs)) >= wanted and len(vs) >= (len(events) + 3) * 4)
        letters = await read_dead_letters(settings, timeout_seconds=30, limit=1)
        supervisor.check_alive()

    assert [(letter.reason, base64.b64decode(letter.original_key_base64 or "")) for letter in letters] == [
        ("conflicting_duplicate", first.event_id.encode())
    ]
    # The identical redelivery was attributed again, to the same numbers (the ledger deduplicates).
    # Every valid event attributed (after kill -9 some of the first run again: at-least-once), each
    # to one set of numbers: the first payload's, whatever was redelivered.
    parts = [ContributionEvent.model_validate_json(v, context=WIRE) for v in values]
    assert {p.generation_id for p in parts} == wanted
    assert len({(p.generation_id, p.owner_id) for p in parts}) == len(set(parts)) == len(wanted) * 4
    pool = sum(p.amount for p in set(parts) if p.generation_id == first.event_id)
    assert pool == first.revenue.amount * 3 // 10


async def test_file_content_comes_only_from_the_content_root(settings: Settings, tmp_path: Path) -> None:
    import hashlib
    import os

    from royalflow.attribution.diffusion.images import URI_REFUSED

    root = tmp_path / "content"
    root.mkdir()
    settings = settings.model_copy(update={"content_root": root})
    manifest = demo_manifest()
    write_manifest(settings.families_dir, manifest)
    await ensure_topics(settings)
    events = sample_events(6, family_id=manifest["family_id"], family_version="1", seed=9, run_id="files")

    def by_uri(event, path: Path, event_id: str):  # type: ignore[no-untyped-def]
        data = base64.b64decode(events[0].content.data_base64 or "")
        content = event.content.model_copy(update={"data_base64": None, "uri": path.as_uri(),
                                                   "sha256": hashlib.sha256(data).hexdigest()})
        return event.model_copy(update={"event_id": event_id, "content": content})

    (root / "good.png").write_bytes(base64.b64decode(events[0].content.data_base64 or ""))
    os.mkfifo(root / "pipe.png")
    (root / "zero.png").symlink_to("/dev/zero")
    good = by_uri(events[0], root / "good.png", "files-good")
    traps = [by_uri(events[1], root / "pipe.png", "files-fifo"), by_uri(events[2], Path("/dev/zero"), "files-dev-zero"),
             by_uri(events[3], root / "zero.png", "files-zero-link"), by_uri(events[4], root / "no.png", "files-missing")]
    with Supervisor(settings, tmp_path / "logs") as supervisor:
        supervisor.start("attribution")
        async with Publisher(settings) as publisher:
            await publisher.publish([*traps, good, events[5]])
        parts = _parts(await _consume(settings, topics.CONTRIBUTIONS, 2 * 4, timeout_seconds=120))
        supervisor.check_alive()
    assert set(parts) == {"files-good", events[5].event_id}
    letters = await read_dead_letters(settings, timeout_seconds=10)
    assert sorted((letter.reason, letter.detail, base64.b64decode(letter.original_key_base64 or "").decode())
                  for letter in letters) == sorted(("bad_content", URI_REFUSED, t.event_id) for t in traps)
