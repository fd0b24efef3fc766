"""Owner routes: exact balances, gap-free keyset pagination, statements in JSON and CSV, and
clear 4xx answers to bad input."""

from __future__ import annotations

import base64
import csv
import io
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
import httpx
import pytest

from royalflow.ledger.journal import apply_batch
from royalflow.ledger.payouts import close_period

from tests.api.conftest import GENERATIONS, auth
from tests.ledger.factory import generation_parts

pytestmark = pytest.mark.integration


async def test_balances_are_exact_integers_and_decimal_strings(client: httpx.AsyncClient, pool: asyncpg.Pool, tokens) -> None:  # type: ignore[no-untyped-def]
    body = (await client.get("/v1/owners/owner-a/balances", headers=auth(tokens, "owner"))).json()
    expected = await pool.fetchval("SELECT sum(amount) FROM contributions WHERE owner_id = 'owner-a'")
    (usd,) = body["balances"]
    assert usd["currency"] == "USD" and usd["asset_scale"] == 9
    for amount in [usd["lifetime"], usd["available"], *usd["windows"].values()]:
        assert isinstance(amount["units"], int) and amount["currency"] == "USD" and amount["asset_scale"] == 9
        assert Decimal(amount["decimal"]) == Decimal(amount["units"]).scaleb(-9)  # exact, no float on the way
    assert usd["lifetime"]["units"] == usd["available"]["units"] == expected
    assert list(usd["windows"]) == ["1h", "24h", "7d", "30d"]
    assert usd["windows"]["30d"]["units"] <= usd["lifetime"]["units"]


async def _walk(client: httpx.AsyncClient, headers: dict[str, str], limit: int, on_page=None) -> list[str]:  # type: ignore[no-untyped-def]
    seen: list[str] = []
    cursor = None
    for _ in range(1000):  # a bound on the walk, far above the pages needed
        params = {"limit": limit} | ({"cursor": cursor} if cursor else {})
        response = await client.get("/v1/owners/owner-a/contributions", headers=headers, params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= limit
        seen.extend(item["contribution_id"] for item in page["items"])
        if on_page is not None:
            await on_page()
        cursor = page["next_cursor"]
        if cursor is None:
            return seen
    raise AssertionError("pagination did not end")


async def test_pagination_walks_every_contribution_once_in_order(client: httpx.AsyncClient, pool: asyncpg.Pool, tokens) -> None:  # type: ignore[no-untyped-def]
    in_order = [r["contribution_id"] for r in await pool.fetch(
        "SELECT contribution_id FROM contributions WHERE owner_id = 'owner-a' ORDER BY ingest_seq")]
    assert len(in_order) == GENERATIONS
    for limit in (1, 7, 30, 31, 500):  # one row per page, ragged last page, exact fit, one page
        assert await _walk(client, auth(tokens, "owner"), limit) == in_order, limit


async def test_pagination_has_no_gaps_or_duplicates_while_contributions_arrive(client: httpx.AsyncClient, pool: asyncpg.Pool, tokens) -> None:  # type: ignore[no-untyped-def]
    arrived = iter(range(100, 105))

    async def settle_one_more() -> None:
        g = next(arrived, None)
        if g is not None:
            parts = generation_parts(f"gen-{g}", seed=g)
            async with pool.acquire() as conn, conn.transaction():
                await apply_batch(conn, parts, [], {("t", 0): 1000 + g}, group_id="g", shard=0)

    seen = await _walk(client, auth(tokens, "owner"), 4, settle_one_more)
    assert len(seen) == len(set(seen)) == GENERATIONS + 5


BAD_INPUT = [
    ("/v1/owners/owner-a/contributions", {"limit": 0}, 422),
    ("/v1/owners/owner-a/contributions", {"limit": 501}, 422),
    ("/v1/owners/owner-a/contributions", {"limit": "ten"}, 422),
    # A cursor's shape is in the document (queries.CURSOR_PATTERN): anything else is a 422.
    ("/v1/owners/owner-a/contributions", {"cursor": "!!bad"}, 422),
    ("/v1/owners/owner-a/contributions", {"cursor": base64.urlsafe_b64encode(b"99999999999999999999999").decode()}, 422),
    ("/v1/owners/owner-a/contributions", {"cursor": "gAAAAAAAAAA"}, 422),  # top bit set: beyond a signed bigint
    ("/v1/owners/owner-a/contributions", {"cursor": "AAAAAAAAAAB"}, 422),  # nonzero padding bits: two spellings of one cursor
    ("/v1/owners/owner-a/contributions", {"cursor": "x" * 65}, 422),
    ("/v1/owners/owner%20a/balances", {}, 422),
    ("/v1/owners/owner-a/statements/2030-01-01T00:00:00+00:00/USD", {"format": "xml"}, 422),
    ("/v1/owners/owner-a/statements/not a period", {}, 422),
    ("/v1/owners/owner-a/statements/2031-01-01T00:00:00+00:00/USD", {}, 404),
]


async def test_bad_input_is_a_clear_4xx(client: httpx.AsyncClient, pool: asyncpg.Pool, tokens) -> None:  # type: ignore[no-untyped-def]
    await close_period(pool, datetime(2030, 1, 1, tzinfo=UTC))
    for path, params, code in BAD_INPUT:
        response = await client.get(path, params=params, headers=auth(tokens, "admin"))
        assert response.status_code == code, (path, params, response.text)
        detail = response.json()["detail"]
        # 422: FastAPI's list of {loc, msg, type}, naming the parameter and what is wrong with it.
        assert detail if code != 422 else all(error["msg"] and error["loc"] for error in detail), (path, params)


async def test_statements_in_json_and_csv(client: httpx.AsyncClient, pool: asyncpg.Pool, tokens) -> None:  # type: ignore[no-untyped-def]
    closed = await close_period(pool, datetime(2030, 1, 1, tzinfo=UTC))
    headers = auth(tokens, "owner")
    listed = (await client.get("/v1/owners/owner-a/statements", headers=headers)).json()
    assert [p["period_id"] for p in listed] == [closed["period_id"]]
    data = (await client.get(listed[0]["href"], headers=headers)).json()
    assert data["owner_id"] == "owner-a" and len(data["lines"]) == GENERATIONS
    assert data["credits"]["units"] == sum(line["amount"]["units"] for line in data["lines"])
    assert data["payout"]["units"] + data["carried_forward"]["units"] == data["credits"]["units"]
    assert data["payout"]["units"] % 10**7 == 0  # whole cents at asset scale 9
    response = await client.get(listed[0]["href"], headers=headers, params={"format": "csv"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0][0] == "owner_id" and len(rows) == 1 + GENERATIONS + 3
    totals = {row[2]: int(row[6]) for row in rows[-3:]}
    assert totals == {"TOTAL": data["credits"]["units"], "PAYOUT": data["payout"]["units"],
                      "CARRIED_FORWARD": data["carried_forward"]["units"]}


@pytest.mark.parametrize("cursor", ["AAAAAAAAAAA", "f_________8", "Zzzzzzzzzzw"])
async def test_every_cursor_of_the_documented_shape_is_accepted(client: httpx.AsyncClient, tokens, cursor: str) -> None:  # type: ignore[no-untyped-def]
    # The OpenAPI document promises that any cursor matching its pattern is read: from 0 (the
    # whole list) to 2^63 - 1 (beyond the last contribution: an empty last page).
    response = await client.get("/v1/owners/owner-a/contributions", params={"cursor": cursor, "limit": 500}, headers=auth(tokens, "owner"))
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["next_cursor"] is None
    assert (len(page["items"]) > 0) == (cursor == "AAAAAAAAAAA")
