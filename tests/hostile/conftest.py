"""The hostile-input suite's harness: the whole corpus runs ONCE per session against the real
broker, PostgreSQL, attribution agent and ledger (see ``run.py``); every test reads the outcome.
A second, smaller run repeats the cases that span both rounds with both consumers killed (-9)
between the rounds."""

from __future__ import annotations

import pytest

from royalflow.platform.broker import EmbeddedBroker
from royalflow.platform.database import EmbeddedPostgres

from tests.hostile.corpus import cases_by_name
from tests.hostile.harness import Outcome
from tests.hostile.run import run_corpus


@pytest.fixture(scope="session")
async def hostile_outcome(broker: EmbeddedBroker, postgres: EmbeddedPostgres,
                          tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    root = tmp_path_factory.mktemp("hostile")
    return await run_corpus(broker.bootstrap_servers, postgres.dsn, root, cases_by_name())


# The cases whose second round depends on what the first booked or claimed, and their controls.
RESTART_CATEGORIES = ("conflicting_sale", "forged_reversal")


@pytest.fixture(scope="session")
async def restart_outcome(broker: EmbeddedBroker, postgres: EmbeddedPostgres,
                          tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    root = tmp_path_factory.mktemp("hostile-restart")
    cases = {n: c for n, c in cases_by_name().items() if c.category in RESTART_CATEGORIES}
    return await run_corpus(broker.bootstrap_servers, postgres.dsn, root, cases, kill_between_rounds=True)
