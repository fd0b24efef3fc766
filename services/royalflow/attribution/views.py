"""HTTP views of the attribution agent on faust's web server: /metrics, /healthz, /readyz."""

from __future__ import annotations

import faust
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from royalflow.config import Settings
from royalflow.observability import metrics
from royalflow.observability.probes import Probes


def install_views(app: faust.App, settings: Settings) -> None:
    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            metrics.observe_gpu_memory()
            # aiohttp refuses a charset inside content_type=, so the header is set directly.
            return self.bytes(generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    # Ready = connected to the broker: producer started and consumer running. The one probe
    # implementation (observability/probes.py) answers, as in the ledger and the API.
    async def producer() -> bool:
        return bool(app.producer.started)

    async def consumer() -> bool:
        return bool(app.consumer.started)

    probes = Probes({"producer": producer, "consumer": consumer})

    @app.page("/healthz")
    class Health(View):
        async def get(self, request: Request) -> Response:
            status, body = await probes.healthz()
            return self.json(body, status=status)

    @app.page("/readyz")
    class Ready(View):
        async def get(self, request: Request) -> Response:
            status, body = await probes.readyz()
            return self.json(body, status=status)
