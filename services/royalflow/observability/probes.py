"""The one probe implementation: named checks, and what /healthz, /readyz and /metrics answer,
independent of the web framework. Every service uses it: the ledger and the attribution agent
through observability/server.py (aiohttp) or the agent's faust views, the API through its
FastAPI routes, so every service answers the same JSON:

- ``/healthz``: liveness. 200 while the process runs; it runs only *liveness* checks (none by
  default: a liveness probe that checked the database would restart every service when
  PostgreSQL blips). ``{"status": "ok", "checks": {...}, "failing": [], "details": {}}``.
- ``/readyz``: 200 only when every readiness check passes within its time limit, else 503:
  ``{"ready": false, "checks": {"broker": true, "database": false}, "failing": ["database"],
  "details": {"database": "timed out after 2.0 s"}}``.
- ``/metrics``: Prometheus text (or OpenMetrics when the scraper asks for it).

A check is ``async () -> bool | CheckResult``; a check that raises or times out failed (never a
500), and its reason goes to ``details``. Add one by name, e.g. the ledger's stale-offset check:

    probes.add_check("offsets", offsets_within_log_end)   # -> CheckResult(False, "partition 3: ...")
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.exposition import choose_encoder

from royalflow.observability import metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckResult:
    """A check's answer with the reason an operator reads in /readyz (keep ids out of it)."""

    ok: bool
    detail: str = ""


Check = Callable[[], Awaitable["bool | CheckResult"]]
CHECK_TIMEOUT_SECONDS = 2.0  # a check that hangs longer counts as failed
MAX_CHECKS = 16
MAX_DETAIL_CHARS = 200  # a reason, not a traceback
CHECK_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")  # a Prometheus label value: bounded and plain


async def _run_one(name: str, check: Check, timeout_seconds: float) -> CheckResult:
    try:
        outcome = await asyncio.wait_for(check(), timeout_seconds)
    except TimeoutError:
        log.warning("check %r timed out after %.1f s", name, timeout_seconds)
        return CheckResult(False, f"timed out after {timeout_seconds:.1f} s")
    except Exception as exc:  # any failure of a dependency means "not ready", never a 500
        log.warning("check %r failed: %s", name, exc)
        return CheckResult(False, f"{type(exc).__name__}: {exc}"[:MAX_DETAIL_CHARS])
    if isinstance(outcome, CheckResult):
        return CheckResult(outcome.ok, outcome.detail[:MAX_DETAIL_CHARS])
    return CheckResult(bool(outcome), "" if outcome else "check returned false")


async def evaluate(checks: Mapping[str, Check], timeout_seconds: float = CHECK_TIMEOUT_SECONDS) -> dict[str, CheckResult]:
    """Run every check concurrently, each within ``timeout_seconds``."""
    if len(checks) > MAX_CHECKS:
        raise ValueError(f"at most {MAX_CHECKS} checks, got {len(checks)}")
    names = list(checks)
    outcomes = await asyncio.gather(*(_run_one(n, checks[n], timeout_seconds) for n in names))
    return dict(zip(names, outcomes, strict=True))


async def run_checks(checks: Mapping[str, Check], timeout_seconds: float = CHECK_TIMEOUT_SECONDS) -> dict[str, bool]:
    """Readiness checks as name -> passed; sets royalflow_readiness_check_passing{check}."""
    results = await evaluate(checks, timeout_seconds)
    for name, result in results.items():
        metrics.READINESS_CHECK.labels(name).set(1 if result.ok else 0)
    return {name: result.ok for name, result in results.items()}


def _listing(results: Mapping[str, bool | CheckResult]) -> tuple[list[str], dict[str, Any]]:
    normal = {n: r if isinstance(r, CheckResult) else CheckResult(bool(r)) for n, r in results.items()}
    failing = sorted(name for name, r in normal.items() if not r.ok)
    return failing, {
        "checks": {name: r.ok for name, r in normal.items()},
        "failing": failing,
        "details": {name: normal[name].detail or "failed" for name in failing},
    }


def readiness_body(results: Mapping[str, bool | CheckResult]) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body) for /readyz: 200 when all passed, else 503 naming the failures."""
    failing, listing = _listing(results)
    return (200 if not failing else 503), {"ready": not failing, **listing}


def liveness_body(results: Mapping[str, bool | CheckResult]) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body) for /healthz: 200 unless a liveness check failed."""
    failing, listing = _listing(results)
    return (200 if not failing else 503), {"status": "ok" if not failing else "failing", **listing}


class Probes:
    """A service's named liveness and readiness checks; one per process."""

    def __init__(
        self, checks: Mapping[str, Check] | None = None, *, liveness: Mapping[str, Check] | None = None,
        timeout_seconds: float = CHECK_TIMEOUT_SECONDS,
    ) -> None:
        self.checks: dict[str, Check] = {}
        self.liveness: dict[str, Check] = {}
        self.timeout_seconds = timeout_seconds
        for name, check in (checks or {}).items():
            self.add_check(name, check)
        for name, check in (liveness or {}).items():
            self.add_liveness(name, check)

    @staticmethod
    def _add(into: dict[str, Check], name: str, check: Check) -> None:
        if not CHECK_NAME.match(name):
            raise ValueError(f"check name {name!r} must match {CHECK_NAME.pattern}")
        if name not in into and len(into) >= MAX_CHECKS:
            raise ValueError(f"at most {MAX_CHECKS} checks")
        into[name] = check

    def add_check(self, name: str, check: Check) -> None:
        """Add (or replace) a readiness check, e.g. once the consumer exists."""
        self._add(self.checks, name, check)

    def add_liveness(self, name: str, check: Check) -> None:
        """Add a liveness check: only for states a restart fixes (a wedged event loop)."""
        self._add(self.liveness, name, check)

    async def healthz(self) -> tuple[int, dict[str, Any]]:
        return liveness_body(await evaluate(self.liveness, self.timeout_seconds))

    async def readyz(self) -> tuple[int, dict[str, Any]]:
        results = await evaluate(self.checks, self.timeout_seconds)
        for name, result in results.items():
            metrics.READINESS_CHECK.labels(name).set(1 if result.ok else 0)
        return readiness_body(results)


def exposition(accept: str | None = None) -> tuple[bytes, str]:
    """(body, Content-Type) of the default registry, negotiated on the Accept header."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(REGISTRY), content_type
