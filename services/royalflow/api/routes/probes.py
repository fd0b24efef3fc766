"""Liveness, readiness and Prometheus metrics, answered by the one probe implementation
(:class:`royalflow.observability.probes.Probes`, kept in ``app.state.probes``)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from royalflow.api.models import Health, Readiness
from royalflow.observability import metrics
from royalflow.observability.probes import Probes

READY_TIMEOUT_SECONDS = 2.0

router = APIRouter(tags=["operations"])


def api_probes(app_state: object) -> Probes:
    """The API's named checks: the API needs PostgreSQL and nothing else."""

    async def database() -> bool:
        return await app_state.pool.fetchval("SELECT 1") == 1  # type: ignore[attr-defined]

    return Probes({"database": database}, timeout_seconds=READY_TIMEOUT_SECONDS)


@router.get(
    "/healthz", response_model=Health, summary="Liveness",
    responses={503: {"model": Health, "description": "A liveness check failed."}},
)
async def healthz(request: Request) -> JSONResponse:
    """200 while the process serves requests; checks nothing else (a database blip must not
    restart the API)."""
    status, body = await request.app.state.probes.healthz()
    return JSONResponse(Health(**body).model_dump(), status_code=status)


@router.get(
    "/readyz", response_model=Readiness, summary="Readiness",
    responses={503: {"model": Readiness, "description": "A named check failed, e.g. PostgreSQL is unreachable."}},
)
async def readyz(request: Request) -> JSONResponse:
    """200 when every named check passes within 2 s (the API checks `database`: PostgreSQL
    answers), 503 otherwise, naming the failing checks and why."""
    status, body = await request.app.state.probes.readyz()
    return JSONResponse(Readiness(**body).model_dump(), status_code=status)


@router.get(
    "/metrics", summary="Prometheus metrics", response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}, "description": "Prometheus text format."}},
)
async def prometheus_metrics(request: Request) -> Response:
    """Every royalflow metric of this process, incl. royalflow_http_requests_total and
    royalflow_http_request_duration_seconds labelled by route template."""
    metrics.observe_pool("api", request.app.state.pool)
    return Response(generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})
