"""Reversals on the real broker and PostgreSQL: a reversal must name a contribution that arrives
within ``reversal_wait_seconds``, else it is dead-lettered unknown_contribution with its
original bytes and origin and never applied later; it may only reverse a contribution of the
owner and currency it states; a different payload under a known reversal id is refused."""

from __future__ import annotations

import base64

import pytest
from prometheus_client import REGISTRY

from royalflow import topics
from royalflow.config import Settings
from royalflow.contracts.events import to_json_bytes
from royalflow.ledger.conflicts import Origin
from royalflow.ledger.journal import apply_batch
from royalflow.ledger.migrate import migrate
from royalflow.ledger.reconcile import reconcile
from royalflow.ledger.sweeper import ReversalSweeper
from royalflow.platform.database import create_pool
from royalflow.platform.deadletter import read_dead_letters
from royalflow.platform.kafka import ensure_topics

from tests.ledger.factory import generation_parts
from tests.ledger.running import owner_balances, running_ledger, wait_until
from tests.ledger.stream import expected_balances, produce, wait_for_count

pytestmark = pytest.mark.integration

WAIT_SECONDS = 3.0


def _reversal(part, reversal_id: str, **changes):  # type: ignore[no-untyped-def]
    return part.model_copy(update={"contribution_id": reversal_id, "kind": "reversal", "corrects": part.contribution_id, **changes})


async def test_reversals_wait_a_bounded_time_and_must_match_their_contribution(settings: Settings) -> None:
    settings = settings.model_copy(update={"reversal_wait_seconds": WAIT_SECONDS})
    await ensure_topics(settings)
    good = [p for g in range(4) for p in generation_parts(f"r{g}", seed=g)]
    late = generation_parts("late", seed=40)  # its reversal comes first, the parts only after the wait
    early = generation_parts("early", seed=41)  # its reversal comes first, the parts within the wait
    orphan = _reversal(late[0], "rev-orphan")
    in_time = _reversal(early[1], "rev-in-time")
    wrong_owner = _reversal(good[0], "rev-wrong-owner", owner_id="owner-b")
    wrong_currency = _reversal(good[1], "rev-wrong-currency", currency="EUR")
    honest = _reversal(good[2], "rev-honest")
    honest_changed = _reversal(good[2], "rev-honest", amount=good[2].amount - 1)
    refused = {to_json_bytes(r): r for r in (orphan, wrong_owner, wrong_currency, honest_changed)}
    await produce(settings, good)
    await produce(settings, [orphan, in_time], topic=topics.CORRECTIONS)
    dsn = settings.database_url or ""
    async with running_ledger(settings) as (_, pool):
        async def both_stored() -> bool:
            return await pool.fetchval("SELECT count(*) FROM reversals") == 2
        await wait_until(both_stored, timeout_seconds=60, what="the two early reversals stored")
        await produce(settings, early)
        await wait_for_count(dsn, len(good) + len(early), timeout_seconds=30)
        await produce(settings, [wrong_owner, wrong_currency, honest, honest], topic=topics.CORRECTIONS)
        await produce(settings, [honest_changed], topic=topics.CORRECTIONS)

        async def given_up() -> bool:
            return await pool.fetchval("SELECT outcome FROM reversals WHERE reversal_id = 'rev-orphan'") is not None
        await wait_until(given_up, timeout_seconds=WAIT_SECONDS + 20, what="the orphan reversal given up on")
        # The contribution the orphan named arrives after the wait: booked, never reversed.
        await produce(settings, late)
        await wait_for_count(dsn, len(good) + len(early) + len(late), timeout_seconds=30)

        async def all_letters() -> bool:
            return len(await read_dead_letters(settings, timeout_seconds=2)) >= len(refused)
        await wait_until(all_letters, timeout_seconds=30, what="four dead letters")
        letters = await read_dead_letters(settings, timeout_seconds=2)
        by_value = {base64.b64decode(letter.original_value_base64): letter for letter in letters}
        assert set(by_value) == set(refused) and len(letters) == len(refused)
        reasons = {refused[v].contribution_id + ("/changed" if refused[v] is honest_changed else ""): letter.reason
                   for v, letter in by_value.items()}
        assert reasons == {"rev-orphan": "unknown_contribution", "rev-wrong-owner": "inconsistent_contribution",
                           "rev-wrong-currency": "inconsistent_contribution", "rev-honest/changed": "conflicting_duplicate"}
        for value, letter in by_value.items():
            assert letter.source_topic == settings.topic(topics.CORRECTIONS)
            assert letter.original_key_base64 == base64.b64encode(refused[value].owner_id.encode()).decode()
        orphan_letter = by_value[to_json_bytes(orphan)]
        assert late[0].contribution_id in orphan_letter.detail and f"{WAIT_SECONDS:g} s" in orphan_letter.detail
        assert good[0].owner_id in by_value[to_json_bytes(wrong_owner)].detail

        outcomes = dict(await pool.fetch("SELECT reversal_id, outcome FROM reversals"))
        assert outcomes == {"rev-orphan": "unknown_contribution", "rev-in-time": "reversed", "rev-honest": "reversed",
                            "rev-wrong-owner": "mismatch", "rev-wrong-currency": "mismatch"}
        expected = expected_balances(good + early + late)
        for part in (early[1], good[2]):  # only the in-time and the honest reversal moved money
            expected["owner:" + part.owner_id] -= part.amount
            expected["unattributed"] = expected.get("unattributed", 0) + part.amount
        assert await owner_balances(pool) == {k: v for k, v in expected.items() if v}
        assert await pool.fetchval("SELECT count(*) FROM reversals WHERE applied_at IS NULL") == 0
        assert await reconcile(pool) == []


