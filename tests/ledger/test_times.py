"""Edge timestamps never crash the ledger. Times outside [2000-01-01, now + 1 day] are refused
at the contract (dead letter invalid_timestamp), whatever their offset; times on the boundary
settle; and a book written before times were bounded (event times stored as -infinity, the old
year-1 bug that ended in a TypeError) is still completed, corrected and measured."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import asyncpg
import pytest

from royalflow import topics
from royalflow.config import Settings
from royalflow.contracts.events import to_json_bytes
from royalflow.ledger.journal import apply_batch
from royalflow.ledger.migrate import migrate
from royalflow.ledger.posting import Entries
from royalflow.ledger.reconcile import reconcile
from royalflow.ledger.times import finite, hour_of
from royalflow.platform.database import create_pool
from royalflow.platform.deadletter import read_dead_letters
from royalflow.platform.kafka import ensure_topics

from tests.ledger.factory import generation_parts
from tests.ledger.running import owner_balances, running_ledger, wait_until
from tests.ledger.stream import expected_balances, produce, wait_for_count

pytestmark = pytest.mark.integration

OUT_OF_RANGE = ("0001-01-01T00:00:00+01:00", "0001-01-01T00:00:00Z", "1999-12-31T23:59:59Z",
                "2000-01-01T00:59:59+01:00", "9999-12-31T23:59:59-01:00", "9999-12-31T23:59:59Z")
ON_THE_EDGE = ("2000-01-01T00:00:00Z", "2000-01-01T05:30:00+05:30")


def _at(part, when: str, cid: str) -> bytes:  # type: ignore[no-untyped-def]
    doc = json.loads(to_json_bytes(part))
    doc.update(occurred_at=when, contribution_id=cid)
    return json.dumps(doc).encode()


async def test_infinite_times_from_postgres_are_not_computed_with(fresh_database: str) -> None:
    conn = await asyncpg.connect(fresh_database)
    try:
        minus, plus = await conn.fetchrow("SELECT '-infinity'::timestamptz, 'infinity'::timestamptz")
    finally:
        await conn.close()
    assert minus.tzinfo is None and finite(minus) is None and finite(plus) is None  # what asyncpg returns
    assert hour_of(minus) is minus and hour_of(plus) is plus
    assert hour_of(datetime(2026, 11, 25, 10, 7, tzinfo=UTC)) == datetime(2026, 11, 25, 10, tzinfo=UTC)
    entries = Entries()
    entries.credit_hour(1, "owner:a", "USD", minus, 5)  # the old path: astimezone on a naive year 1
    assert entries.hourly == [(1, "owner:a", "USD", minus, 5)]


async def test_edge_times_and_a_book_from_before_the_bound(settings: Settings) -> None:
    await ensure_topics(settings)
    legacy = generation_parts("legacy", seed=1)
    pool = await create_pool(settings.database_url or "", max_size=2)
    try:
        await migrate(pool)
        async with pool.acquire() as conn, conn.transaction():
            await apply_batch(conn, legacy[:2], [], {}, group_id="other", shard=0)
        # As an unbounded contract stored a year-1 time: -infinity everywhere it was written.
        await pool.execute("UPDATE contributions SET event_time = '-infinity'")
        await pool.execute("UPDATE generations SET event_time = '-infinity'")
        await pool.execute("UPDATE journal_entries SET event_time = '-infinity'")
    finally:
        await pool.close()
    edge_parts = generation_parts("edge", seed=2)
    refused = [_at(edge_parts[0], when, f"edge/out/{i}") for i, when in enumerate(OUT_OF_RANGE)]
    boundary = [generation_parts(f"boundary{i}", seed=3 + i, occurred_at=datetime.fromisoformat(when))
                for i, when in enumerate(ON_THE_EDGE)]
    reversal = legacy[0].model_copy(update={"contribution_id": "rev-legacy", "kind": "reversal",
                                            "corrects": legacy[0].contribution_id})
    await produce(settings, refused, key=b"edge")
    await produce(settings, legacy[2:] + [p for parts in boundary for p in parts])
    await produce(settings, [reversal], topic=topics.CORRECTIONS)
    settled = legacy + [p for parts in boundary for p in parts]
    async with running_ledger(settings) as (service, pool):
        await wait_for_count(settings.database_url or "", len(settled), timeout_seconds=60)

        async def reversed_and_complete() -> bool:
            return await pool.fetchval("SELECT outcome FROM reversals") == "reversed" and \
                await pool.fetchval("SELECT count(*) FROM generations WHERE completed_at IS NOT NULL") == 3
        await wait_until(reversed_and_complete, timeout_seconds=30, what="legacy completed and reversed")
        letters = await read_dead_letters(settings, timeout_seconds=5)
        assert [letter.reason for letter in letters] == ["invalid_timestamp"] * len(OUT_OF_RANGE)
        expected = expected_balances(settled)
        expected["owner:" + legacy[0].owner_id] -= legacy[0].amount
        expected["unattributed"] = legacy[0].amount
        assert await owner_balances(pool) == {k: v for k, v in expected.items() if v}
        hours = {r["hour"] for r in await pool.fetch("SELECT DISTINCT hour FROM owner_hourly")}
        assert datetime(2000, 1, 1, tzinfo=UTC) in hours
        assert await reconcile(pool, attribution_grace_seconds=None) == []
        await asyncio.sleep(0.5)
        assert service.ready  # still consuming: nothing raised
