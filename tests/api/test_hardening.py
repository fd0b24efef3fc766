"""API hardening: the body limit holds for streamed (chunked) bodies, authentication comes
before validation, period ends are bounded to the contract's window and never numbers, and a
period stored as -infinity still answers RFC 3339 date-times."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from royalflow.api.app import MAX_BODY_BYTES

from tests.api.conftest import auth

pytestmark = pytest.mark.integration

CLOSE = "/v1/admin/periods/close"


async def test_a_chunked_body_over_the_limit_is_refused_without_reading_it_all(client: httpx.AsyncClient, tokens) -> None:  # type: ignore[no-untyped-def]
    sent = 0

    async def ten_mebibytes() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'{"period_end": "'
        for _ in range(10 * 1024):  # 10 MiB in 1 KiB chunks, no Content-Length
            sent += 1024
            yield b" " * 1024

    response = await client.post(CLOSE, headers=auth(tokens, "admin"), content=ten_mebibytes())
    assert "content-length" not in response.request.headers  # really streamed
    assert response.status_code == 413
    assert sent < 2 * MAX_BODY_BYTES  # cut off near the limit, not after 10 MiB


async def test_a_chunked_body_under_the_limit_still_works(client: httpx.AsyncClient, tokens) -> None:  # type: ignore[no-untyped-def]
    async def small() -> AsyncIterator[bytes]:
        yield b'{"period_end": '
        yield b'"2025-01-01T00:00:00Z"}'

    headers = {**auth(tokens, "admin"), "Content-Type": "application/json"}
    assert (await client.post(CLOSE, headers=headers, content=small())).status_code == 200


@pytest.mark.parametrize("kind", ["none", "malformed", "unknown", "revoked"])
@pytest.mark.parametrize("body", [b"{not json", b'{"period_end": 0}', b"[]", b'{"period_end": "9999-12-31T23:59:59-05:00"}'])
async def test_authentication_before_validation(client: httpx.AsyncClient, tokens, kind: str, body: bytes) -> None:  # type: ignore[no-untyped-def]
    headers = {**auth(tokens, kind), "Content-Type": "application/json"}
    response = await client.post(CLOSE, headers=headers, content=body)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("body", [b"{not json", b'{"period_end": 0}'])
async def test_an_owner_token_gets_403_not_422_on_admin_routes(client: httpx.AsyncClient, tokens, body: bytes) -> None:  # type: ignore[no-untyped-def]
    headers = {**auth(tokens, "owner"), "Content-Type": "application/json"}
    assert (await client.post(CLOSE, headers=headers, content=body)).status_code == 403


async def test_bad_query_values_need_a_token_first(client: httpx.AsyncClient, tokens) -> None:  # type: ignore[no-untyped-def]
    path = "/v1/owners/owner-a/contributions?limit=100000"
    assert (await client.get(path)).status_code == 401
    assert (await client.get(path, headers=auth(tokens, "owner"))).status_code == 422


@pytest.mark.parametrize("period_end", [
    "9999-12-31T23:59:59-05:00", "9999-12-31T23:59:59+05:00", "0001-01-01T00:00:00+05:00", "0001-01-01T00:00:00-05:00",
    "1999-12-31T23:59:59Z", 0, 1_700_000_000, 1.5, True, None, "", "2025-13-01T00:00:00Z",
    # Outside the documented pattern although Python or PostgreSQL might read them:
    "2100-01-01T00:00:00Z", "2001-02-29T00:00:00Z", "2100-02-29T00:00:00Z", "2025-04-31T00:00:00Z",
    "2025-01-01T00:00:60Z", "2025-01-01T00:00:00.1234567Z", "2025-01-01 00:00:00Z", "2025-01-01t00:00:00z",
    "2025-01-01T00:00:00+24:00", "２０２５-01-01T00:00:00Z",
])
async def test_period_end_is_bounded_text(client: httpx.AsyncClient, tokens, period_end: object) -> None:  # type: ignore[no-untyped-def]
    response = await client.post(CLOSE, headers=auth(tokens, "admin"), json={"period_end": period_end})
    assert response.status_code == 422, (period_end, response.text)


async def test_period_end_window_edges(client: httpx.AsyncClient, tokens) -> None:  # type: ignore[no-untyped-def]
    admin = auth(tokens, "admin")
    assert (await client.post(CLOSE, headers=admin, json={"period_end": "2000-01-01T00:00:00Z"})).status_code == 200
    soon = (datetime.now(UTC) + timedelta(hours=23)).isoformat()
    assert (await client.post(CLOSE, headers=admin, json={"period_end": soon})).status_code == 200
    # Well formed (the schema's pattern) but not over yet: the server's clock decides, a 409.
    later = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    refused = await client.post(CLOSE, headers=admin, json={"period_end": later})
    assert refused.status_code == 409 and "has not ended yet" in refused.json()["detail"], refused.text
    for edge in ("2000-02-29T00:00:00Z", "2000-01-01T00:00:00+23:59", "2024-02-29T23:59:59.999999-23:59"):
        assert (await client.post(CLOSE, headers=admin, json={"period_end": edge})).status_code == 200, edge


async def test_the_period_end_pattern_in_the_document_is_the_one_enforced(client: httpx.AsyncClient) -> None:
    from royalflow.api.models import PERIOD_END_PATTERN

    document = (await client.get("/openapi.json")).json()
    period_end = document["components"]["schemas"]["ClosePeriod"]["properties"]["period_end"]
    assert period_end["pattern"] == PERIOD_END_PATTERN and period_end["format"] == "date-time"


async def test_a_minus_infinity_period_keeps_rfc3339_date_times(client: httpx.AsyncClient, pool: asyncpg.Pool, tokens) -> None:  # type: ignore[no-untyped-def]
    # Stored by an older version (or by hand): the API must still answer its schema.
    await pool.execute("INSERT INTO periods (period_id, currency, period_end) VALUES ('-infinity/USD', 'USD', '-infinity')")
    await pool.execute("INSERT INTO periods (period_id, currency, period_end) VALUES ('infinity/USD', 'USD', 'infinity')")
    response = await client.get("/v1/owners/owner-a/statements", headers=auth(tokens, "owner"))
    assert response.status_code == 200
    for period in response.json():
        end = period["period_end"]
        assert end.endswith("Z") or end[-6] in "+-", end  # RFC 3339 needs an offset
        datetime.fromisoformat(end)


