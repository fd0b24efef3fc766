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


# -- running on several workers (pytest-xdist, ``-n 2 --dist loadgroup``: see dev.py) -------
# Each worker starts its own broker and PostgreSQL. A costly module- or session-scoped fixture
# (a trained family, the hostile corpus's one run) must be built by ONE worker, so every test
# that uses one is grouped by it; the costliest groups go first so that they do not end the run.
SHARED = {"state_dir", "broker", "postgres", "event_loop_policy", "tmp_path_factory", "worker_id",
          "testrun_uid", "monkeypatch", "_session_event_loop"}
FIRST = ("families", "tiny_lora", "hostile_outcome", "restart_outcome")  # longest setups, longest first


def _group(item: pytest.Item) -> str | None:
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return None
    for name in [*FIRST, *info.names_closure]:
        if name in SHARED or name not in info.name2fixturedefs:
            continue
        scope = info.name2fixturedefs[name][-1].scope
        if scope == "session":
            return name
        if scope in ("module", "package"):
            return f"{item.nodeid.split('::')[0]}:{name}"
    return None


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the marks into node ids
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.pluginmanager.hasplugin("xdist"):
        return
    rank = {}
    for item in items:
        group = _group(item)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))
        rank[item.nodeid] = FIRST.index(group) if group in FIRST else len(FIRST)
    items.sort(key=lambda item: rank[item.nodeid])  # stable: collection order within a rank
