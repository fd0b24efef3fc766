"""Session fixtures: one real embedded broker and one real PostgreSQL for the whole run.

No mocks: tests talk Kafka protocol to the Tansu broker and SQL to PostgreSQL 18.
``fresh_database`` gives each test that needs it its own empty database.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from royalflow.config import Settings
from royalflow.platform.broker import EmbeddedBroker
from royalflow.platform.database import EmbeddedPostgres, create_database


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("royalflow-state")


@pytest.fixture(scope="session")
def broker(state_dir: Path) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(state_dir / "broker") as running:
        yield running


@pytest.fixture(scope="session")
def postgres(state_dir: Path) -> Iterator[EmbeddedPostgres]:
    with EmbeddedPostgres(state_dir / "postgres") as running:
        yield running


@pytest.fixture
async def fresh_database(postgres: EmbeddedPostgres) -> AsyncIterator[str]:
    """DSN of a new, empty database on the session's PostgreSQL."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield await create_database(postgres.dsn, name)


@pytest.fixture
def settings(broker: EmbeddedBroker, fresh_database: str, tmp_path: Path) -> Settings:
    """Settings on the real embedded servers, with a unique topic prefix per test so tests
    sharing the broker never see each other's records."""
    return Settings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        database_url=fresh_database,
        state_dir=tmp_path / "state",
        families_dir=tmp_path / "families",
        topic_prefix=f"t{uuid.uuid4().hex[:10]}",
        topic_partitions=4,
    )


def pytest_report_header(config: pytest.Config) -> str:
    return f"royalflow tests; CI={os.environ.get('CI', '')!r}"


# -- running on several workers (pytest-xdist: ``-n 2``, see dev.py) --------------------------
# Each worker starts its own broker and PostgreSQL. Tests are sent to workers a MODULE at a time
# (module-scoped fixtures are built once), and modules that share a costly session fixture form
# one unit (SHARED_UNITS), so the fixture is built by one worker only. The costliest units go
# first (FIRST), so that they do not end the run. (xdist's own ``loadgroup`` marks do not reach
# the scheduler under pytest 9, which reads node ids from another attribute.)
SHARED_UNITS = {  # module -> unit: modules that use one costly session fixture
    "tests/training/test_lora_end_to_end.py": "tiny_lora",
    "tests/training/test_lora_family.py": "tiny_lora",
}
FIRST = ("tests/training/test_quality.py", "tiny_lora", "tests/hostile/test_corpus.py",
         "tests/hostile/test_restart_conflicts.py", "tests/training/test_photo_quality.py")  # longest setups, longest first


def work_unit(nodeid: str) -> str:
    module = nodeid.split("::", 1)[0]
    return SHARED_UNITS.get(module, module)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    from xdist.scheduler import LoadScopeScheduling

    class UnitScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    config.option.loadscopereorder = False  # keep FIRST's order (see pytest_collection_modifyitems)
    return UnitScheduling(config, log)  # type: ignore[arg-type]


# A session fixture is built inside the first test that asks for it, and pytest-timeout counts
# that setup: such tests get the fixture's training time on top of their own (seconds).
COSTLY_FIXTURE_TIMEOUTS = {"tiny_lora": 1800, "photo_figures": 1800}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {unit: i for i, unit in enumerate(FIRST)}
    items.sort(key=lambda item: rank.get(work_unit(item.nodeid), len(FIRST)))  # stable otherwise
    for item in items:
        seconds = max((COSTLY_FIXTURE_TIMEOUTS.get(f, 0) for f in getattr(item, "fixturenames", ())), default=0)
        if seconds:
            item.add_marker(pytest.mark.timeout(seconds))
