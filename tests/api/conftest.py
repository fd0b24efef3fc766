"""Fixtures of the API tests: a migrated database with 30 settled generations among owners
a-d, one generation among c-d only, an audit record for gen-1, tokens of every kind, and an
httpx client on the ASGI app (no server, no mocks: real PostgreSQL behind it)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from royalflow.api.app import create_app
from royalflow.api.auth import create_token, revoke_token
from royalflow.config import Settings
from royalflow.contracts import AttributionRecord
from royalflow.contracts.events import Conditioning, Content
from royalflow.ledger.journal import apply_batch
from royalflow.ledger.migrate import migrate
from royalflow.platform.database import create_pool

from tests.ledger.factory import OWNERS, generation_parts

GENERATIONS = 30  # among owner-a..d; plus "gen-cd" among owner-c and owner-d only
WELL_FORMED_UNKNOWN = "rf_" + "A" * 43


def attribution(parts) -> AttributionRecord:  # type: ignore[no-untyped-def]
    first = parts[0]
    return AttributionRecord(
        generation_id=first.generation_id, occurred_at=first.occurred_at, family_id=first.family_id,
        family_version=first.family_version, method="exact", mode="compositional", owners=list(OWNERS),
        shapley_values=[p.shapley_value for p in parts], std_errors=[0.01] * len(parts),
        coalition_utilities={"0": -3.2, "f": -2.1, "component:owner-a": -2.9, "component:_base": -3.3},
        utility_std_errors={"0": 0.0, "f": 0.0}, seed=7,
        revenue_amount=first.revenue_amount, pool_amount=first.pool_amount, currency="USD", asset_scale=9,
        content_sha256="0" * 64, model_evaluations=16, conditioning=Conditioning(prompt="a secret prompt"),
        content=Content(media_type="application/x-npy", sha256="0" * 64, uri="s3://bucket/x.npy"),
    )


async def seed_ledger(pool: asyncpg.Pool) -> None:
    """Migrate, then settle the fixture's generations (also used by the portal's live tests)."""
    await migrate(pool)
    parts = [p for g in range(GENERATIONS) for p in generation_parts(f"gen-{g}", seed=g)]
    parts += generation_parts("gen-cd", seed=99, owners=("owner-c", "owner-d"))
    audits = [attribution([p for p in parts if p.generation_id == "gen-1"])]
    async with pool.acquire() as conn, conn.transaction():
        await apply_batch(conn, parts, audits, {("t", 0): len(parts)}, group_id="g", shard=0)


@pytest.fixture
async def pool(fresh_database: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(fresh_database, max_size=4)
    await seed_ledger(pool)
    yield pool
    await pool.close()


@pytest.fixture
async def client(pool: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(database_url="postgresql://unused"), pool=pool)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as c:
            yield c


@pytest.fixture
async def tokens(pool: asyncpg.Pool) -> dict[str, str | None]:
    """Authorization header values by kind (None = no header)."""
    _, owner_a = await create_token(pool, role="owner", owner_id="owner-a")
    _, owner_b = await create_token(pool, role="owner", owner_id="owner-b")
    _, admin = await create_token(pool, role="admin", label="ops")
    revoked_id, revoked = await create_token(pool, role="owner", owner_id="owner-a")
    await revoke_token(pool, revoked_id)
    return {
        "none": None, "basic": "Basic b3duZXI6cHc=", "malformed": "Bearer not-a-token",
        "unknown": f"Bearer {WELL_FORMED_UNKNOWN}", "revoked": f"Bearer {revoked}",
        "other_owner": f"Bearer {owner_b}", "owner": f"Bearer {owner_a}", "admin": f"Bearer {admin}",
    }


def auth(tokens: dict[str, str | None], kind: str) -> dict[str, str]:
    value = tokens[kind]
    return {} if value is None else {"Authorization": value}
