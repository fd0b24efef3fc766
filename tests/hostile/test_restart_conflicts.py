"""The cases that span two rounds (a sale or booking in round 1, a conflicting copy, redelivery
or reversal of it in round 2), with the agent and the ledger killed (-9) between the rounds and
restarted by the supervisor: "first payload wins" and the bounded reversal wait must hold across
restarts (the restarted agent still knows every claim of round 1, so a conflicting sale is
dead-lettered at the agent, at its own position), nothing valid may be lost, and no input may
crash a restarted child."""

from __future__ import annotations

import pytest

from tests.hostile.conftest import RESTART_CATEGORIES
from tests.hostile.corpus import cases_by_name
from tests.hostile.harness import Outcome
from tests.hostile.test_corpus import check_case

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CASES = {n: c for n, c in cases_by_name().items() if c.category in RESTART_CATEGORIES}


@pytest.mark.parametrize("name", list(CASES))
async def test_case_across_restart(name: str, restart_outcome: Outcome) -> None:
    check_case(restart_outcome, CASES[name])


async def test_restarted_consumers_settle_everything(restart_outcome: Outcome) -> None:
    out = restart_outcome
    assert out.timed_out == []
    booked = {k: v for k, v in out.balances.items() if k.startswith(("owner:", "unattributed", "platform:"))}
    assert booked == out.expected_balances
    assert out.problems == []
    hostile = set(out.positions.values())
    assert [x for x in out.letters if (x.source_topic, x.source_partition, x.source_offset) not in hostile] == []


async def test_only_the_planned_restarts(restart_outcome: Outcome) -> None:
    assert restart_outcome.alive_at_end == {"ledger": True, "attribution": True}
    assert restart_outcome.restarts == restart_outcome.killed == 2
