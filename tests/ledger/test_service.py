"""LedgerService on the real broker and PostgreSQL: valid contributions settle exactly, bad
records are dead-lettered with their reason while the rest settle, audit records are stored,
reversals compensate (even when they arrive first), balances reach the compacted topic."""

from __future__ import annotations

from royalflow import topics
import asyncio
import json

import pytest
from aiokafka import AIOKafkaConsumer

from royalflow.config import Settings
from royalflow.contracts import AttributionRecord, Conditioning, Content
from royalflow.contracts.events import to_json_bytes
from royalflow.ledger import queries
from royalflow.ledger.reconcile import reconcile
from royalflow.ledger.service import LedgerService
from royalflow.platform.database import create_pool
from royalflow.platform.deadletter import read_dead_letters
from royalflow.platform.kafka import client_kwargs, ensure_topics

from tests.ledger.factory import OWNERS, generation_parts
from tests.ledger.stream import expected_balances, produce, wait_for_count

pytestmark = pytest.mark.integration


def _audit(parts) -> AttributionRecord:  # type: ignore[no-untyped-def]
    first = parts[0]
    return AttributionRecord(
        generation_id=first.generation_id, occurred_at=first.occurred_at, family_id=first.family_id,
        family_version=first.family_version, method="exact", mode="categorical", owners=list(OWNERS),
        shapley_values=[p.shapley_value for p in parts], std_errors=[0.0] * len(parts),
        coalition_utilities={"": -3.2, "owner-a": -2.9}, utility_std_errors={"": 0.0, "owner-a": 0.0}, seed=7,
        revenue_amount=first.revenue_amount, pool_amount=first.pool_amount, currency="USD", asset_scale=9,
        content_sha256="0" * 64, model_evaluations=16, conditioning=Conditioning(class_label=3),
        content=Content(media_type="application/x-npy", sha256="0" * 64, uri="s3://bucket/x.npy"),
    )


async def _balances_topic(settings: Settings, *, wanted: dict[str, int]) -> dict[str, dict]:  # type: ignore[type-arg]
    """The latest balance record per owner on the compacted topic, read until every owner in
    ``wanted`` shows the wanted balance (the outbox relay publishes asynchronously) or 30 s."""
    consumer = AIOKafkaConsumer(settings.topic(topics.BALANCES), **client_kwargs(settings), group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    latest: dict[str, dict] = {}  # type: ignore[type-arg]
    try:
        for _ in range(150):
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for r in records:
                    latest[r.key.decode()] = json.loads(r.value)
            if all(owner in latest and int(latest[owner]["balance"]) == balance for owner, balance in wanted.items()):
                break
    finally:
        await consumer.stop()
    return latest


async def test_ledger_settles_dead_letters_and_reverses(settings: Settings) -> None:
    await ensure_topics(settings)
    parts = [p for g in range(30) for p in generation_parts(f"s{g}", seed=g)]
    reversal = parts[0].model_copy(update={"contribution_id": "rev-1", "kind": "reversal", "corrects": parts[0].contribution_id})
    early = generation_parts("early", seed=99)
    early_reversal = early[1].model_copy(update={"contribution_id": "rev-2", "kind": "reversal", "corrects": early[1].contribution_id})
    bad = {
        "malformed_json": b"{not json",
        "schema_violation": b'{"schema": "royalflow.contribution.v1"}',
        "invalid_amount": to_json_bytes(parts[1]).replace(b'"currency":"USD"', b'"currency":"XXX"'),
        "inconsistent_contribution": to_json_bytes(parts[2].model_copy(update={"contribution_id": "x", "amount": parts[2].pool_amount + 1})),
        "oversized_payload": b"{" + b" " * (settings.max_record_bytes + 1) + b"}",
    }
    # The reversal of `early` comes before the contribution it corrects, on the corrections topic.
    await produce(settings, [early_reversal], topic="corrections.v1")
    await produce(settings, parts[:40] + list(bad.values()) + parts[40:] + parts[:10])  # with duplicates
    await produce(settings, [reversal], topic="corrections.v1")  # reversals are admin-signed corrections
    await produce(settings, [to_json_bytes(_audit(parts[:4]))], topic="attributions.v1", key=b"s0")
    stop = asyncio.Event()
    service = LedgerService(settings)
    task = asyncio.create_task(service.run(stop))
    try:
        await wait_for_count(settings.database_url or "", len(parts), timeout_seconds=60)
        await produce(settings, early)
        await wait_for_count(settings.database_url or "", len(parts) + len(early), timeout_seconds=30)
        pool = await create_pool(settings.database_url or "", max_size=2)
        try:
            for _ in range(100):
                if await pool.fetchval("SELECT count(*) FROM reversals WHERE applied_at IS NOT NULL") == 2 and \
                        await pool.fetchval("SELECT count(*) FROM attributions") == 1:
                    break
                await asyncio.sleep(0.1)
            expected = expected_balances(parts + early)
            moved = parts[0].amount + early[1].amount
            expected["owner:" + parts[0].owner_id] -= parts[0].amount
            expected["owner:" + early[1].owner_id] -= early[1].amount
            balances = {f"owner:{r['owner_id']}" if r["owner_id"] != "_unattributed" else "unattributed": r["lifetime"]
                        for r in await queries.all_balances(pool)}
            assert balances.pop("unattributed") == moved
            assert {k: v for k, v in balances.items() if v} == {k: v for k, v in expected.items() if v}
            assert await reconcile(pool) == []
            audit = await queries.generation_audit(pool, "s0")
            assert audit is not None and audit["attribution"]["coalition_utilities"]["owner-a"] == -2.9
            assert audit["complete"] and sum(p["amount"] for p in audit["parts"]) == audit["pool_amount"]
            stored = await pool.fetchval("SELECT count(*) FROM consumer_offsets WHERE group_id = $1", service.group_id)
            assert stored >= 1
        finally:
            await pool.close()
        letters = await read_dead_letters(settings)
        assert sorted(letter.reason for letter in letters) == sorted(bad)
        latest = await _balances_topic(settings, wanted={"owner-a": balances["owner:owner-a"]})
        assert int(latest["owner-a"]["balance"]) == balances["owner:owner-a"]
        assert len(latest) == len(OWNERS) + 1  # every owner, and the unattributed account
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
