"""The balances API: FastAPI app factory, error handlers and HTTP metrics.

Routes live in :mod:`royalflow.api.routes` (owners, audit, admin, probes). OpenAPI at
/openapi.json, interactive docs at /docs.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import asyncpg
from fastapi import FastAPI, HTTPException, Request, Response, status
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from royalflow.api import portal
from royalflow.api.auth import authenticate, bearer
from royalflow.api.routes import admin, audit, owners, probes
from royalflow.config import Settings
from royalflow.errors import ConfigurationError, LedgerError, MoneyError
from royalflow.ledger.migrate import migrate
from royalflow.observability import metrics
from royalflow.platform.database import create_pool
from royalflow.platform.lifetime import bounded

MAX_BODY_BYTES = 64 * 1024  # the largest body any route takes is a few hundred bytes
AUTHENTICATED_PREFIX = "/v1/"
ADMIN_PREFIX = "/v1/admin/"
UNMATCHED_ROUTE = "unmatched"  # the route label of 404s: never the raw path (unbounded, may hold ids)

DESCRIPTION = """\
Owners read their royalty balances, contributions, statements and generation audits; admins
close settlement periods and run reconciliation.

**Auth.** Every `/v1` route needs `Authorization: Bearer rf_...`; create tokens with
`royalflow api token create --owner ID | --admin`. 401 (with `WWW-Authenticate: Bearer`) for a
missing, malformed, unknown or revoked token; 403 when the token's owner or role does not fit.

**Money.** Every amount is exact: `units` (an integer in the currency's asset scale, 9 decimal
places for USD) and the same value as a `decimal` string. No floats carry money.
"""


def _observe(request: Request, status_code: str, started: float) -> None:
    # The router stores the matched route in the shared scope; its .path is the template
    # (/v1/owners/{owner_id}/balances), so label cardinality stays bounded.
    template = getattr(request.scope.get("route"), "path", UNMATCHED_ROUTE)
    metrics.HTTP_REQUESTS.labels(request.method, template, status_code).inc()
    metrics.HTTP_DURATION.labels(request.method, template).observe(time.perf_counter() - started)


def create_app(settings: Settings, *, pool: asyncpg.Pool | None = None) -> FastAPI:
    """The app; with ``pool`` given it is used (and not closed), otherwise the lifespan opens one
    from ``settings.database_url`` and applies pending migrations."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = pool is None
        if own and not settings.database_url:
            raise ConfigurationError("the API needs DATABASE_URL (or a running `royalflow platform up`)")
        app.state.pool = pool if pool is not None else await create_pool(settings.database_url, max_size=settings.db_pool_max_size)
        try:
            await migrate(app.state.pool)
            yield
        finally:
            if own:  # bounded: asyncpg's close waits on a server that may be gone
                await bounded(app.state.pool.close(), "closing the database pool")

    # max_body_size counts the bytes as they arrive, so a chunked body without Content-Length
    # is cut off at 64 KiB with a 413 as well, without reading the rest of it.
    app = FastAPI(title="royalflow balances API", version="1", description=DESCRIPTION, lifespan=lifespan,
                  max_body_size=MAX_BODY_BYTES)
    app.state.probes = probes.api_probes(app.state)

    @app.middleware("http")
    async def observe(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        # A declared oversized body is refused before a byte of it is read; a streamed one is
        # cut off by max_body_size above.
        length = request.headers.get("content-length", "0")
        if not length.isdigit() or int(length) > MAX_BODY_BYTES:
            response: Response = JSONResponse(
                {"detail": f"request body over {MAX_BODY_BYTES} bytes"}, status_code=status.HTTP_413_CONTENT_TOO_LARGE
            )
        else:
            try:
                response = await call_next(request)
            except Exception:
                # Unhandled errors become a 500 outside this middleware; count them here, or
                # the 5xx alert (royalflow_http_requests_total{status=~"5.."}) would never fire.
                _observe(request, "500", started)
                raise
        _observe(request, str(response.status_code), started)
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        # Authentication before validation: FastAPI parses a JSON body before it runs the
        # auth dependency, so a caller without a valid token would learn what a route accepts
        # (422) instead of getting 401. Check the token first, and the admin role on admin routes.
        if request.url.path.startswith(AUTHENTICATED_PREFIX):
            try:
                who = await authenticate(request, await bearer(request))
                if request.url.path.startswith(ADMIN_PREFIX):
                    who.require_admin()
            except HTTPException as denied:
                return await http_exception_handler(request, denied)
        return await request_validation_exception_handler(request, exc)

    @app.exception_handler(LedgerError)
    @app.exception_handler(MoneyError)
    async def refused(_: Request, exc: Exception) -> JSONResponse:
        # The ledger refusing a request (unsupported currency, bad cursor) is the client's 4xx.
        return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_400_BAD_REQUEST)

    for module in (owners, audit, admin, probes):
        app.include_router(module.router)
    portal.install(app, settings)  # the owner portal's pages under /portal (royalflow.api.portal)
    return app
