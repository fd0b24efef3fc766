"""Fixtures shared by the ledger tests (the broker and PostgreSQL come from tests/conftest.py)."""

from __future__ import annotations

import pytest

from royalflow.ledger.migrate import migrate
from royalflow.platform.database import create_pool


@pytest.fixture
async def pool(fresh_database: str):  # type: ignore[no-untyped-def]
    """A migrated, empty ledger database."""
    pool = await create_pool(fresh_database, max_size=4)
    await migrate(pool)
    yield pool
    await pool.close()
