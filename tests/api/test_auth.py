"""Auth: every endpoint x every kind of credential gets exactly the right 200/401/403, and
tokens are stored only as hashes."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import httpx
import pytest

from royalflow.api.auth import create_token, resolve_token_id, revoke_token, token_hash
from royalflow.ledger.payouts import close_period

from tests.api.conftest import auth

pytestmark = pytest.mark.integration

PERIOD = "2030-01-01T00:00:00+00:00/USD"
ENDPOINTS = [
    ("GET", "/v1/owners/owner-a/balances", None),
    ("GET", "/v1/owners/owner-a/contributions", None),
    ("GET", "/v1/owners/owner-a/statements", None),
    ("GET", f"/v1/owners/owner-a/statements/{PERIOD}", None),
    ("GET", "/v1/generations/gen-1/audit", None),  # owners a-d all have a part
    ("GET", "/v1/generations/gen-cd/audit", None),  # only owner-c and owner-d have a part
    ("POST", "/v1/admin/reconcile", None),
    ("POST", "/v1/admin/periods/close", {"period_end": "2025-06-01T00:00:00Z", "currency": "USD"}),
]
DENIED = [401] * len(ENDPOINTS)
EXPECTED = {
    "none": DENIED, "basic": DENIED, "malformed": DENIED, "unknown": DENIED, "revoked": DENIED,
    "other_owner": [403, 403, 403, 403, 200, 403, 403, 403],  # owner-b may audit gen-1: it has a part
    "owner": [200, 200, 200, 200, 200, 403, 403, 403],
    "admin": [200] * len(ENDPOINTS),
}


@pytest.mark.parametrize("kind", list(EXPECTED))
async def test_auth_matrix(client: httpx.AsyncClient, pool: asyncpg.Pool, tokens: dict[str, str | None], kind: str) -> None:
    await close_period(pool, datetime(2030, 1, 1, tzinfo=UTC))
    got = []
    for method, path, body in ENDPOINTS:
        response = await client.request(method, path, headers=auth(tokens, kind), json=body)
        got.append(response.status_code)
        if response.status_code == 401:
            assert response.headers["www-authenticate"] == "Bearer"
        if response.status_code in (401, 403):
            assert isinstance(response.json()["detail"], str) and response.json()["detail"]
    assert got == EXPECTED[kind]


@pytest.mark.parametrize(("kind", "path", "code"), [
    ("owner", "/v1/owners/owner-z/balances", 403),  # no such owner: still not yours
    ("admin", "/v1/owners/owner-z/balances", 200),  # admin reads anything; no earnings -> empty
    ("owner", "/v1/generations/gen-missing/audit", 403),  # owners cannot probe which ids exist
    ("admin", "/v1/generations/gen-missing/audit", 404),
])
async def test_unknown_resources(client: httpx.AsyncClient, tokens: dict[str, str | None], kind: str, path: str, code: int) -> None:
    assert (await client.get(path, headers=auth(tokens, kind))).status_code == code


async def test_tokens_are_stored_hashed_and_revocable_by_prefix(client: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    token_id, token = await create_token(pool, role="owner", owner_id="owner-a", label="laptop")
    row = await pool.fetchrow("SELECT * FROM api_tokens WHERE token_id = $1", token_id)
    assert row["token_hash"] == token_hash(token) and all(token not in str(v) for v in dict(row).values())
    headers = {"Authorization": f"Bearer {token}"}
    assert (await client.get("/v1/owners/owner-a/balances", headers=headers)).status_code == 200
    assert await resolve_token_id(pool, token[:11]) == token_id
    assert await revoke_token(pool, await resolve_token_id(pool, token[:11]))
    assert not await revoke_token(pool, token_id)  # already revoked
    assert (await client.get("/v1/owners/owner-a/balances", headers=headers)).status_code == 401


async def test_revoke_refuses_short_or_unknown_prefixes(pool: asyncpg.Pool) -> None:
    for bad in ("rf_", "abc", "rf_zzzzzzzzzzzz"):
        with pytest.raises(ValueError):
            await resolve_token_id(pool, bad)
    assert await resolve_token_id(pool, "42") == 42


async def test_owner_tokens_need_an_owner_and_admin_tokens_none(pool: asyncpg.Pool) -> None:
    for role, owner in (("owner", None), ("admin", "owner-a"), ("root", None)):
        with pytest.raises(ValueError):
            await create_token(pool, role=role, owner_id=owner)
