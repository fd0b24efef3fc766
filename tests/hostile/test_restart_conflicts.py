"""The cases that span two rounds (a sale or booking in round 1, a conflicting copy, redelivery
or reversal of it in round 2), with the agent and the ledger killed (-9) between the rounds and
restarted by the supervisor: "first payload wins" and the bounded reversal wait must hold across
restarts, nothing valid may be lost, and no input may crash a restarted child. A conflicting
sale the restarted agent no longer recognises must then be caught by the ledger (issue #8: "at
the agent, and also at the ledger if it slips through"): its records are dead-lettered there."""

from __future__ import annotations

import pytest

from tests.hostile.conftest import RESTART_CATEGORIES
from tests.hostile.corpus import cases_by_name
from tests.hostile.harness import Outcome
from tests.hostile.test_corpus import check_case, ledger_backstop_letters

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CASES = {n: c for n, c in cases_by_name().items() if c.category in RESTART_CATEGORIES}


@pytest.mark.parametrize("name", list(CASES))
async def test_case_across_restart(name: str, restart_outcome: Outcome) -> None:
    check_case(restart_outcome, CASES[name], ledger_backstop=True)


async def test_restarted_consumers_settle_everything(restart_outcome: Outcome) -> None:
    out = restart_outcome
    assert out.unsettled == []  # (dead letters caught behind the agent are not at the awaited positions)
    booked = {k: v for k, v in out.balances.items() if k.startswith(("owner:", "unattributed", "platform:"))}
    assert booked == out.expected_balances
    assert out.problems == []
    hostile = set(out.positions.values())
    backstop = {id(x) for c in CASES.values() if c.expect == {"conflicting_duplicate"}
                for x in ledger_backstop_letters(out, c.event_id)}
    stray = [x for x in out.letters if (x.source_topic, x.source_partition, x.source_offset) not in hostile
             and id(x) not in backstop]
    assert stray == []


async def test_only_the_planned_restarts(restart_outcome: Outcome) -> None:
    assert restart_outcome.alive_at_end == {"ledger": True, "attribution": True}
    assert restart_outcome.restarts == restart_outcome.killed == 2
