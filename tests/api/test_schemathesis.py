"""schemathesis against the LIVE API: a real uvicorn server (``royalflow api serve``) on a free
port, real PostgreSQL with settled generations, an audit record and closed periods (one of them
at -infinity), admin and owner tokens.

Two passes, both bounded and deterministic (the same requests every run):

1. in-process generation from the OpenAPI document: every operation, schema-conforming and
   schema-violating cases, each sent with an admin token, an owner token and no token, plus
   cases pinned to ids that exist (gen-1's audit, a closed period) so the deep paths run too;
   checks: not_a_server_error, response_schema_conformance, content_type_conformance,
   positive_data_acceptance, negative_data_rejection, status_code_conformance;
2. the schemathesis CLI (coverage, fuzzing and stateful phases) once per token kind, with EVERY
   check (``--checks all``), positive_data_acceptance included: a schema-valid request is never
   refused with 400 or 422, because every rule the server enforces is in the document (the
   period_end pattern, the cursor's shape; whether a period has ended yet is a documented 409).

Zero failures allowed. The requests made and their statuses are read from the server's own
royalflow_http_requests_total and printed (pytest -s) for the record.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)

from royalflow.config import Settings
from royalflow.ledger.payouts import close_period

from tests.api.live import serve_api

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXAMPLES_PER_OPERATION_AND_MODE = 25
CLI_EXAMPLES = 20
CLI_TIMEOUT_SECONDS = 240
REQUEST_TIMEOUT_SECONDS = 10
MAX_FAILURES_KEPT = 50  # distinct ones: enough to fix them all, bounded memory
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance, positive_data_acceptance,
          negative_data_rejection, status_code_conformance]
CLI_CHECKS = "all"  # every check schemathesis has, none left out
CLOSED_PERIOD = datetime(2025, 1, 1, tzinfo=UTC)
PINNED = {  # operation path -> path parameters of data that exists
    "/v1/generations/{generation_id}/audit": {"generation_id": "gen-1"},
    "/v1/owners/{owner_id}/statements/{period_id}": {"owner_id": "owner-a", "period_id": f"{CLOSED_PERIOD.isoformat()}/USD"},
    "/v1/owners/{owner_id}/contributions": {"owner_id": "owner-a"},
    "/v1/owners/{owner_id}/balances": {"owner_id": "owner-a"},
}
REQUEST_LINE = re.compile(r'^royalflow_http_requests_total\{method="(\w+)",route="([^"]*)",status="(\d+)"\} ([0-9.e+]+)$', re.M)


@dataclass
class Tally:
    cases: int = 0
    failures: dict[str, str] = field(default_factory=dict)  # distinct failure -> one request that shows it
    no_cases: list[str] = field(default_factory=list)


def _fuzz(base_url: str, headers_by_kind: dict[str, dict[str, str]]) -> Tally:
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", timeout=REQUEST_TIMEOUT_SECONDS)
    tally = Tally()
    session = requests.Session()
    for result in schema.get_all_operations():
        operation = result.ok()
        pinned = PINNED.get(operation.path)
        variants = [(mode, None) for mode in schemathesis.GenerationMode] + ([(schemathesis.GenerationMode.POSITIVE, pinned)] if pinned else [])
        for mode, path_parameters in variants:

            @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path_parameters))
            @hypothesis_settings(
                max_examples=EXAMPLES_PER_OPERATION_AND_MODE, deadline=None, database=None, derandomize=True,
                suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate],
            )
            def run(case) -> None:  # type: ignore[no-untyped-def]
                tally.cases += 1
                for kind, headers in headers_by_kind.items():
                    response = case.call(base_url=base_url, session=session, headers=headers, timeout=REQUEST_TIMEOUT_SECONDS)
                    try:
                        case.validate_response(response, checks=CHECKS, headers=headers)
                    except (Failure, FailureGroup) as failure:  # collected, then reported together
                        first = failure.exceptions[0] if isinstance(failure, FailureGroup) else failure
                        key = f"{operation.label} [{kind}, {mode.value}] {first.title}: {first.message.strip().splitlines()[0][:200]}"
                        if key not in tally.failures and len(tally.failures) < MAX_FAILURES_KEPT:
                            tally.failures[key] = f"{response.request.method} {response.request.url} -> {response.status_code} {response.text[:300]}"

            try:
                run()
            except Unsatisfiable:
                # Nothing to violate: an operation without parameters or body has no negative case.
                tally.no_cases.append(f"{operation.label} [{mode.value}{', pinned' if path_parameters else ''}]")
    return tally


def _cli(base_url: str, authorization: str | None, workdir: Path) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable, "-m", "schemathesis.cli", "run", f"{base_url}/openapi.json",
        "--phases", "coverage,fuzzing,stateful", "--checks", CLI_CHECKS, "--max-examples", str(CLI_EXAMPLES),
        "--generation-deterministic", "--workers", "1", "--suppress-health-check", "all",
        "--continue-on-failure", "--max-failures", str(MAX_FAILURES_KEPT), "--request-timeout", str(REQUEST_TIMEOUT_SECONDS),
        *(["--header", f"Authorization: {authorization}"] if authorization else []),
    ]
    # cwd: the CLI keeps a cache folder in its working directory; not in the repository.
    return subprocess.run(command, capture_output=True, text=True, timeout=CLI_TIMEOUT_SECONDS, cwd=workdir,
                          stdin=subprocess.DEVNULL, check=False)


async def _served_requests(base_url: str) -> Counter[str]:
    """Requests the server counted, by status class and status (its own metrics)."""
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_SECONDS) as client:
        text = (await client.get(f"{base_url}/metrics")).text
    statuses: Counter[str] = Counter()
    for _, _, status, value in REQUEST_LINE.findall(text):
        statuses[status] += int(float(value))
    return statuses


async def test_schemathesis_finds_no_failure_on_the_live_api(
    settings: Settings, pool: asyncpg.Pool, tokens: dict[str, str | None], tmp_path: Path,
) -> None:
    await close_period(pool, CLOSED_PERIOD)  # a statement with lines to read
    await pool.execute("INSERT INTO periods (period_id, currency, period_end) VALUES ('-infinity/USD', 'USD', '-infinity')")
    kinds = {"admin": tokens["admin"], "owner": tokens["owner"], "none": None}
    async with serve_api(settings, tmp_path / "logs") as (api, base_url):
        started = time.monotonic()
        tally = await asyncio.to_thread(_fuzz, base_url, {k: {"Authorization": v} if v else {} for k, v in kinds.items()})
        in_process = await _served_requests(base_url)
        runs = {kind: await asyncio.to_thread(_cli, base_url, value, tmp_path) for kind, value in kinds.items()}
        seconds = time.monotonic() - started
        served = await _served_requests(base_url)
        still_alive = api.alive

    cli = served - in_process
    print(f"\nschemathesis in-process: {tally.cases} cases, {sum(in_process.values())} requests "
          f"{dict(sorted(in_process.items()))}, {len(tally.failures)} distinct failures "
          f"(no negative cases for: {', '.join(tally.no_cases) or '-'})")
    print(f"schemathesis CLI (coverage, fuzzing, stateful; admin, owner, none): {sum(cli.values())} requests "
          f"{dict(sorted(cli.items()))}, exit codes {({k: r.returncode for k, r in runs.items()})}; total {seconds:.0f}s")
    for failure, example in tally.failures.items():
        print(f"  {failure}\n    e.g. {example}")
    for kind, run in runs.items():
        if run.returncode != 0:
            print(f"--- CLI with {kind} token ---\n{run.stdout[-8000:]}\n{run.stderr[-2000:]}")

    assert still_alive, "the API process died under fuzzing"
    assert sum(in_process.values()) >= 1000 and sum(cli.values()) >= 1000, "too few requests to mean anything"
    assert not any(status.startswith("5") for status in served), served
    assert in_process["200"] > 100 and cli["200"] > 100, "the fuzzing must reach the routes, not only their guards"
    assert not tally.failures, "\n".join(tally.failures)
    assert all(run.returncode == 0 for run in runs.values()), {k: r.stdout[-3000:] for k, r in runs.items() if r.returncode}
