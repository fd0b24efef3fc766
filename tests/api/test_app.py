"""The balances API on a real PostgreSQL: an auth matrix over every endpoint, pagination,
statements, audit and OpenAPI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import httpx
import pytest

from royalflow.api.app import create_app
from royalflow.api.auth import create_token, revoke_token
from royalflow.config import Settings
from royalflow.ledger.journal import apply_batch
from royalflow.ledger.migrate import migrate
from royalflow.platform.database import create_pool

from tests.ledger.factory import generation_parts

pytestmark = pytest.mark.integration


@pytest.fixture
async def pool(fresh_database: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(fresh_database, max_size=4)
    await migrate(pool)
    parts = [p for g in range(30) for p in generation_parts(f"gen-{g}", seed=g)]
    async with pool.acquire() as conn, conn.transaction():
        await apply_batch(conn, parts, [], {("t", 0): len(parts)}, group_id="g", shard=0)
    yield pool
    await pool.close()


@pytest.fixture
async def client(pool: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(database_url="postgresql://unused"), pool=pool)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
            yield c


@pytest.fixture
async def tokens(pool: asyncpg.Pool) -> dict[str, str | None]:
    _, owner_a = await create_token(pool, role="owner", owner_id="owner-a")
    _, owner_b = await create_token(pool, role="owner", owner_id="owner-b")
    _, admin = await create_token(pool, role="admin")
    revoked_id, revoked = await create_token(pool, role="owner", owner_id="owner-a")
    await revoke_token(pool, revoked_id)
    return {"none": None, "malformed": "Basic abc", "unknown": "rf_not-a-real-token", "revoked": revoked,
            "other_owner": owner_b, "owner": owner_a, "admin": admin}


ENDPOINTS = [
    ("GET", "/v1/owners/owner-a/balances", None),
    ("GET", "/v1/owners/owner-a/contributions", None),
    ("GET", "/v1/owners/owner-a/statements", None),
    ("GET", "/v1/generations/gen-1/audit", None),
    ("POST", "/v1/admin/reconcile", None),
    ("POST", "/v1/admin/periods/close", {"period_end": "2030-01-01T00:00:00+00:00", "currency": "USD"}),
]
# Expected status per (endpoint index, token kind).
EXPECTED = {
    "none": [401] * 6, "malformed": [401] * 6, "unknown": [401] * 6, "revoked": [401] * 6,
    "other_owner": [403, 403, 403, 200, 403, 403],  # owner-b has a part in gen-1: it may audit it
    "owner": [200, 200, 200, 200, 403, 403],
    "admin": [200, 200, 200, 200, 200, 200],
}


@pytest.mark.parametrize("kind", list(EXPECTED))
async def test_auth_matrix(client: httpx.AsyncClient, tokens: dict[str, str | None], kind: str) -> None:
    token = tokens[kind]
    headers = {} if token is None else {"Authorization": token if token.startswith("Basic") else f"Bearer {token}"}
    got = []
    for method, path, body in ENDPOINTS:
        response = await client.request(method, path, headers=headers, json=body)
        got.append(response.status_code)
        if response.status_code == 401:
            assert response.headers["www-authenticate"] == "Bearer"
    assert got == EXPECTED[kind]


async def test_balances_are_exact_and_windows_present(client: httpx.AsyncClient, tokens, pool) -> None:  # type: ignore[no-untyped-def]
    body = (await client.get("/v1/owners/owner-a/balances", headers={"Authorization": f"Bearer {tokens['owner']}"})).json()
    expected = await pool.fetchval("SELECT sum(amount) FROM contributions WHERE owner_id = 'owner-a'")
    usd = body["balances"][0]
    assert usd["lifetime"]["units"] == expected and usd["asset_scale"] == 9
    assert set(usd["windows"]) == {"1h", "24h", "7d", "30d"}
    assert usd["lifetime"]["decimal"].endswith(" USD")


async def test_pagination_walks_every_contribution_once(client: httpx.AsyncClient, tokens) -> None:  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {tokens['owner']}"}
    seen, cursor = [], None
    while True:
        params = {"limit": 7} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/v1/owners/owner-a/contributions", headers=headers, params=params)).json()
        seen.extend(item["contribution_id"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 30


@pytest.mark.parametrize(("params", "code"), [({"limit": 0}, 422), ({"limit": 501}, 422), ({"cursor": "!!bad"}, 400)])
async def test_bad_input_is_a_clear_4xx(client: httpx.AsyncClient, tokens, params, code) -> None:  # type: ignore[no-untyped-def]
    response = await client.get("/v1/owners/owner-a/contributions", params=params,
                                headers={"Authorization": f"Bearer {tokens['owner']}"})
    assert response.status_code == code and response.json()["detail"]


async def test_statements_close_and_reconcile(client: httpx.AsyncClient, tokens) -> None:  # type: ignore[no-untyped-def]
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    owner = {"Authorization": f"Bearer {tokens['owner']}"}
    closed = (await client.post("/v1/admin/periods/close", headers=admin, json={"period_end": datetime(2030, 1, 1, tzinfo=UTC).isoformat()})).json()
    listed = (await client.get("/v1/owners/owner-a/statements", headers=owner)).json()
    assert [p["period_id"] for p in listed] == [closed["period_id"]]
    data = (await client.get(f"/v1/owners/owner-a/statements/{closed['period_id']}", headers=owner)).json()
    assert data["payout"] + data["carried_forward"] == data["credits"]
    csv = await client.get(f"/v1/owners/owner-a/statements/{closed['period_id']}", headers=owner, params={"format": "csv"})
    assert csv.headers["content-type"].startswith("text/csv") and "PAYOUT" in csv.text
    assert (await client.post("/v1/admin/reconcile", headers=admin)).json() == {"ok": True, "problems": []}


async def test_openapi_and_probes(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert spec["openapi"].startswith("3.") and "/v1/owners/{owner_id}/balances" in spec["paths"]
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/readyz")).json()["ready"] is True
    text = (await client.get("/metrics")).text
    assert "royalflow_http_requests_total" in text and "royalflow_db_pool_connections" in text
