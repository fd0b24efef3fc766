"""The balances API: FastAPI app factory, routes and HTTP metrics."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import asyncpg
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, Response, status
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from royalflow.api.auth import Principal, authenticate
from royalflow.api.models import Amount, Audit, Balance, Balances, ClosePeriod, Contribution, ContributionPage, Reconciliation
from royalflow.config import Settings
from royalflow.errors import LedgerError, MoneyError
from royalflow.ledger import queries
from royalflow.ledger.migrate import migrate
from royalflow.ledger.payouts import close_period, list_periods
from royalflow.ledger.reconcile import reconcile
from royalflow.ledger.statements import statement, statement_csv
from royalflow.money import currency_for
from royalflow.observability import metrics
from royalflow.platform.database import create_pool

OwnerId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_][A-Za-z0-9._:-]{0,127}$", description="Owner id.")]
Auth = Annotated[Principal, Depends(authenticate)]
PAGE_LIMIT_MAX = 500


def create_app(settings: Settings, *, pool: asyncpg.Pool | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = pool is None
        app.state.pool = pool or await create_pool(settings.database_url or "", max_size=settings.db_pool_max_size)
        await migrate(app.state.pool)
        yield
        if own:
            await app.state.pool.close()

    app = FastAPI(
        title="royalflow balances API",
        version="1",
        description="Owners read their royalty balances, contributions, statements and audits; admins close "
        "periods and reconcile. Bearer tokens: `royalflow api token create`.",
        lifespan=lifespan,
    )

    @app.middleware("http")
    async def observe(request: Request, call_next):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        template = getattr(route, "path", "unmatched")  # the template, never a raw path with ids
        metrics.HTTP_REQUESTS.labels(request.method, template, str(response.status_code)).inc()
        metrics.HTTP_DURATION.labels(request.method, template).observe(time.perf_counter() - started)
        return response

    @app.exception_handler(LedgerError)
    async def ledger_error(_: Request, exc: LedgerError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_400_BAD_REQUEST)

    @app.exception_handler(MoneyError)
    async def money_error(_: Request, exc: MoneyError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_400_BAD_REQUEST)

    @app.get("/v1/owners/{owner_id}/balances", response_model=Balances, tags=["owners"])
    async def balances(owner_id: OwnerId, who: Auth, request: Request) -> Balances:
        """Lifetime and rolling (1h/24h/7d/30d, by event time) balances per currency."""
        who.require_owner(owner_id)
        rows = await queries.owner_balances(request.app.state.pool, owner_id)
        return Balances(owner_id=owner_id, balances=[
            Balance(currency=r["currency"], asset_scale=currency_for(r["currency"]).asset_scale,
                    lifetime=Amount.of(r["lifetime"], r["currency"]), available=Amount.of(r["available"], r["currency"]),
                    windows={k: Amount.of(v, r["currency"]) for k, v in r["windows"].items()})
            for r in rows
        ])

    @app.get("/v1/owners/{owner_id}/contributions", response_model=ContributionPage, tags=["owners"])
    async def contributions(
        owner_id: OwnerId, who: Auth, request: Request,
        cursor: Annotated[str | None, Query(max_length=64, description="From the previous page's next_cursor.")] = None,
        limit: Annotated[int, Query(ge=1, le=PAGE_LIMIT_MAX)] = 100,
    ) -> ContributionPage:
        """The owner's contributions in settlement order, cursor-paginated."""
        who.require_owner(owner_id)
        rows, next_cursor = await queries.contributions_page(request.app.state.pool, owner_id, after=cursor, limit=limit)
        items = [Contribution(**{**r, "amount": Amount.of(r["amount"], r["currency"])}) for r in rows]
        return ContributionPage(owner_id=owner_id, items=items, next_cursor=next_cursor)

    @app.get("/v1/owners/{owner_id}/statements", tags=["owners"])
    async def statements(owner_id: OwnerId, who: Auth, request: Request) -> list[dict]:  # type: ignore[type-arg]
        """Closed settlement periods with a statement for this owner."""
        who.require_owner(owner_id)
        return [{**p, "href": f"/v1/owners/{owner_id}/statements/{p['period_id']}"} for p in await list_periods(request.app.state.pool)]

    @app.get("/v1/owners/{owner_id}/statements/{period_id:path}", tags=["owners"], response_model=None)
    async def owner_statement(
        owner_id: OwnerId, period_id: str, who: Auth, request: Request,
        format: Annotated[str, Query(pattern="^(json|csv)$")] = "json",
    ) -> Response | dict:  # type: ignore[type-arg]
        """One period's statement: every credit, the payout and the carried-forward remainder."""
        who.require_owner(owner_id)
        try:
            data = await statement(request.app.state.pool, owner_id, period_id)
        except LedgerError as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
        if format == "csv":
            return PlainTextResponse(statement_csv(data), media_type="text/csv")
        return data

    @app.get("/v1/generations/{generation_id}/audit", response_model=Audit, tags=["audit"])
    async def audit(
        generation_id: Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")], who: Auth, request: Request,
    ) -> Audit:
        """Everything behind a generation's payouts. Admins see any generation; an owner sees
        generations it has a part in."""
        record = await queries.generation_audit(request.app.state.pool, generation_id)
        if who.role != "admin" and (record is None or who.owner_id not in {p["owner_id"] for p in record["parts"]}):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "this token has no part in that generation")
        if record is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no generation {generation_id!r}")
        cur = record["currency"]
        return Audit(**{k: record[k] for k in ("generation_id", "currency", "family_id", "family_version", "complete",
                                              "inconsistent", "parts", "attribution")},
                     revenue=Amount.of(record["revenue_amount"], cur), pool=Amount.of(record["pool_amount"], cur),
                     platform=Amount.of(record["platform_amount"], cur))

    @app.post("/v1/admin/periods/close", tags=["admin"])
    async def close(body: ClosePeriod, who: Auth, request: Request) -> dict:  # type: ignore[type-arg]
        """Close a period: payouts rounded down to the minor unit, remainders carried forward."""
        who.require_admin()
        if body.period_end.tzinfo is None:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, "period_end needs a timezone")
        return await close_period(request.app.state.pool, body.period_end, currency=body.currency)

    @app.post("/v1/admin/reconcile", response_model=Reconciliation, tags=["admin"])
    async def run_reconcile(who: Auth, request: Request) -> Reconciliation:
        """Check every ledger invariant. 200 with ok=false and the problems when any fails."""
        who.require_admin()
        problems = await reconcile(request.app.state.pool)
        return Reconciliation(ok=not problems, problems=problems)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict:  # type: ignore[type-arg]
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> JSONResponse:
        try:
            ok = await request.app.state.pool.fetchval("SELECT 1") == 1
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            ok = False
        return JSONResponse({"ready": ok, "checks": {"database": ok}}, status_code=200 if ok else 503)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics(request: Request) -> Response:
        metrics.observe_pool("api", request.app.state.pool)
        return Response(generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    return app
