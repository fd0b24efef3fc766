"""Numbered SQL migrations (``migrations/NNNN_name.sql``), each followed by its check
(``NNNN_name.check.sql``: a DO block that raises if the data is wrong after the step).

Applied in order, once, each in its own transaction together with its check and its row in
``schema_migrations``; an advisory lock makes concurrent starts of several services safe.
"""

from __future__ import annotations

from pathlib import Path

import asyncpg

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
LOCK_KEY = 0x526F79616C  # arbitrary, fixed: "Royal"


def migration_files() -> list[Path]:
    return sorted(p for p in MIGRATIONS_DIR.glob("[0-9][0-9][0-9][0-9]_*.sql") if not p.name.endswith(".check.sql"))


async def migrate(pool: asyncpg.Pool) -> list[str]:
    """Apply pending migrations; returns the versions applied now."""
    applied_now: list[str] = []
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            for path in migration_files():
                version = path.stem
                if version in done:
                    continue
                check = path.with_name(f"{version}.check.sql")
                async with conn.transaction():
                    await conn.execute(path.read_text())
                    if check.exists():
                        await conn.execute(check.read_text())
                    await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
                applied_now.append(version)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
    return applied_now


async def with_migrated_pool(fn, *, max_size: int = 2):  # type: ignore[no-untyped-def]
    """Run ``await fn(pool)`` on a short-lived, migrated pool (the CLI commands' pattern)."""
    from royalflow.platform.database import create_pool
    from royalflow.platform.runtime import cli_settings

    pool = await create_pool(cli_settings().database_url or "", max_size=max_size)
    try:
        await migrate(pool)
        return await fn(pool)
    finally:
        await pool.close()
