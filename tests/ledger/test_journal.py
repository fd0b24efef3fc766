"""apply_batch on a real PostgreSQL: exact balances, idempotency, completeness, payouts,
corrections, and a reconciliation that finds tampering."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

import asyncpg
import pytest

from royalflow.errors import LedgerError
from royalflow.ledger import queries
from royalflow.ledger.corrections import withdraw_family
from royalflow.ledger.journal import apply_batch
from royalflow.ledger.payouts import close_period
from royalflow.ledger.reconcile import reconcile
from royalflow.ledger.statements import statement, statement_csv

from tests.ledger.factory import generation_parts

pytestmark = pytest.mark.integration


async def _apply(pool: asyncpg.Pool, parts, offset: int = 0, shard: int = 0):  # type: ignore[no-untyped-def]
    async with pool.acquire() as conn, conn.transaction():
        return await apply_batch(conn, parts, [], {("t", shard): offset}, group_id="g", shard=shard)


async def test_balances_are_exact_and_duplicates_change_nothing(pool: asyncpg.Pool) -> None:
    parts = [p for g in range(50) for p in generation_parts(f"g{g}", seed=g)]
    expected: dict[str, int] = defaultdict(int)
    for p in parts:
        expected[p.owner_id] += p.amount
    first = await _apply(pool, parts[:120], shard=0)
    second = await _apply(pool, parts[100:], shard=1)  # overlaps 20 parts
    again = await _apply(pool, parts, shard=2)  # a full replay
    assert (first.new_contributions, second.duplicates, again.new_contributions) == (120, 20, 0)
    balances = {r["owner_id"]: r["lifetime"] for r in await queries.all_balances(pool)}
    assert balances == dict(expected)
    assert await queries.settled_generation_count(pool) == 50
    totals = (await queries.settlement_totals(pool))[0]
    assert totals["pool"] == sum(balances.values())
    assert await reconcile(pool) == []
    # Offsets were stored with the postings.
    assert await pool.fetchval("SELECT next_offset FROM consumer_offsets WHERE group_id = 'g' AND partition = 2") == 0


async def test_completeness_waits_for_every_part(pool: asyncpg.Pool) -> None:
    parts = generation_parts("late", seed=1)
    await _apply(pool, parts[:3])
    waiting = await queries.incomplete_generations(pool)
    assert [(w["generation_id"], w["parts_received"], w["parts_total"]) for w in waiting] == [("late", 3, 4)]
    await _apply(pool, parts[3:])
    assert await queries.incomplete_generations(pool) == []


async def test_a_part_disagreeing_with_its_generation_is_refused(pool: asyncpg.Pool) -> None:
    parts = generation_parts("bad", seed=2)
    tampered = parts[1].model_copy(update={"pool_amount": parts[1].pool_amount + 1})
    result = await _apply(pool, [parts[0], tampered, *parts[2:]])
    # The first part of the generation (lowest offset) sets its terms; the other moves nothing.
    assert [(r.reason, tampered.contribution_id in r.detail) for r in result.rejected] == [("conflicting_duplicate", True)]
    assert result.new_contributions == 3
    assert await pool.fetchval("SELECT count(*) FROM contributions WHERE contribution_id = $1", tampered.contribution_id) == 0
    assert await reconcile(pool) == []


async def test_reconciliation_names_a_tampered_balance(pool: asyncpg.Pool) -> None:
    await _apply(pool, generation_parts("g", seed=3))
    assert await reconcile(pool) == []
    await pool.execute("UPDATE balances SET amount = amount + 1 WHERE account_id = 'owner:owner-a'")
    problems = await reconcile(pool)
    assert any("owner:owner-a" in p and "balance" in p for p in problems)


async def test_rolling_windows_use_event_time(pool: asyncpg.Pool) -> None:
    now = datetime.now(UTC)
    from datetime import timedelta

    recent = generation_parts("recent", seed=4, occurred_at=now - timedelta(minutes=5))
    old = generation_parts("old", seed=5, occurred_at=now - timedelta(days=10))  # late arrival, old event
    await _apply(pool, recent + old)
    row = (await queries.owner_balances(pool, "owner-a"))[0]
    a_recent = next(p.amount for p in recent if p.owner_id == "owner-a")
    a_old = next(p.amount for p in old if p.owner_id == "owner-a")
    assert row["windows"]["1h"] == row["windows"]["24h"] == row["windows"]["7d"] == a_recent
    assert row["windows"]["30d"] == row["lifetime"] == a_recent + a_old


async def test_payouts_round_down_and_carry_the_remainder(pool: asyncpg.Pool) -> None:
    parts = [p for g in range(20) for p in generation_parts(f"p{g}", seed=g)]
    await _apply(pool, parts)
    before = {r["owner_id"]: r["lifetime"] for r in await queries.all_balances(pool)}
    end = datetime(2026, 11, 26, tzinfo=UTC)
    summary = await close_period(pool, end, currency="USD")
    after = {r["owner_id"]: r["lifetime"] for r in await queries.all_balances(pool)}
    for owner, balance in before.items():
        assert after[owner] == balance % 10_000_000  # one cent = 1e7 asset units
    assert summary["paid"] + summary["carried_forward"] == sum(before.values())
    assert await reconcile(pool) == []
    with pytest.raises(LedgerError):
        await close_period(pool, end, currency="USD")
    data = await statement(pool, "owner-a", summary["period_id"])
    assert data["credits"] == before["owner-a"] and data["payout"] + data["carried_forward"] == before["owner-a"]
    assert statement_csv(data).count("\n") == len(data["lines"]) + 4


async def test_withdrawn_family_is_compensated_not_edited(pool: asyncpg.Pool) -> None:
    await _apply(pool, generation_parts("w1", seed=6, family_version="7") + generation_parts("w2", seed=7))
    entries_before = await pool.fetchval("SELECT count(*) FROM journal_entries")
    reversed_count = await withdraw_family(pool, "digits-categorical", "7")
    assert reversed_count == 4 and await withdraw_family(pool, "digits-categorical", "7") == 0
    assert await pool.fetchval("SELECT count(*) FROM journal_entries") == entries_before + 4
    assert await pool.fetchval("SELECT count(*) FROM journal_entries WHERE corrects_entry_id IS NOT NULL") == 4
    balances = {r["owner_id"]: r["lifetime"] for r in await queries.all_balances(pool)}
    w2 = {p.owner_id: p.amount for p in generation_parts("w2", seed=7)}
    pool_w1 = generation_parts("w1", seed=6)[0].pool_amount
    assert balances["_unattributed"] == pool_w1
    assert {o: balances[o] for o in w2} == w2
    assert await reconcile(pool) == []
