"""Reconciliation ties the books to the attribution records and names the exact records:
a booked part the attribution record did not compute (other owner, other amount, other
revenue/pool/currency/family), a generation without an attribution record or a record without
parts after the grace period, and a record forged with a VALID key (it passes the signature
check, so only reconciliation can catch it)."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest
from prometheus_client import REGISTRY

from royalflow import topics
from royalflow.config import Settings
from royalflow.contracts.events import to_json_bytes
from royalflow.ledger.journal import apply_batch
from royalflow.ledger.reconcile import reconcile
from royalflow.ledger.reconciler import Reconciler
from royalflow.platform.kafka import ensure_topics

from tests.ledger.factory import generation_parts
from tests.ledger.running import running_ledger, wait_until
from tests.ledger.stream import produce, wait_for_count
from tests.ledger.test_service import _audit

pytestmark = pytest.mark.integration


async def _apply(pool: asyncpg.Pool, parts, audits=()):  # type: ignore[no-untyped-def]
    async with pool.acquire() as conn, conn.transaction():
        result = await apply_batch(conn, list(parts), list(audits), {}, group_id="g", shard=0)
    assert result.rejected == []


def _named(problems: list[str], title: str) -> list[str]:
    return [p for p in problems if p.startswith(title)]


async def test_books_that_tie_to_their_attribution_records_reconcile(pool: asyncpg.Pool) -> None:
    generations = [generation_parts(f"t{g}", seed=g) for g in range(6)]
    await _apply(pool, [p for parts in generations for p in parts], [_audit(parts) for parts in generations])
    assert await reconcile(pool, attribution_grace_seconds=0) == []


async def test_parts_the_attribution_record_did_not_compute_are_named(pool: asyncpg.Pool) -> None:
    honest = generation_parts("honest", seed=1)
    # Owner-a's part inflated, owner-b's deflated: the parts still sum to the pool.
    skewed = generation_parts("skewed", seed=2)
    skewed = [skewed[0].model_copy(update={"amount": skewed[0].amount + 1000}),
              skewed[1].model_copy(update={"amount": skewed[1].amount - 1000}), *skewed[2:]]
    # A stranger paid out of a generation whose record names four other owners.
    stranger = generation_parts("stranger", seed=3)
    stranger = [*stranger[:3], stranger[3].model_copy(update={"owner_id": "owner-x", "contribution_id": "stranger/owner-x/0"})]
    # A sale booked at another revenue than the agent attributed.
    resold = generation_parts("resold", seed=4)
    resold_audit = _audit(resold).model_copy(update={"revenue_amount": resold[0].revenue_amount + 1})
    # The pool sent to _unattributed although owners have positive values.
    diverted = generation_parts("diverted", seed=5)
    diverted_part = diverted[0].model_copy(update={
        "owner_id": "_unattributed", "contribution_id": "diverted/_unattributed/0", "method": "unattributed",
        "amount": diverted[0].pool_amount, "parts_total": 1})
    diverted_audit = _audit(diverted).model_copy(update={"pool_amount": diverted[0].pool_amount})
    await _apply(pool, honest + skewed + stranger + resold + [diverted_part],
                 [_audit(honest), _audit(generation_parts("skewed", seed=2)), _audit(generation_parts("stranger", seed=3)),
                  resold_audit, diverted_audit])
    problems = await reconcile(pool, attribution_grace_seconds=0)
    split = _named(problems, "contribution amount differs from its attribution record's split")
    assert sorted(p.split(":")[1].split()[1] for p in split) == sorted([skewed[0].contribution_id, skewed[1].contribution_id])
    assert _named(problems, "contribution for an owner its attribution record does not name") == [
        "contribution for an owner its attribution record does not name: contribution stranger/owner-x/0: owner owner-x "
        "is not among the owners of the attribution record of stranger"]
    differs = _named(problems, "generation differs from its attribution record")
    assert len(differs) == 1 and "generation resold" in differs[0]
    assert all(p.contribution_id in differs[0] for p in resold)
    assert [p for p in problems if "diverted/_unattributed/0" in p]
    assert not [p for p in problems if "honest" in p]


async def test_missing_counterparts_are_reported_after_the_grace_period(pool: asyncpg.Pool) -> None:
    orphan_parts = generation_parts("no-record", seed=6)
    lonely = _audit(generation_parts("no-parts", seed=7))
    await _apply(pool, orphan_parts, [lonely])
    assert await reconcile(pool) == []  # within the default grace period: in flight, not a problem
    assert await reconcile(pool, attribution_grace_seconds=None) == []
    problems = await reconcile(pool, attribution_grace_seconds=0)
    missing = _named(problems, "generation booked without an attribution record")
    assert len(missing) == 1 and all(p.contribution_id in missing[0] for p in orphan_parts)
    assert _named(problems, "attribution record without any booked contribution")[0].startswith(
        "attribution record without any booked contribution: attribution record of no-parts:")
    assert len(problems) == 2


async def test_a_forgery_under_a_valid_key_is_flagged_by_exact_id(settings: Settings) -> None:
    """The signature proves who signed, not what the agent computed: a record signed with a
    valid (leaked, or test) key is booked, and reconciliation names it."""
    await ensure_topics(settings)
    honest = [p for g in range(3) for p in generation_parts(f"v{g}", seed=g)]
    forged = generation_parts("forged", seed=9, owners=("owner-x",))[0].model_copy(
        update={"amount": 10**14, "pool_amount": 10**14, "revenue_amount": 10**15})
    await produce(settings, honest + [forged])  # signed with the agent key set, as the agent would
    await produce(settings, [to_json_bytes(_audit(honest[i:i + 4])) for i in range(0, len(honest), 4)],
                  topic=topics.ATTRIBUTIONS, key=b"v")
    # The ledger's own periodic reconciliation finds it too, and says so in its gauges.
    settings = settings.model_copy(update={"attribution_grace_seconds": 0.0, "reconcile_interval_seconds": 0.5})
    started = time.time()
    async with running_ledger(settings) as (_, pool):
        await wait_for_count(settings.database_url or "", len(honest) + 1, timeout_seconds=60)

        async def audits_stored() -> bool:
            return await pool.fetchval("SELECT count(*) FROM attributions") == 3
        await wait_until(audits_stored, timeout_seconds=30, what="three attribution records")

        async def periodic_run_saw_it() -> bool:
            return (REGISTRY.get_sample_value("royalflow_reconciliation_last_run_timestamp_seconds") or 0) > started \
                and REGISTRY.get_sample_value("royalflow_reconciliation_problems") == 1
        await wait_until(periodic_run_saw_it, timeout_seconds=30, what="a periodic reconciliation naming one problem")
        assert REGISTRY.get_sample_value("royalflow_reconciliation_last_success") == 0
        problems = await reconcile(pool, attribution_grace_seconds=0)
    assert len(problems) == 1, problems
    assert problems[0].startswith("generation booked without an attribution record: generation forged: ")
    assert problems[0].endswith(f"contributions: {forged.contribution_id}")


async def test_the_periodic_reconciler_is_off_at_zero_and_runs_the_checks_otherwise(pool: asyncpg.Pool) -> None:
    stop = asyncio.Event()
    await asyncio.wait_for(Reconciler(pool, Settings(reconcile_interval_seconds=0)).run(stop), 1)  # returns at once
    await _apply(pool, generation_parts("p", seed=8))
    reconciler = Reconciler(pool, Settings(reconcile_interval_seconds=0.2, attribution_grace_seconds=0))
    task = asyncio.create_task(reconciler.run(stop))
    await wait_until(lambda: _ran(reconciler), timeout_seconds=10, what="a periodic run")
    stop.set()
    await asyncio.wait_for(task, 5)
    assert REGISTRY.get_sample_value("royalflow_reconciliation_problems") == 1  # p has no attribution record
    assert REGISTRY.get_sample_value("royalflow_reconciliation_last_success") == 0


async def _ran(reconciler: Reconciler) -> bool:
    return reconciler.runs > 0
