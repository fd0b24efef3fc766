"""HTTP views of the attribution agent on faust's web server: /metrics, /healthz, /readyz."""

from __future__ import annotations

import faust
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from royalflow.config import Settings
from royalflow.observability import metrics


def install_views(app: faust.App, settings: Settings) -> None:
    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            metrics.observe_gpu_memory()
            # aiohttp refuses a charset inside content_type=, so the header is set directly.
            return self.bytes(generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.page("/healthz")
    class Health(View):
        async def get(self, request: Request) -> Response:
            return self.json({"status": "ok"})

    @app.page("/readyz")
    class Ready(View):
        async def get(self, request: Request) -> Response:
            # Ready = connected to the broker: producer started and consumer running.
            checks = {
                "producer": bool(app.producer.started),
                "consumer": bool(app.consumer.started),
            }
            status = 200 if all(checks.values()) else 503
            return self.json({"ready": status == 200, "checks": checks}, status=status)
