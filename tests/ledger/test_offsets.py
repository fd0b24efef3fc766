"""Stored offsets beyond the log end, on the real broker (an old database, a new empty broker):
the ledger, run as deployed, pauses those partitions (nothing read, nothing skipped), fails
/readyz with the named check 'offsets', exports how far ahead the offsets are, and logs topic,
partition, stored offset and log end. It never sits idle silently."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from royalflow import topics
from royalflow.config import Settings
from royalflow.ledger.migrate import migrate
from royalflow.ledger.offsets import BeyondEnd, OffsetGuard
from royalflow.platform.database import create_pool
from royalflow.platform.kafka import client_kwargs, ensure_topics

from tests.ledger.factory import generation_parts
from tests.ledger.stream import produce, settled_count, start_ledger

pytestmark = pytest.mark.integration

STORED = 1000  # next offset the "old database" holds for every contributions partition
TIMEOUT_SECONDS = 60


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (loopback)
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def _port(log_path: Path) -> int:
    for _ in range(TIMEOUT_SECONDS * 10):
        found = re.search(r"ledger: /metrics on port (\d+)", log_path.read_text() if log_path.exists() else "")
        if found:
            return int(found.group(1))
        await asyncio.sleep(0.1)
    raise TimeoutError(f"no port in {log_path}: {log_path.read_text()[-2000:]}")


async def test_stored_offsets_beyond_the_log_end_are_loud(settings: Settings, tmp_path: Path) -> None:
    await ensure_topics(settings)
    parts = generation_parts("new-broker", seed=1)  # a few records on the new broker
    await produce(settings, parts)
    topic = settings.topic(topics.CONTRIBUTIONS)
    pool = await create_pool(settings.database_url or "", max_size=2)
    try:
        await migrate(pool)
        await pool.execute(
            "INSERT INTO consumer_offsets (group_id, topic, partition, next_offset) "
            "SELECT $1, $2, p, $3 FROM generate_series(0, $4 - 1) AS p",
            f"{settings.topic_prefix}-ledger", topic, STORED, settings.topic_partitions,
        )
        log_path = tmp_path / "ledger.log"
        process = start_ledger(settings, log_path)
        try:
            base = f"http://127.0.0.1:{await _port(log_path)}"
            body: dict = {}  # type: ignore[type-arg]
            for _ in range(TIMEOUT_SECONDS * 5):
                status, text = await asyncio.to_thread(_get, f"{base}/readyz")
                body = json.loads(text)
                if status == 503 and body["failing"] == ["offsets"]:
                    break
                assert process.poll() is None, log_path.read_text()[-3000:]
                await asyncio.sleep(0.2)
            assert body["failing"] == ["offsets"] and body["checks"]["database"] and body["checks"]["broker"], body
            _, exposition = await asyncio.to_thread(_get, f"{base}/metrics")
            log = log_path.read_text()
            named = re.findall(rf"topic {re.escape(topic)} partition (\d+): stored next offset {STORED} is beyond "
                               r"the log end (\d+)", log)
            assert sorted(int(p) for p, _ in named) == list(range(settings.topic_partitions)), log[-3000:]
            ahead = re.search(r"^royalflow_ledger_offsets_beyond_log_end_records (\S+)$", exposition, re.M)
            assert ahead is not None and float(ahead.group(1)) == sum(STORED - int(end) for _, end in named)
            assert sum(int(end) for _, end in named) == len(parts)  # the new broker's few records
            assert re.search(r'^royalflow_readiness_check_passing\{check="offsets"\} 0\.0$', exposition, re.M)
            # Paused, not skipped: the records new to this broker are neither booked nor passed over.
            await asyncio.sleep(2)
            assert await settled_count(settings.database_url or "") == 0
            assert await pool.fetchval("SELECT min(next_offset) FROM consumer_offsets WHERE topic = $1", topic) == STORED
            assert process.poll() is None
        finally:
            process.terminate()
            process.wait(30)
    finally:
        await pool.close()


async def test_a_log_end_under_reported_by_the_broker_is_not_taken_for_stale(settings: Settings) -> None:
    """The embedded broker answers the log-end query with the last batch's base offset + 1;
    only a fetch at the last stored offset decides, so a database exactly at the end is fine."""
    settings = settings.model_copy(update={"topic_partitions": 1})
    await ensure_topics(settings)
    parts = [p for g in range(3) for p in generation_parts(f"u{g}", seed=g)]
    await produce(settings, parts)  # one partition, batched
    tp = TopicPartition(settings.topic(topics.CONTRIBUTIONS), 0)
    consumer = AIOKafkaConsumer(**client_kwargs(settings), group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([tp])
        key = (tp.topic, tp.partition)
        guard = OffsetGuard(settings)
        for at in (len(parts), len(parts) - 1, 1):  # at the end, before it: never beyond
            assert await guard.check(consumer, [tp], {key: at}) == [] and guard.ok, at
        found = await guard.check(consumer, [tp], {key: STORED})
        assert found == [BeyondEnd(tp.topic, 0, STORED, len(parts))] and not guard.ok
        assert tp in consumer.paused()
    finally:
        await consumer.stop()
