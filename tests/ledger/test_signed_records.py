"""Signatures on the real broker and PostgreSQL: forged records are dead-lettered as
bad_signature and move nothing while the valid records around them settle; manual corrections
go through the admin-signed path (`royalflow ledger reverse` / `withdraw-family` as processes)."""

from __future__ import annotations

import asyncio
import base64
import subprocess
import sys

import pytest

from royalflow import topics
from royalflow.config import Settings
from royalflow.contracts.events import to_json_bytes
from royalflow.contracts.keys import key_material
from royalflow.contracts.signing import HEADER_KEY_ID, KeySet
from royalflow.ledger import queries
from royalflow.ledger.admin import reversal_id
from royalflow.ledger.reconcile import reconcile
from royalflow.ledger.service import LedgerService
from royalflow.platform.database import create_pool
from royalflow.platform.deadletter import read_dead_letters
from royalflow.platform.kafka import ensure_topics, make_producer

from tests.ledger.factory import generation_parts
from tests.ledger.stream import expected_balances, ledger_env, produce, wait_for_count

pytestmark = pytest.mark.integration


async def _send(settings: Settings, topic: str, records: list[tuple[bytes, bytes, list]]) -> None:  # type: ignore[type-arg]
    producer = make_producer(settings)
    await producer.start()
    try:
        await asyncio.gather(*[await producer.send(settings.topic(topic), v, key=k, headers=h or None) for k, v, h in records])
    finally:
        await producer.stop()


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "royalflow", "ledger", *args], env=ledger_env(settings),
                          capture_output=True, text=True, timeout=120)


async def _owner_balances(pool) -> dict[str, int]:  # type: ignore[no-untyped-def]
    return {("owner:" + r["owner_id"]) if r["owner_id"] != "_unattributed" else "unattributed": r["lifetime"]
            for r in await queries.all_balances(pool) if r["lifetime"]}


async def test_forged_records_move_nothing_and_admin_corrections_are_signed(settings: Settings) -> None:
    await ensure_topics(settings)
    keys = key_material(settings)
    good = [p for g in range(6) for p in generation_parts(f"sig{g}", seed=g)]
    withdrawn = [p for g in range(2) for p in generation_parts(f"old{g}", seed=50 + g, family_version="7")]
    victim = good[0]
    # The forgery: 10^15 units for owner-x, for a generation that never existed.
    forged = generation_parts("forged", seed=9, owners=("owner-x",))[0].model_copy(
        update={"amount": 10**14, "pool_amount": 10**14, "revenue_amount": 10**15})
    forged_value = to_json_bytes(forged)
    reversal = victim.model_copy(update={"contribution_id": "forged-rev", "kind": "reversal", "corrects": victim.contribution_id})
    reversal_value = to_json_bytes(reversal)
    agent = keys.signer(topics.CONTRIBUTIONS)
    admin = keys.signer(topics.CORRECTIONS)
    same_kid_other_secret = KeySet.parse("agent", f"{keys.agent_key_id}:{base64.b64encode(b'x' * 32).decode()}").signer(None)
    signed = agent.headers(topics.CONTRIBUTIONS, b"owner-x", forged_value)
    contributions_forgeries = [
        (b"owner-x", forged_value, []),  # unsigned
        (b"owner-x", forged_value, same_kid_other_secret.headers(topics.CONTRIBUTIONS, b"owner-x", forged_value)),
        (b"owner-x", forged_value, admin.headers(topics.CONTRIBUTIONS, b"owner-x", forged_value)),  # wrong key set
        (b"owner-x", forged_value.replace(b"owner-x", b"owner-y"), signed),  # tampered after signing
        (b"owner-y", forged_value, signed),  # re-keyed
        (b"owner-x", forged_value, [(HEADER_KEY_ID, b"nobody"), *signed[1:]]),  # unknown key id
    ]
    corrections_forgeries = [
        (victim.owner_id.encode(), reversal_value, []),
        (victim.owner_id.encode(), reversal_value, agent.headers(topics.CORRECTIONS, victim.owner_id.encode(), reversal_value)),
        # A valid agent signature for contributions.v1, replayed onto corrections.v1.
        (victim.owner_id.encode(), reversal_value, agent.headers(topics.CONTRIBUTIONS, victim.owner_id.encode(), reversal_value)),
    ]
    await produce(settings, good[:10])
    await _send(settings, topics.CONTRIBUTIONS, contributions_forgeries)
    await _send(settings, topics.CORRECTIONS, corrections_forgeries)
    await produce(settings, good[10:] + withdrawn)
    stop = asyncio.Event()
    task = asyncio.create_task(LedgerService(settings).run(stop))
    pool = await create_pool(settings.database_url or "", max_size=2)
    try:
        dsn = settings.database_url or ""
        await wait_for_count(dsn, len(good) + len(withdrawn), timeout_seconds=60)
        # The forgeries on corrections.v1 may be read after the last good contribution commits:
        # wait for every letter (the ledger dead-letters each one), not for the first read.
        forged = len(contributions_forgeries) + len(corrections_forgeries)
        letters = await read_dead_letters(settings, timeout_seconds=10)
        for _ in range(60):
            if len(letters) >= forged:
                break
            await asyncio.sleep(0.5)
            letters = await read_dead_letters(settings, timeout_seconds=10)
        assert [letter.reason for letter in letters] == ["bad_signature"] * forged
        assert await pool.fetchval("SELECT count(*) FROM contributions WHERE owner_id IN ('owner-x', 'owner-y')") == 0
        assert await pool.fetchval("SELECT count(*) FROM reversals") == 0
        assert await _owner_balances(pool) == expected_balances(good + withdrawn)
        assert await reconcile(pool) == []

        # The admin path, as an operator runs it: a separate process signing with the admin key.
        run = await asyncio.to_thread(_cli, settings, "reverse", victim.contribution_id, "no-such-id", "--wait-seconds", "30")
        assert run.returncode == 1, run.stdout + run.stderr  # one id unknown: published nothing for it
        assert "reversed 1" in run.stdout and "unknown" in run.stdout
        again = await asyncio.to_thread(_cli, settings, "reverse", victim.contribution_id, "--wait-seconds", "30")
        assert again.returncode == 0, again.stdout + again.stderr  # same reversal id: a duplicate, a no-op
        family = await asyncio.to_thread(_cli, settings, "withdraw-family", "digits-categorical", "7", "--wait-seconds", "30")
        assert family.returncode == 0, family.stdout + family.stderr
        assert f"reversed {len(withdrawn)}" in family.stdout

        expected = expected_balances(good + withdrawn)
        moved = 0
        for part in [victim, *withdrawn]:
            expected["owner:" + part.owner_id] -= part.amount
            moved += part.amount
        expected["unattributed"] = moved
        assert await _owner_balances(pool) == {k: v for k, v in expected.items() if v}
        assert await pool.fetchval("SELECT count(*) FROM reversals WHERE reversal_id = $1", reversal_id(victim.contribution_id)) == 1
        assert await reconcile(pool) == []
        assert len(await read_dead_letters(settings, timeout_seconds=5)) == len(contributions_forgeries) + len(corrections_forgeries)
    finally:
        await pool.close()
        stop.set()
        await asyncio.wait_for(task, 30)
