"""The audit record: full for admins; for an owner with a part, co-owners pseudonymised and the
generation's content withheld."""

from __future__ import annotations

import httpx
import pytest

from tests.api.conftest import auth

pytestmark = pytest.mark.integration


async def test_admin_sees_the_full_record(client: httpx.AsyncClient, tokens) -> None:  # type: ignore[no-untyped-def]
    body = (await client.get("/v1/generations/gen-1/audit", headers=auth(tokens, "admin"))).json()
    assert body["redacted"] is False and body["complete"] is True and body["inconsistent"] is None
    assert [p["owner_id"] for p in body["parts"]] == ["owner-a", "owner-b", "owner-c", "owner-d"]
    assert sum(p["amount"]["units"] for p in body["parts"]) == body["pool"]["units"]
    assert body["revenue"]["units"] - body["pool"]["units"] == body["platform"]["units"]
    for part in body["parts"]:
        assert {"shapley_value", "std_error", "share", "method", "family_version"} <= set(part)
    record = body["attribution"]
    assert record["coalition_utilities"]["component:owner-a"] == -2.9
    assert record["conditioning"]["prompt"] == "a secret prompt" and "content" in record


async def test_owner_sees_the_arithmetic_but_not_who_or_what(client: httpx.AsyncClient, tokens) -> None:  # type: ignore[no-untyped-def]
    response = await client.get("/v1/generations/gen-1/audit", headers=auth(tokens, "other_owner"))
    body = response.json()
    assert body["redacted"] is True
    assert sorted(p["owner_id"] for p in body["parts"]) == ["owner#1", "owner#3", "owner#4", "owner-b"]
    assert sum(p["amount"]["units"] for p in body["parts"]) == body["pool"]["units"]
    record = body["attribution"]
    assert record["owners"] == ["owner#1", "owner-b", "owner#3", "owner#4"]
    assert record["coalition_utilities"] == {"0": -3.2, "f": -2.1, "component:owner#1": -2.9, "component:_base": -3.3}
    assert "content" not in record and "conditioning" not in record and record["content_sha256"] == "0" * 64
    for hidden in ("owner-a", "owner-c", "owner-d", "secret prompt", "s3://"):
        assert hidden not in response.text


async def test_generation_without_audit_record(client: httpx.AsyncClient, tokens) -> None:  # type: ignore[no-untyped-def]
    body = (await client.get("/v1/generations/gen-cd/audit", headers=auth(tokens, "admin"))).json()
    assert body["attribution"] is None and len(body["parts"]) == 2
