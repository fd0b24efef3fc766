"""Property test of the ledger's invariants on a real PostgreSQL: for any split of a set of
generations into batches, with duplicates, redeliveries and reversals mixed in, the books
balance, each owner's balance equals its contributions minus its reversals, and applying
everything again changes nothing."""

from __future__ import annotations

import uuid
from collections import defaultdict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from royalflow.ledger.accounts import UNATTRIBUTED, owner_account
from royalflow.ledger.journal import apply_batch
from royalflow.ledger.migrate import migrate
from royalflow.ledger.reconcile import reconcile
from royalflow.platform.database import EmbeddedPostgres, create_database, create_pool

from tests.ledger.factory import generation_parts
from tests.ledger.stream import owner_balances

pytestmark = pytest.mark.integration


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    generations=st.integers(min_value=1, max_value=12),
    cuts=st.lists(st.integers(min_value=1, max_value=60), max_size=6),
    duplicated=st.lists(st.integers(min_value=0, max_value=47), max_size=10),
    reversed_=st.lists(st.integers(min_value=0, max_value=47), max_size=4, unique=True),
    seed=st.integers(min_value=0, max_value=10_000),
)
async def test_any_batching_keeps_the_books_exact(
    postgres: EmbeddedPostgres, generations: int, cuts: list[int], duplicated: list[int], reversed_: list[int], seed: int
) -> None:
    dsn = await create_database(postgres.dsn, f"p_{uuid.uuid4().hex[:10]}")
    pool = await create_pool(dsn, max_size=2)
    try:
        await migrate(pool)
        parts = [p for g in range(generations) for p in generation_parts(f"h{seed}-{g}", seed=seed + g)]
        reversals = [
            parts[i].model_copy(update={"contribution_id": f"rev-{i}", "kind": "reversal", "corrects": parts[i].contribution_id})
            for i in reversed_ if i < len(parts)
        ]
        stream = parts + [parts[i] for i in duplicated if i < len(parts)] + reversals
        # Reversals may come before their contributions: put them first half the time.
        if seed % 2:
            stream = reversals + stream
        bounds = sorted({min(c, len(stream)) for c in cuts} | {len(stream)})
        start = 0
        for n, end in enumerate(bounds):
            async with pool.acquire() as conn, conn.transaction():
                await apply_batch(conn, stream[start:end], [], {("t", 0): end}, group_id="g", shard=n % 3)
            start = end
        expected: dict[str, int] = defaultdict(int)
        for p in parts:
            expected[owner_account(p.owner_id)] += p.amount
        for r in reversals:
            original = next(p for p in parts if p.contribution_id == r.corrects)
            expected[owner_account(original.owner_id)] -= original.amount
            expected[UNATTRIBUTED] += original.amount
        expected_nonzero = {k: v for k, v in expected.items() if v}
        assert await owner_balances(dsn) == expected_nonzero
        assert await reconcile(pool) == []
        # Redelivering everything is a no-op.
        async with pool.acquire() as conn, conn.transaction():
            again = await apply_batch(conn, stream, [], {("t", 0): len(stream)}, group_id="g", shard=0)
        assert again.new_contributions == 0 and again.postings == []
        assert await owner_balances(dsn) == expected_nonzero
    finally:
        await pool.close()
