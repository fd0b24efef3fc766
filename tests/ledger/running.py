"""The ledger service in-process for a test, and small readers of what it wrote."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from royalflow.config import Settings
from royalflow.ledger import queries
from royalflow.ledger.migrate import migrate
from royalflow.ledger.service import LedgerService
from royalflow.platform.database import create_pool

STOP_TIMEOUT_SECONDS = 30


@asynccontextmanager
async def running_ledger(settings: Settings) -> AsyncIterator[tuple[LedgerService, asyncpg.Pool]]:
    """A started LedgerService and a pool on its database; both stopped on exit."""
    pool = await create_pool(settings.database_url or "", max_size=2)
    await migrate(pool)  # the schema first, so a test may read any table at once
    stop = asyncio.Event()
    service = LedgerService(settings)
    task = asyncio.create_task(service.run(stop))
    try:
        yield service, pool
    finally:
        await pool.close()
        stop.set()
        await asyncio.wait_for(task, STOP_TIMEOUT_SECONDS)


async def owner_balances(pool: asyncpg.Pool) -> dict[str, int]:
    """Non-zero lifetime balances by account id (owner:<id> or unattributed)."""
    return {("owner:" + r["owner_id"]) if r["owner_id"] != "_unattributed" else "unattributed": r["lifetime"]
            for r in await queries.all_balances(pool) if r["lifetime"]}


async def wait_until(check, *, timeout_seconds: float, what: str) -> None:  # type: ignore[no-untyped-def]
    """Poll the async ``check()`` until it is true (bounded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_seconds
    while not await check():
        if loop.time() > deadline:
            raise TimeoutError(f"{what}: not true after {timeout_seconds} s")
        await asyncio.sleep(0.1)
