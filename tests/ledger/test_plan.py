"""A batch planned ahead (ledger/plan.py) books what the journal books on its own: entry-id
tokens fill exactly their currency, the stepped plan equals the plan at once, and a plan whose
parts turn out partly booked is planned again for the new ones."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

import asyncpg
import pytest

from royalflow.ledger import queries
from royalflow.ledger.journal import apply_batch
from royalflow.ledger.plan import fill, plan_batch, planning
from royalflow.ledger.reconcile import reconcile

from tests.ledger.factory import generation_parts


def test_each_currency_id_fills_its_own_tokens_only() -> None:
    currencies = [f"C{i:02d}" for i in range(12)]
    ids = {c: 1000 + i for i, c in enumerate(currencies)}
    # e1x must not match inside e11x, nor e0x inside e10x.
    assert fill("e1x,n,e11x,e0x,e10x", currencies, ids) == "1001,n,1011,1000,1010"


def test_the_stepped_plan_equals_the_plan_at_once() -> None:
    parts = [p for g in range(30) for p in generation_parts(f"g{g}", seed=g)]
    steps = planning(parts)
    taken = 0
    while True:
        try:
            next(steps)
            taken += 1
        except StopIteration as done:
            stepped = done.value
            break
    assert taken >= 4  # the ledger yields to its event loop between steps
    assert stepped == plan_batch(parts)
    hours = {hour for _, _, hour, _ in stepped.parts.hourly}
    assert all(h.tzinfo is not None and h.minute == h.second == h.microsecond == 0 for h in hours)


@pytest.mark.integration
async def test_a_plan_whose_parts_are_partly_booked_books_only_the_new_ones(pool: asyncpg.Pool) -> None:
    when = datetime(2026, 11, 25, 9, tzinfo=UTC)
    parts = [p for g in range(20) for p in generation_parts(f"g{g}", seed=g, occurred_at=when)]
    expected: dict[str, int] = defaultdict(int)
    for p in parts:
        expected[p.owner_id] += p.amount
    plan = plan_batch(parts)  # made ahead, as the ledger makes it, assuming every part is new
    async with pool.acquire() as conn, conn.transaction():
        first = await apply_batch(conn, parts[:30], [], {("t", 0): 30}, group_id="g", shard=0)
    async with pool.acquire() as conn, conn.transaction():
        second = await apply_batch(conn, parts, [], {("t", 0): len(parts)}, group_id="g", shard=0, plan=plan)
    assert (first.new_contributions, second.new_contributions, second.duplicates) == (30, len(parts) - 30, 30)
    balances = {r["owner_id"]: r["lifetime"] for r in await queries.all_balances(pool)}
    assert balances == dict(expected)
    assert await queries.settled_generation_count(pool) == 20
    assert await reconcile(pool) == []
