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
