"""One id, one payload, at the ledger: a different payload under a known contribution id, a
part disagreeing with its generation's revenue/pool/currency/parts, or a second attribution
record for a generation is dead-lettered as conflicting_duplicate with its original bytes and
moves nothing; an identical redelivery is a silent no-op; the first one wins."""

from __future__ import annotations

import base64

import asyncpg
import pytest
from prometheus_client import REGISTRY

from royalflow import topics
from royalflow.config import Settings
from royalflow.contracts.events import to_json_bytes
from royalflow.ledger.journal import apply_batch
from royalflow.ledger.reconcile import reconcile
from royalflow.platform.deadletter import read_dead_letters
from royalflow.platform.kafka import ensure_topics

from tests.ledger.factory import generation_parts
from tests.ledger.running import owner_balances, running_ledger
from tests.ledger.stream import expected_balances, produce, wait_for_count
from tests.ledger.test_service import _audit

pytestmark = pytest.mark.integration


async def _apply(pool: asyncpg.Pool, parts, audits=(), origins=None):  # type: ignore[no-untyped-def]
    async with pool.acquire() as conn, conn.transaction():
        return await apply_batch(conn, list(parts), list(audits), {}, group_id="g", shard=0, origins=origins)


async def test_inside_one_batch_the_first_payload_wins(pool: asyncpg.Pool) -> None:
    parts = generation_parts("one", seed=1)
    other = parts[0].model_copy(update={"amount": parts[0].amount - 1})
    audit = _audit(parts)
    other_audit = audit.model_copy(update={"seed": audit.seed + 1})
    result = await _apply(pool, [parts[0], other, parts[0], *parts[1:]], [audit, other_audit, audit])
    assert [r.reason for r in result.rejected] == ["conflicting_duplicate"] * 2
    assert "amount" in result.rejected[0].detail and parts[0].contribution_id in result.rejected[0].detail
    assert (result.new_contributions, result.duplicates) == (4, 1)
    assert await pool.fetchval("SELECT amount FROM contributions WHERE contribution_id = $1",
                               parts[0].contribution_id) == parts[0].amount
    assert await pool.fetchval("SELECT (record->>'seed')::int FROM attributions") == audit.seed
    assert await reconcile(pool) == []
    # The same batch again, in the other order: what is booked stays the first one.
    again = await _apply(pool, [other, parts[0]], [other_audit])
    assert [r.reason for r in again.rejected] == ["conflicting_duplicate"] * 2 and again.duplicates == 1
    assert await reconcile(pool) == []


async def test_a_generation_booked_with_other_terms_refuses_new_parts(pool: asyncpg.Pool) -> None:
    parts = generation_parts("sale", seed=2)
    await _apply(pool, parts[:2])
    for change in ({"revenue_amount": parts[2].revenue_amount + 1}, {"pool_amount": parts[2].pool_amount - 1},
                   {"parts_total": 5}, {"currency": "EUR", "asset_scale": 9}, {"family_version": "2"}):
        result = await _apply(pool, [parts[2].model_copy(update=change)])
        assert [r.reason for r in result.rejected] == ["conflicting_duplicate"], change
        assert "generation sale is booked with other" in result.rejected[0].detail
    assert await pool.fetchval("SELECT count(*) FROM contributions") == 2
    result = await _apply(pool, parts[2:])
    assert result.rejected == [] and result.new_contributions == 2
    assert await pool.fetchval("SELECT inconsistent FROM generations") is None
    assert await reconcile(pool) == []


async def test_conflicts_are_dead_lettered_with_their_bytes_across_batches(settings: Settings) -> None:
    await ensure_topics(settings)
    good = [p for g in range(5) for p in generation_parts(f"c{g}", seed=g)]
    audit = _audit(good[:4])
    await produce(settings, good)
    await produce(settings, [to_json_bytes(audit)], topic=topics.ATTRIBUTIONS, key=b"c0")
    dsn = settings.database_url or ""
    async with running_ledger(settings) as (_, pool):
        await wait_for_count(dsn, len(good), timeout_seconds=60)
        before = await owner_balances(pool)
        assert before == expected_balances(good)
        duplicates = REGISTRY.get_sample_value("royalflow_ledger_duplicates_total") or 0.0
        changed_owner = good[1].model_copy(update={"owner_id": "owner-x"})
        changed_amount = good[2].model_copy(update={"amount": good[2].amount - 1})
        other_sale = generation_parts("c3", seed=3)[0].model_copy(
            update={"contribution_id": "c3/late", "revenue_amount": good[12].revenue_amount * 2})
        conflicts = {to_json_bytes(c): c.contribution_id for c in (changed_owner, changed_amount, other_sale)}
        other_audit = to_json_bytes(audit.model_copy(update={"pool_amount": audit.pool_amount + 5}))
        fresh = generation_parts("fresh", seed=77)
        await produce(settings, [good[0], *conflicts, good[5]], key=None)
        await produce(settings, [to_json_bytes(audit), other_audit], topic=topics.ATTRIBUTIONS, key=b"c0")
        await produce(settings, fresh)
        await wait_for_count(dsn, len(good) + len(fresh), timeout_seconds=60)
        letters = await read_dead_letters(settings, timeout_seconds=10)
        assert sorted(letter.reason for letter in letters) == ["conflicting_duplicate"] * 4
        by_value = {base64.b64decode(letter.original_value_base64): letter for letter in letters}
        assert set(by_value) == {*conflicts, other_audit}
        for value, cid in conflicts.items():
            assert by_value[value].source_topic == settings.topic(topics.CONTRIBUTIONS) and cid in by_value[value].detail
        assert by_value[other_audit].source_topic == settings.topic(topics.ATTRIBUTIONS)
        # Nothing moved but the fresh generation; the identical redeliveries were no-ops.
        assert await owner_balances(pool) == expected_balances(good + fresh)
        assert (REGISTRY.get_sample_value("royalflow_ledger_duplicates_total") or 0.0) - duplicates == 2
        assert await pool.fetchval("SELECT (record->>'pool_amount')::int8 FROM attributions") == audit.pool_amount
        assert await pool.fetchval("SELECT count(*) FROM generations WHERE inconsistent IS NOT NULL") == 0
        assert await reconcile(pool) == []
