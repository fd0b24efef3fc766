"""HealthServer on a real socket: liveness, readiness that follows its checks, metrics text."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from royalflow.observability import metrics
from royalflow.observability.server import HealthServer


class Flag:
    """A readiness check whose answer the test flips."""

    def __init__(self) -> None:
        self.up = False

    async def __call__(self) -> bool:
        return self.up


async def test_healthz_readyz_and_metrics_on_a_free_port() -> None:
    broker, database = Flag(), Flag()
    async with HealthServer("127.0.0.1", 0, {"broker": broker, "database": database}) as server:
        assert server.port > 0
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=5) as client:
            health = await client.get("/healthz")
            assert health.status_code == 200
            assert health.json() == {"status": "ok", "checks": {}, "failing": [], "details": {}}

            not_ready = await client.get("/readyz")
            assert not_ready.status_code == 503
            assert not_ready.json() == {"ready": False, "checks": {"broker": False, "database": False},
                                        "failing": ["broker", "database"],
                                        "details": {"broker": "check returned false", "database": "check returned false"}}

            broker.up = True
            half = await client.get("/readyz")
            assert half.status_code == 503 and half.json()["failing"] == ["database"]

            database.up = True
            ready = await client.get("/readyz")
            assert ready.status_code == 200 and ready.json()["ready"] is True and ready.json()["failing"] == []

            scrape = await client.get("/metrics")
            assert scrape.status_code == 200
            assert scrape.headers["content-type"].startswith("text/plain; version=0.0.4")
            for name in ("royalflow_records_consumed_total", "royalflow_consumer_lag_records",
                         "royalflow_attribution_duration_seconds", "royalflow_build_info"):
                assert f"# TYPE {name.removesuffix('_total')}" in scrape.text, name
            assert 'royalflow_readiness_check_passing{check="database"} 1.0' in scrape.text


async def test_failing_hanging_and_raising_checks_are_named_not_500() -> None:
    async def hangs() -> bool:
        await asyncio.sleep(30)
        return True

    async def raises() -> bool:
        raise ConnectionRefusedError("broker down")

    async def passes() -> bool:
        return True

    checks = {"slow": hangs, "broken": raises, "fine": passes}
    async with HealthServer("127.0.0.1", 0, checks, check_timeout_seconds=0.2) as server:
        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.get(f"http://127.0.0.1:{server.port}/readyz")
    assert response.status_code == 503
    assert response.json()["failing"] == ["broken", "slow"]
    assert response.json()["checks"]["fine"] is True
    assert response.json()["details"] == {"broken": "ConnectionRefusedError: broker down", "slow": "timed out after 0.2 s"}


async def test_no_checks_means_ready_and_checks_can_be_added_later() -> None:
    late = Flag()
    async with HealthServer("127.0.0.1", 0) as server:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=5) as client:
            assert (await client.get("/readyz")).status_code == 200
            server.add_check("consumer", late)
            assert (await client.get("/readyz")).json()["failing"] == ["consumer"]


async def test_before_scrape_refreshes_and_a_failing_refresh_keeps_the_rest() -> None:
    def refresh() -> None:
        metrics.OUTBOX_PENDING.set(7)

    def broken() -> None:
        raise RuntimeError("gauge source gone")

    async with HealthServer("127.0.0.1", 0, before_scrape=[broken, refresh]) as server:
        async with httpx.AsyncClient(timeout=5) as client:
            scrape = await client.get(f"http://127.0.0.1:{server.port}/metrics")
    assert scrape.status_code == 200
    assert "royalflow_outbox_pending_records 7.0" in scrape.text


async def test_openmetrics_when_the_scraper_asks() -> None:
    async with HealthServer("127.0.0.1", 0) as server:
        async with httpx.AsyncClient(timeout=5) as client:
            scrape = await client.get(f"http://127.0.0.1:{server.port}/metrics",
                                      headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert scrape.headers["content-type"].startswith("application/openmetrics-text")
    assert scrape.text.rstrip().endswith("# EOF")


async def test_port_in_use_fails_loudly_and_port_needs_start() -> None:
    with pytest.raises(RuntimeError, match="not started"):
        _ = HealthServer("127.0.0.1", 0).port
    async with HealthServer("127.0.0.1", 0) as first:
        with pytest.raises(OSError):
            await HealthServer("127.0.0.1", first.port).start()
