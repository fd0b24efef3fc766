"""A tiny aiohttp server with /metrics, /healthz and /readyz for services that are not web apps.

    server = HealthServer("0.0.0.0", settings.ledger_port, {"broker": broker_up, "database": db_up},
                          before_scrape=[lambda: metrics.observe_pool("ledger", pool)])
    await server.start()          # server.port is the bound port (port 0 picks a free one)
    ...
    await server.stop()

or ``async with HealthServer(...) as server:``. Semantics of the three endpoints, and the
named checks behind them (``server.probes``), are in observability/probes.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

from aiohttp import web

from royalflow.observability.probes import CHECK_TIMEOUT_SECONDS, Check, Probes, exposition

log = logging.getLogger(__name__)


class HealthServer:
    def __init__(
        self,
        host: str,
        port: int,
        checks: Mapping[str, Check] | None = None,
        *,
        before_scrape: Sequence[Callable[[], None]] = (),
        check_timeout_seconds: float = CHECK_TIMEOUT_SECONDS,
    ) -> None:
        self.host = host
        self.requested_port = port
        self.probes = Probes(checks, timeout_seconds=check_timeout_seconds)
        self.before_scrape = list(before_scrape)  # e.g. refresh GPU or pool gauges
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("HealthServer is not started")
        return self._port

    @property
    def checks(self) -> dict[str, Check]:
        return self.probes.checks

    def add_check(self, name: str, check: Check) -> None:
        """Add a named readiness check later, e.g. once the consumer exists."""
        self.probes.add_check(name, check)

    # --- handlers --------------------------------------------------------------------------
    async def _metrics(self, request: web.Request) -> web.Response:
        for refresh in self.before_scrape:
            try:
                refresh()
            except Exception:  # a failing gauge refresh must not hide every other metric
                log.exception("metrics refresh %r failed", refresh)
        body, content_type = exposition(request.headers.get("Accept"))
        # aiohttp refuses a charset inside content_type=, so the header is set directly.
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def _healthz(self, _: web.Request) -> web.Response:
        status, body = await self.probes.healthz()
        return web.json_response(body, status=status)

    async def _readyz(self, _: web.Request) -> web.Response:
        status, body = await self.probes.readyz()
        return web.json_response(body, status=status)

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("HealthServer already started")
        app = web.Application()
        app.add_routes([web.get("/metrics", self._metrics), web.get("/healthz", self._healthz),
                        web.get("/readyz", self._readyz)])
        runner = web.AppRunner(app, access_log=None)  # probes every few seconds would flood the log
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.requested_port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        log.info("/metrics, /healthz, /readyz on %s:%d", self.host, self._port)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> HealthServer:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()
