"""The one probe implementation: named checks with reasons, liveness apart from readiness,
bounded names and counts, and the same JSON from every service."""

from __future__ import annotations

import pytest

from royalflow.observability.probes import MAX_CHECKS, MAX_DETAIL_CHARS, CheckResult, Probes


async def test_a_named_check_can_say_why_it_fails() -> None:
    async def offsets() -> CheckResult:
        return CheckResult(False, "stored offset 42 beyond log end 0 on contributions.v1[3]")

    async def database() -> bool:
        return True

    probes = Probes({"database": database})
    assert await probes.readyz() == (200, {"ready": True, "checks": {"database": True}, "failing": [], "details": {}})
    probes.add_check("offsets", offsets)  # the ledger adds its own named checks
    status, body = await probes.readyz()
    assert status == 503 and body["failing"] == ["offsets"] and body["checks"] == {"database": True, "offsets": False}
    assert body["details"] == {"offsets": "stored offset 42 beyond log end 0 on contributions.v1[3]"}


async def test_liveness_runs_only_liveness_checks() -> None:
    async def down() -> bool:
        return False

    async def wedged() -> bool:
        raise RuntimeError("event loop lag 30 s")

    probes = Probes({"database": down})
    assert await probes.healthz() == (200, {"status": "ok", "checks": {}, "failing": [], "details": {}})
    probes.add_liveness("loop", wedged)
    status, body = await probes.healthz()
    assert status == 503 and body == {"status": "failing", "checks": {"loop": False}, "failing": ["loop"],
                                      "details": {"loop": "RuntimeError: event loop lag 30 s"}}


async def test_names_counts_and_details_are_bounded() -> None:
    async def passes() -> bool:
        return True

    async def long_reason() -> CheckResult:
        return CheckResult(False, "x" * 10_000)

    probes = Probes()
    for bad in ("", "Database", "owner-a", "a" * 41, "db{x}"):
        with pytest.raises(ValueError, match="must match"):
            probes.add_check(bad, passes)
    for i in range(MAX_CHECKS):
        probes.add_check(f"c{i}", passes)
    probes.add_check("c0", passes)  # replacing one is fine
    with pytest.raises(ValueError, match=f"at most {MAX_CHECKS}"):
        probes.add_check("one_more", passes)
    one = Probes({"long": long_reason})
    _, body = await one.readyz()
    assert len(body["details"]["long"]) == MAX_DETAIL_CHARS
