"""Runs the ledger service with its /metrics, /healthz and /readyz endpoints
(:class:`royalflow.observability.server.HealthServer`)."""

from __future__ import annotations

import asyncio
import logging

from royalflow.config import Settings
from royalflow.ledger.service import SERVICE, LedgerService
from royalflow.observability import metrics
from royalflow.observability.server import HealthServer
from royalflow.platform.lifetime import bounded
from royalflow.platform.runtime import install_signal_handlers

log = logging.getLogger(__name__)


def health_server(service: LedgerService, port: int) -> HealthServer:
    async def database() -> bool:
        return service.pool is not None and await service.pool.fetchval("SELECT 1") == 1

    async def broker() -> bool:
        return service.ready

    async def offsets() -> bool:
        # False while a stored next offset is beyond its partition's log end (ledger/offsets.py).
        return service.offset_guard.ok

    def pool_gauges() -> None:
        if service.pool is not None:
            metrics.observe_pool(SERVICE, service.pool)

    return HealthServer("0.0.0.0", port, {"database": database, "broker": broker, "offsets": offsets}, before_scrape=[pool_gauges])


async def serve(settings: Settings, port: int | None, *, group_id: str | None = None, instance_id: str | None = None) -> None:
    service = LedgerService(settings, group_id=group_id, instance_id=instance_id)
    stop = asyncio.Event()
    install_signal_handlers(stop, what="ledger")
    server = health_server(service, port if port is not None else settings.ledger_port)  # 0 = a free port
    await server.start()
    log.info("ledger: /metrics on port %d", server.port)  # tests and operators read this line to find the port
    try:
        await service.run(stop)
    finally:
        await bounded(server.stop(), "closing the health server")
