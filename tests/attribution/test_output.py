"""The agent's outputs hand a batch over as one record batch per partition: on the real broker,
every record lands on the partition the producer's own partitioner picks for its key (or the one
asked for), in order, with its headers; a record over the request limit hands nothing over."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import MessageSizeTooLargeError

from royalflow import topics
from royalflow.attribution.output import Output
from royalflow.config import Settings
from royalflow.platform.kafka import client_kwargs, ensure_topics, make_producer

pytestmark = pytest.mark.integration


class _FaustProducer:
    """Holds the aiokafka producer where faust's producer does."""

    def __init__(self, producer: object) -> None:
        self._producer = producer


class _App:
    def __init__(self, producer: object) -> None:
        self.producer = _FaustProducer(producer)


async def _read(settings: Settings, name: str, expected: int) -> list[tuple[int, bytes, bytes, list[tuple[str, bytes]]]]:
    consumer = AIOKafkaConsumer(name, **client_kwargs(settings), group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    got: list[tuple[int, int, bytes, bytes, list[tuple[str, bytes]]]] = []
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while len(got) < expected and asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                got.extend((r.partition, r.offset, r.key, r.value, list(r.headers)) for r in records)
    finally:
        await consumer.stop()
    return [(p, k, v, h) for p, _, k, v, h in sorted(got, key=lambda g: (g[0], g[1]))]


async def test_send_many_places_records_as_send_would(settings: Settings) -> None:
    await ensure_topics(settings)
    producer = make_producer(settings)
    await producer.start()
    try:
        name = settings.topic(topics.CONTRIBUTIONS)
        output = Output(_App(producer), name, repeated_keys=True)
        owners = [b"owner-a", b"owner-b", b"owner-c", b"owner-d"]
        records = [(owners[i % 4], f"v{i}".encode(), [("sig", f"s{i}".encode())], None) for i in range(40)]
        records.append((b"owner-a", b"pinned", [], 3))  # an explicit partition wins over the key
        await asyncio.gather(*await output.send_many(records))
        # 1. A record over the request limit: refused before any record of the call is handed over.
        with pytest.raises(MessageSizeTooLargeError):
            await output.send_many([(b"owner-a", b"never", None, None), (b"owner-b", b"x" * (4 * 2**20), None, None)])
        expected_partition = {o: producer._partition(name, None, None, None, o, b"") for o in owners}
    finally:
        await producer.stop()

    got = await _read(settings, name, len(records))
    assert len(got) == len(records) and all(v != b"never" for _, _, v, _ in got)
    for partition, key, value, headers in got:
        if value == b"pinned":
            assert partition == 3
            continue
        assert partition == expected_partition[key]
        assert headers == [("sig", b"s" + value[1:])]
    # 2. Per key, the order of the call.
    for owner in owners:
        values = [v for _, k, v, _ in got if k == owner and v != b"pinned"]
        assert values == [v for k, v, _, _ in records if k == owner and v != b"pinned"]
