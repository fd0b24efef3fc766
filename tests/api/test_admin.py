"""Admin routes: closing periods (exact payouts, 409 on a second close, clear 4xx) and
reconciliation (200 with ok=false naming the records when the books disagree)."""

from __future__ import annotations

import asyncpg
import httpx
import pytest

from tests.api.conftest import auth

pytestmark = pytest.mark.integration


async def test_close_pays_whole_cents_and_refuses_a_second_close(client: httpx.AsyncClient, pool: asyncpg.Pool, tokens) -> None:  # type: ignore[no-untyped-def]
    body = {"period_end": "2025-01-01T00:00:00Z"}
    first = await client.post("/v1/admin/periods/close", headers=auth(tokens, "admin"), json=body)
    assert first.status_code == 200, first.text
    closed = first.json()
    credits = await pool.fetchval("SELECT sum(amount) FROM contributions WHERE owner_id LIKE 'owner-%'")
    assert closed["owners"] == 4 and closed["paid"]["units"] % 10**7 == 0
    assert closed["paid"]["units"] + closed["carried_forward"]["units"] == credits
    again = await client.post("/v1/admin/periods/close", headers=auth(tokens, "admin"), json=body)
    assert again.status_code == 409 and "already closed" in again.json()["detail"]


BAD_BODIES = [
    ({"period_end": "2025-01-01T00:00:00"}, 422),  # no timezone
    ({"period_end": "next tuesday"}, 422),
    ({}, 422),
    ({"period_end": "2025-01-01T00:00:00Z", "currency": "usd"}, 422),
    ({"period_end": "2025-01-01T00:00:00Z", "currency": "XYZ"}, 422),  # well-formed, not supported: the schema's enum
]


async def test_close_rejects_bad_bodies(client: httpx.AsyncClient, tokens) -> None:  # type: ignore[no-untyped-def]
    for body, code in BAD_BODIES:
        response = await client.post("/v1/admin/periods/close", headers=auth(tokens, "admin"), json=body)
        assert response.status_code == code, (body, response.text)
        assert response.json()["detail"]


async def test_reconcile_reports_problems_with_200_and_ok_false(client: httpx.AsyncClient, pool: asyncpg.Pool, tokens) -> None:  # type: ignore[no-untyped-def]
    healthy = await client.post("/v1/admin/reconcile", headers=auth(tokens, "admin"))
    assert healthy.json() == {"ok": True, "problems": []}
    # Corrupt the books behind the ledger's back: a balance that no posting explains.
    await pool.execute("UPDATE balances SET amount = amount + 1 WHERE (account_id, currency, shard) IN "
                       "(SELECT account_id, currency, shard FROM balances LIMIT 1)")
    broken = await client.post("/v1/admin/reconcile", headers=auth(tokens, "admin"))
    assert broken.status_code == 200 and broken.json()["ok"] is False and broken.json()["problems"]
