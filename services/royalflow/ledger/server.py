"""Runs the ledger service with its /metrics, /healthz and /readyz endpoints."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from royalflow.config import Settings
from royalflow.ledger.service import LedgerService
from royalflow.platform.process import free_port
from royalflow.platform.runtime import install_signal_handlers

log = logging.getLogger(__name__)


def health_app(service: LedgerService) -> web.Application:
    async def metrics_view(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def ready(_: web.Request) -> web.Response:
        database = False
        if service.pool is not None:
            try:
                database = await asyncio.wait_for(service.pool.fetchval("SELECT 1"), 2.0) == 1
            except Exception:  # any failure means "not ready"
                database = False
        checks = {"database": database, "broker": service.ready}
        ok = all(checks.values())
        return web.json_response({"ready": ok, "checks": checks}, status=200 if ok else 503)

    app = web.Application()
    app.add_routes([web.get("/metrics", metrics_view), web.get("/healthz", health), web.get("/readyz", ready)])
    return app


async def serve(settings: Settings, port: int | None, *, group_id: str | None = None, instance_id: str | None = None) -> None:
    service = LedgerService(settings, group_id=group_id, instance_id=instance_id)
    stop = asyncio.Event()
    install_signal_handlers(stop)
    runner = web.AppRunner(health_app(service), access_log=None)
    await runner.setup()
    chosen = port if port is not None else settings.ledger_port
    chosen = chosen or free_port()
    await web.TCPSite(runner, "0.0.0.0", chosen).start()
    log.info("ledger: /metrics on port %d", chosen)  # tests read this line to find the port
    checker = asyncio.create_task(_reconcile_periodically(service, settings.reconcile_interval_seconds, stop))
    try:
        await service.run(stop)
    finally:
        checker.cancel()
        await runner.cleanup()


async def _reconcile_periodically(service: LedgerService, interval_seconds: float, stop: asyncio.Event) -> None:
    """Keeps royalflow_reconciliation_* fresh on this service's /metrics (alerting reads them)."""
    from royalflow.ledger.reconcile import reconcile

    if interval_seconds <= 0:
        return
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), interval_seconds)
            return
        except TimeoutError:
            pass
        if service.pool is None:
            continue
        try:
            problems = await reconcile(service.pool)
        except Exception:  # a failed check must not take the ledger down; it is retried next time
            log.exception("periodic reconciliation failed to run")
            continue
        if problems:
            log.error("reconciliation found %d problem(s), first: %s", len(problems), problems[0])
