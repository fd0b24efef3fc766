"""Fault tests: the ledger as its own process (``python -m royalflow ledger run``) against the real
broker and PostgreSQL. Balances must come out exactly as the contributions say, whatever happens:

- kill -9 at random moments, at least 5 times, during a run of 50,000 contributions, with
  duplicates injected on the topic meanwhile;
- then a full replay from offset zero by a new consumer group: nothing changes;
- a PostgreSQL restart mid-run: the same ledger process reconnects and loses nothing.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from pathlib import Path

import asyncpg
import pytest

from royalflow.config import Settings
from royalflow.ledger.migrate import migrate
from royalflow.ledger.reconcile import reconcile
from royalflow.platform.database import EmbeddedPostgres, create_pool
from royalflow.platform.kafka import ensure_topics

from tests.ledger.stream import (
    expected_balances, owner_balances, produce, settled_count, start_ledger, wait_for_count, workload,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OWNERS = ("hot", *(f"o{i:02d}" for i in range(15)))  # "hot" is in every generation
CONTRIBUTIONS = 50_000
KILLS = 5


def _owners_for(seed: int) -> tuple[str, ...]:
    rng = random.Random(seed)
    return ("hot", *rng.sample(OWNERS[1:], 7))


def _parts(generations: int, *, seed: int, prefix: str):  # type: ignore[no-untyped-def]
    parts = []
    for g in range(generations):
        parts.extend(workload(1, owners=_owners_for(seed + g), seed=seed + g, prefix=f"{prefix}{g}-"))
    return parts


async def _books(dsn: str) -> tuple[dict[str, int], int, int]:
    """(owner balances, journal entries, postings): what must not move under a replay."""
    conn = await asyncpg.connect(dsn)
    try:
        entries = await conn.fetchval("SELECT count(*) FROM journal_entries")
        postings = await conn.fetchval("SELECT count(*) FROM postings")
    finally:
        await conn.close()
    return await owner_balances(dsn), entries, postings


async def _check_reconciles(dsn: str) -> None:
    pool = await create_pool(dsn, max_size=2)
    try:
        # A workload of contributions alone (no agent, no attribution records): the books must
        # balance; the tie to attribution records is tested in test_reconcile.
        assert await reconcile(pool, attribution_grace_seconds=None) == []
        assert await pool.fetchval("SELECT count(*) FROM generations WHERE completed_at IS NULL") == 0
    finally:
        await pool.close()


async def _replayed_to_end(dsn: str, group: str, expected_next: int) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        done = await conn.fetchval(
            "SELECT COALESCE(sum(next_offset), 0) FROM consumer_offsets WHERE group_id = $1 AND topic LIKE '%.contributions.v1'",
            group,
        )
    finally:
        await conn.close()
    return done >= expected_next


def _stop(process) -> None:  # type: ignore[no-untyped-def]
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except Exception:
            process.kill()
            process.wait()


async def test_kill_9_duplicates_and_full_replay_change_nothing(settings: Settings, tmp_path: Path) -> None:
    await ensure_topics(settings)
    dsn = settings.database_url or ""
    parts = _parts(CONTRIBUTIONS // 8, seed=11, prefix="k")
    duplicates = random.Random(5).sample(parts, 2_000)
    expected = expected_balances(parts)
    await produce(settings, parts[: len(parts) // 2])
    log = tmp_path / "ledger.log"
    rng = random.Random(2026)
    # Kill points: settled counts at which the process is SIGKILLed (random, spread over the run).
    kill_at = sorted(rng.sample(range(3_000, CONTRIBUTIONS - 3_000, 500), KILLS))
    started = time.monotonic()
    process = start_ledger(settings, log, ROYALFLOW_LEDGER_INSTANCE_ID="ledger-0")
    kills = 0
    try:
        for i, threshold in enumerate(kill_at):
            await wait_for_count(dsn, threshold, timeout_seconds=90, process=process)
            await asyncio.sleep(rng.random() * 0.3)  # land anywhere inside a batch
            process.send_signal(signal.SIGKILL)
            process.wait(10)
            kills += 1
            if i == 1:  # the second half of the topic and the duplicates arrive while it is down
                await produce(settings, parts[len(parts) // 2:] + duplicates)
            process = start_ledger(settings, log, ROYALFLOW_LEDGER_INSTANCE_ID="ledger-0")
        await wait_for_count(dsn, len(parts), timeout_seconds=120, process=process)
        # Give a crashed-and-redelivered tail time to show up as a (wrong) extra effect if any.
        await asyncio.sleep(1.0)
        assert kills >= KILLS
        assert await settled_count(dsn) == len(parts)
        assert await owner_balances(dsn) == expected
        await _check_reconciles(dsn)
        books = await _books(dsn)
        print(f"kill -9 x{kills}: {len(parts)} contributions settled in {time.monotonic() - started:.1f}s")
    finally:
        _stop(process)

    # Full replay from offset zero by a new consumer group (no stored offsets): no effect.
    total_on_topic = len(parts) + len(duplicates)
    process = start_ledger(settings, log, "--group", "replay-from-zero", ROYALFLOW_LEDGER_INSTANCE_ID="replay-0")
    try:
        deadline = time.monotonic() + 120
        while not await _replayed_to_end(dsn, "replay-from-zero", total_on_topic):
            assert process.poll() is None, "ledger exited during the replay"
            assert time.monotonic() < deadline, "replay did not reach the end of the topic"
            await asyncio.sleep(0.3)
    finally:
        _stop(process)
    assert await _books(dsn) == books
    await _check_reconciles(dsn)


async def test_postgres_restart_mid_run_is_survived(settings: Settings, postgres: EmbeddedPostgres, tmp_path: Path) -> None:
    await ensure_topics(settings)
    dsn = settings.database_url or ""
    pool = await create_pool(dsn, max_size=1)
    await migrate(pool)
    await pool.close()
    parts = _parts(2_500, seed=77, prefix="r")
    await produce(settings, parts[:10_000])
    process = start_ledger(settings, tmp_path / "ledger.log")
    try:
        await wait_for_count(dsn, 3_000, timeout_seconds=60, process=process)
        # Down, not merely restarted: a ledger that has drained the first half by now (it takes
        # well under a second) must meet the outage with records in hand, and retry.
        await asyncio.to_thread(postgres.stop, "fast")
        await produce(settings, parts[10_000:])  # keeps arriving while the database is away
        deadline = time.monotonic() + 60
        while "attempt" not in (tmp_path / "ledger.log").read_text():
            assert process.poll() is None, "the ledger must retry, not die"
            assert time.monotonic() < deadline, "the ledger never met the outage"
            await asyncio.sleep(0.2)
        await asyncio.to_thread(postgres.start)
        await wait_for_count(dsn, len(parts), timeout_seconds=120, process=process)
        assert process.poll() is None, "the ledger must reconnect, not die"
        assert await owner_balances(dsn) == expected_balances(parts)
        await _check_reconciles(dsn)
    finally:
        _stop(process)
    text = (tmp_path / "ledger.log").read_text()
    assert "attempt" in text, "the restart should have been seen and retried"
