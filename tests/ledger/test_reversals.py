"""Reversals on the real broker and PostgreSQL: a reversal must name a contribution that arrives
within ``reversal_wait_seconds``, else it is dead-lettered unknown_contribution with its
original bytes and origin and never applied later; it may only reverse a contribution of the
owner and currency it states; a different payload under a known reversal id is refused."""

from __future__ import annotations

import base64

import pytest

from royalflow import topics
from royalflow.config import Settings
from royalflow.contracts.events import to_json_bytes
from royalflow.ledger.reconcile import reconcile
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