async def test_the_sweeper_applies_a_reversal_left_pending_beside_its_contribution(fresh_database: str) -> None:
    """Two consumers committing a reversal and its contribution at the same instant each miss
    the other's row: the reversal stays pending though its contribution is booked. Past the
    wait the sweeper applies it (and gives up only on reversals whose contribution is unknown)."""
    pool = await create_pool(fresh_database, max_size=2)
    letters: list[tuple[str, str, Origin | None]] = []

    async def collect(reason: str, detail: str, origin: Origin | None) -> None:
        letters.append((reason, detail, origin))

    try:
        await migrate(pool)
        parts = generation_parts("race", seed=5)
        async with pool.acquire() as conn, conn.transaction():
            await apply_batch(conn, parts, [], {}, group_id="g", shard=0)
        origin = Origin("t.corrections.v1", 2, 17, b"k", b"raw bytes")
        for rid, corrects in (("rev-missed", parts[0].contribution_id), ("rev-unknown", "nowhere/owner-a/0")):
            await pool.execute(
                "INSERT INTO reversals (reversal_id, corrects, owner_id, currency, amount, event_time, received_at, "
                "source_topic, source_partition, source_offset, original_key, original_value) "
                "VALUES ($1, $2, 'owner-a', 'USD', $3, now(), now() - interval '1 hour', $4, $5, $6, $7, $8)",
                rid, corrects, parts[0].amount, *origin)
        sweeper = ReversalSweeper(pool, Settings(reversal_wait_seconds=60), collect)
        assert await sweeper.sweep_once() == (1, 1)
        assert await sweeper.sweep_once() == (0, 0)  # done once, never again
        assert dict(await pool.fetch("SELECT reversal_id, outcome FROM reversals")) == {
            "rev-missed": "reversed", "rev-unknown": "unknown_contribution"}
        assert [(reason, o) for reason, _, o in letters] == [("unknown_contribution", origin)]
        assert REGISTRY.get_sample_value("royalflow_ledger_pending_reversal_records") == 0
        assert await reconcile(pool, attribution_grace_seconds=None) == []
    finally:
        await pool.close()
