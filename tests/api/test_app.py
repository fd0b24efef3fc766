"""The app: a valid OpenAPI document describing every route, probes, and HTTP metrics labelled
by route template (never a raw path holding ids)."""

from __future__ import annotations

import asyncpg
import httpx
import pytest
from openapi_spec_validator import validate

from royalflow.api.app import create_app
from royalflow.config import Settings
from royalflow.platform.database import create_pool

from tests.api.conftest import auth

pytestmark = pytest.mark.integration


async def test_openapi_document_is_valid_and_complete(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    validate(spec)
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    operations = {(method, path): op for path, item in spec["paths"].items() for method, op in item.items()}
    assert {path for _, path in operations} >= {
        "/v1/owners/{owner_id}/balances", "/v1/owners/{owner_id}/contributions", "/v1/owners/{owner_id}/statements",
        "/v1/owners/{owner_id}/statements/{period_id}", "/v1/generations/{generation_id}/audit",
        "/v1/admin/periods/close", "/v1/admin/reconcile", "/healthz", "/readyz", "/metrics",
    }
    for (method, path), op in operations.items():
        assert op["summary"] and op["description"], (method, path)
        assert op["responses"]["200"]["content"], (method, path)
        if path.startswith("/v1/"):
            assert {"401", "403"} <= set(op["responses"]) and op["security"] == [{"HTTPBearer": []}], (method, path)
    assert (await client.get("/docs")).status_code == 200


async def test_probes(client: httpx.AsyncClient, fresh_database: str) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok", "checks": {}, "failing": [], "details": {}}
    assert (await client.get("/readyz")).json() == {"ready": True, "checks": {"database": True}, "failing": [], "details": {}}
    closed: asyncpg.Pool = await create_pool(fresh_database, max_size=1)
    await closed.close()
    down = create_app(Settings(database_url="postgresql://unused"), pool=closed)
    down.state.pool = closed  # no lifespan: migrations cannot run on a closed pool
    transport = httpx.ASGITransport(app=down, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
        response = await c.get("/readyz")
        assert response.status_code == 503 and response.json()["checks"] == {"database": False}
        assert response.json()["failing"] == ["database"] and response.json()["details"]["database"]
        # A route failing on the dead pool is a 500, and counted as one by its template.
        failing = await c.get("/v1/owners/owner-a/balances", headers={"Authorization": "Bearer rf_" + "B" * 43})
        assert failing.status_code == 500
    text = (await client.get("/metrics")).text
    assert 'route="/v1/owners/{owner_id}/balances",status="500"' in text


async def test_http_metrics_use_route_templates(client: httpx.AsyncClient, tokens) -> None:  # type: ignore[no-untyped-def]
    await client.get("/v1/owners/owner-a/balances", headers=auth(tokens, "owner"))
    await client.get("/v1/owners/owner-b/balances", headers=auth(tokens, "owner"))
    await client.get("/no/such/path/owner-a")
    text = (await client.get("/metrics")).text
    http_lines = [line for line in text.splitlines() if line.startswith("royalflow_http_")]
    assert any('route="/v1/owners/{owner_id}/balances",status="200"' in line for line in http_lines)
    assert any('route="/v1/owners/{owner_id}/balances",status="403"' in line for line in http_lines)
    assert any('route="unmatched",status="404"' in line for line in http_lines)
    assert not any("owner-a" in line or "owner-b" in line for line in http_lines)
    assert "royalflow_db_pool_connections" in text


async def test_app_opens_its_own_pool_and_migrates(fresh_database: str) -> None:
    app = create_app(Settings(database_url=fresh_database, db_pool_max_size=2))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as c:
            assert (await c.get("/readyz")).status_code == 200
            assert (await c.get("/v1/owners/owner-a/balances")).status_code == 401
        assert await app.state.pool.fetchval("SELECT count(*) FROM api_tokens") == 0  # 0050/0051 applied
    assert app.state.pool.is_closing()


async def test_oversized_bodies_are_refused(client: httpx.AsyncClient, tokens) -> None:  # type: ignore[no-untyped-def]
    response = await client.post("/v1/admin/periods/close", headers=auth(tokens, "admin"), content=b"{" + b" " * 70_000 + b"}")
    assert response.status_code == 413
