"""What /metrics and /readyz answer, independent of the web framework.

observability/server.py serves them with aiohttp (ledger, attribution agent); the FastAPI app
reuses the same functions, so every service answers the same way:

- ``/healthz``: 200 while the process runs; checks nothing (a liveness probe that checked
  the database would restart every service when PostgreSQL blips).
- ``/readyz``: 200 only when every readiness check passes within its time limit, 503 with
  a JSON body naming the failing checks otherwise.
- ``/metrics``: Prometheus text (or OpenMetrics when the scraper asks for it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.exposition import choose_encoder

from royalflow.observability import metrics

log = logging.getLogger(__name__)

Check = Callable[[], Awaitable[bool]]
CHECK_TIMEOUT_SECONDS = 2.0  # a check that hangs longer counts as failed
MAX_CHECKS = 16


async def _run_one(name: str, check: Check, timeout_seconds: float) -> bool:
    try:
        return bool(await asyncio.wait_for(check(), timeout_seconds))
    except TimeoutError:
        log.warning("readiness check %r timed out after %.1f s", name, timeout_seconds)
        return False
    except Exception as exc:  # any failure of a dependency means "not ready", never a 500
        log.warning("readiness check %r failed: %s", name, exc)
        return False


async def run_checks(checks: Mapping[str, Check], timeout_seconds: float = CHECK_TIMEOUT_SECONDS) -> dict[str, bool]:
    """Run every check concurrently; a check that raises or times out is False.

    Also sets royalflow_readiness_check_passing{check} for each."""
    if len(checks) > MAX_CHECKS:
        raise ValueError(f"at most {MAX_CHECKS} readiness checks, got {len(checks)}")
    names = list(checks)
    outcomes = await asyncio.gather(*(_run_one(n, checks[n], timeout_seconds) for n in names))
    results = dict(zip(names, outcomes, strict=True))
    for name, passed in results.items():
        metrics.READINESS_CHECK.labels(name).set(1 if passed else 0)
    return results


def readiness_body(results: Mapping[str, bool]) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body) for /readyz: 200 when all passed, else 503 naming the failures."""
    failing = sorted(name for name, passed in results.items() if not passed)
    body = {"ready": not failing, "checks": dict(results), "failing": failing}
    return (200 if not failing else 503), body


def exposition(accept: str | None = None) -> tuple[bytes, str]:
    """(body, Content-Type) of the default registry, negotiated on the Accept header."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(REGISTRY), content_type
