"""The whole settlement path on the real broker and PostgreSQL, with real processes:

producer -> attribution agent (faust) -> contributions topic -> ledger (asyncpg) -> balances.

250 generation events with malformed records in between; every valid event settles, the
balances equal an independent recomputation to the unit, and every bad record is on the
dead-letter topic with its reason.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter, defaultdict
from fractions import Fraction
from pathlib import Path

import pytest

from royalflow.attribution.families.categorical import CategoricalFamily, demo_manifest, write_manifest
from royalflow.attribution.pipeline import Pipeline, RawRecord
from royalflow.config import Settings
from royalflow.contracts import ContributionEvent
from royalflow.contracts.events import WIRE, to_json_bytes
from royalflow.ledger import queries
from royalflow.ledger.migrate import migrate
from royalflow.platform.database import create_pool
from royalflow.platform.deadletter import read_dead_letters
from royalflow.platform.kafka import ensure_topics
from royalflow.platform.supervisor import Supervisor
from royalflow.producer import Publisher
from royalflow.producer.samples import sample_events

pytestmark = pytest.mark.integration

EVENTS = 250
BAD = [
    (b"bad-1", b"\x00\x01 not json", "malformed_json"),
    (b"bad-2", json.dumps({"schema": "royalflow.generation.v1", "event_id": "x"}).encode(), "schema_violation"),
]


class _Registry:
    def __init__(self, family: CategoricalFamily) -> None:
        self.family = family

    def get(self, family_id: str, version: str) -> CategoricalFamily:
        return self.family


def _expected_balances(events: list, family: CategoricalFamily) -> dict[str, int]:
    """Recompute every event in-process (attribution is deterministic) and sum per owner."""
    pipeline = Pipeline(_Registry(family), max_record_bytes=1 << 20, max_revenue_amount=10**15)
    outcome = pipeline.process([RawRecord("t", 0, i, e.event_id.encode(), to_json_bytes(e)) for i, e in enumerate(events)])
    totals: dict[str, int] = defaultdict(int)
    for _, value, _ in outcome.contributions:
        part = ContributionEvent.model_validate_json(value, context=WIRE)
        totals[part.owner_id] += part.amount
    return dict(totals)


async def test_generation_events_settle_to_exact_balances(settings: Settings, tmp_path: Path) -> None:
    manifest = demo_manifest()
    write_manifest(settings.families_dir, manifest)
    family = CategoricalFamily.from_manifest(manifest)
    await ensure_topics(settings)
    events = sample_events(EVENTS, family_id=manifest["family_id"], family_version="1", seed=11, run_id="e2e")
    pools = [e.revenue.amount * 3 // 10 for e in events]

    pool = await create_pool(settings.database_url, max_size=2)
    try:
        await migrate(pool)
        with Supervisor(settings, tmp_path / "logs") as supervisor:
            supervisor.start("ledger", "attribution")
            async with Publisher(settings) as publisher:
                await publisher.publish(events[:100])
                await publisher.publish_raw([(key, raw) for key, raw, _ in BAD])
                await publisher.publish(events[100:])
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 240
            while await queries.settled_generation_count(pool) < EVENTS:
                supervisor.check_alive()
                assert loop.time() < deadline, "generations did not settle in time"
                await asyncio.sleep(0.5)
        balances = {row["owner_id"]: row["lifetime"] for row in await queries.all_balances(pool)}
    finally:
        await pool.close()

    expected = _expected_balances(events, family)
    assert {o: a for o, a in balances.items() if a} == {o: a for o, a in expected.items() if a}
    assert sum(balances.values()) == sum(pools) == sum(expected.values())
    assert Fraction(sum(pools), sum(e.revenue.amount for e in events)) <= Fraction(3, 10)

    letters = await read_dead_letters(settings, timeout_seconds=10)
    assert Counter(letter.reason for letter in letters) == Counter(reason for _, _, reason in BAD)
