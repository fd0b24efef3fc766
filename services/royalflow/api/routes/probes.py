"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio

import asyncpg
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from royalflow.api.models import Health, Readiness
from royalflow.observability import metrics

READY_TIMEOUT_SECONDS = 2.0

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health, summary="Liveness")
async def healthz() -> Health:
    """200 while the process serves requests; checks nothing else."""
    return Health(status="ok")


@router.get(
    "/readyz", response_model=Readiness, summary="Readiness",
    responses={503: {"model": Readiness, "description": "PostgreSQL is unreachable."}},
)
async def readyz(request: Request) -> JSONResponse:
    """200 when PostgreSQL answers within 2 s (the API needs nothing else), 503 otherwise."""
    try:
        ok = await asyncio.wait_for(request.app.state.pool.fetchval("SELECT 1"), READY_TIMEOUT_SECONDS) == 1
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        ok = False
    body = Readiness(ready=ok, checks={"database": ok})
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@router.get(
    "/metrics", summary="Prometheus metrics", response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}, "description": "Prometheus text format."}},
)
async def prometheus_metrics(request: Request) -> Response:
    """Every royalflow metric of this process, incl. royalflow_http_requests_total and
    royalflow_http_request_duration_seconds labelled by route template."""
    metrics.observe_pool("api", request.app.state.pool)
    return Response(generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})
