"""Stale offsets (issue #8, "Restarts"): PostgreSQL holds next offsets beyond the broker's log
ends (a new or emptied broker in front of an old database). The ledger must say so, three ways
(a metric, ``/readyz`` failing its named ``offsets`` check, a log line naming the partition),
instead of sitting idle silently; with the offsets fixed, the same ledger is ready again.

Restarting ``platform up`` and restarting crashed children are tested in tests/platform."""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from royalflow import topics
from royalflow.config import Settings
from royalflow.ledger.migrate import migrate
from royalflow.platform.database import create_pool
from royalflow.platform.kafka import ensure_topics
from royalflow.platform.supervisor import Supervisor

from tests.hostile import keys

pytestmark = pytest.mark.integration

METRIC = "royalflow_ledger_offsets_beyond_log_end_records"
AHEAD_BY = 1000  # next offset stored per partition; the fresh topics' logs end at 0
WAIT_SECONDS = 60.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _metric(text: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(METRIC + " ") or line.startswith(METRIC + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


async def _until(supervisor: Supervisor, port: int, want_ready: bool) -> tuple[dict, float | None]:  # type: ignore[type-arg]
    """Poll /readyz and /metrics until readiness is ``want_ready`` (bounded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_SECONDS
    last: tuple[int, str] = (0, "")
    while loop.time() < deadline:
        supervisor.check_alive()
        try:
            last = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/readyz")
        except OSError:
            last = (0, "")  # not listening yet
        if last[0] == (200 if want_ready else 503):
            body = json.loads(last[1])
            _, text = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics")
            value = _metric(text)
            if want_ready or "offsets" in body.get("failing", []):
                return body, value
        await asyncio.sleep(0.5)
    raise AssertionError(f"/readyz never answered ready={want_ready}: last {last}; ledger log:\n"
                         + supervisor.services["ledger"].tail())


async def test_offsets_beyond_the_log_end_are_reported_then_cleared(settings: Settings, tmp_path: Path) -> None:
    port = _free_port()
    settings = settings.model_copy(update={"ledger_port": port, **keys.settings_fields()})
    await ensure_topics(settings)
    contributions = settings.topic(topics.CONTRIBUTIONS)
    pool = await create_pool(str(settings.database_url), max_size=1)
    try:
        await migrate(pool)
        await pool.executemany(
            "INSERT INTO consumer_offsets (group_id, topic, partition, next_offset) VALUES ($1, $2, $3, $4)",
            [(f"{settings.topic_prefix}-ledger", contributions, p, AHEAD_BY) for p in range(settings.topic_partitions)],
        )
        with Supervisor(settings, tmp_path / "logs") as supervisor:
            supervisor.start("ledger")
            body, value = await _until(supervisor, port, want_ready=False)
            assert body["ready"] is False and "offsets" in body["failing"], body
            assert value == AHEAD_BY * settings.topic_partitions, f"{METRIC} = {value}"
            log = supervisor.services["ledger"].log_path.read_text(errors="replace")
            named = [line for line in log.splitlines() if contributions in line and "offset" in line.lower()]
            assert named, "no log line names the partitions whose stored offsets are beyond the log end"

        await pool.execute("DELETE FROM consumer_offsets")
        with Supervisor(settings, tmp_path / "logs-after") as supervisor:
            supervisor.start("ledger")
            body, value = await _until(supervisor, port, want_ready=True)
            assert body["ready"] is True and value == 0, (body, value)
    finally:
        await pool.close()
