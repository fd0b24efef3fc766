"""Helpers for ledger tests on the real broker: produce contributions, run the ledger as a
subprocess (``python -m royalflow ledger run``), wait for PostgreSQL to catch up."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import asyncpg

from royalflow.config import Settings
from royalflow.contracts import ContributionEvent
from royalflow.contracts.events import to_json_bytes
from royalflow.contracts.keys import key_material
from royalflow.ledger.accounts import owner_account
from royalflow.platform.kafka import make_producer

from tests.ledger.factory import generation_parts

SERVICES_DIR = Path(__file__).resolve().parents[2] / "services"


def workload(generations: int, *, owners: tuple[str, ...], seed: int = 0, prefix: str = "g") -> list[ContributionEvent]:
    """``generations`` complete generations, parts interleaved as the agent would emit them."""
    return [p for g in range(generations) for p in generation_parts(f"{prefix}{g}", seed=seed * 1_000_003 + g, owners=owners)]


def expected_balances(parts: list[ContributionEvent]) -> dict[str, int]:
    """Owner account balance per account id (USD), from the parts alone."""
    totals: dict[str, int] = defaultdict(int)
    for p in parts:
        if p.amount:
            totals[owner_account(p.owner_id)] += p.amount
    return dict(totals)


async def produce(settings: Settings, records: list[ContributionEvent | bytes], *, topic: str = "contributions.v1",
                  key: bytes | None = None, sign: bool = True) -> None:
    """Publish records keyed by owner id (raw bytes use ``key``); returns once all are acked.
    Signed with the key set that owns ``topic`` (as the agent or admin would) unless ``sign`` is off."""
    signer = key_material(settings).signer(topic) if sign else None
    producer = make_producer(settings, linger_ms=20)
    await producer.start()
    try:
        pending = []
        for record in records:
            value, record_key = (record, key) if isinstance(record, bytes) else (to_json_bytes(record), record.owner_id.encode())
            headers = signer.headers(topic, record_key, value) if signer else None
            pending.append(await producer.send(settings.topic(topic), value, key=record_key, headers=headers))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def ledger_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=settings.kafka_bootstrap_servers or "",
        DATABASE_URL=settings.database_url or "",
        ROYALFLOW_TOPIC_PREFIX=settings.topic_prefix,
        ROYALFLOW_TOPIC_PARTITIONS=str(settings.topic_partitions),
        ROYALFLOW_STATE_DIR=str(settings.state_dir),
        ROYALFLOW_LEDGER_PORT="0",
        PYTHONPATH=os.pathsep.join(filter(None, [str(SERVICES_DIR), os.environ.get("PYTHONPATH", "")])),
    )
    env.update(extra)
    return env


def start_ledger(settings: Settings, log_path: Path, *args: str, **env: str) -> subprocess.Popen[bytes]:
    """The ledger exactly as deployed: its own process, configured by the environment."""
    with open(log_path, "ab") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "royalflow", "ledger", "run", *args],
            env=ledger_env(settings, **env), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )


async def settled_count(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM contributions"))
    except asyncpg.UndefinedTableError:
        return 0
    finally:
        await conn.close()


async def wait_for_count(dsn: str, expected: int, *, timeout_seconds: float, process: subprocess.Popen[bytes] | None = None) -> float:
    """Poll until ``expected`` contributions are settled; returns the seconds it took."""
    started = time.monotonic()
    while True:
        try:
            count = await settled_count(dsn)
        except (OSError, asyncpg.PostgresError):
            count = -1  # the server is restarting
        if count >= expected:
            return time.monotonic() - started
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"ledger exited with {process.returncode} at {count}/{expected}")
        if time.monotonic() - started > timeout_seconds:
            raise TimeoutError(f"{count}/{expected} contributions settled after {timeout_seconds}s")
        await asyncio.sleep(0.2)


async def owner_balances(dsn: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT account_id, sum(amount)::int8 AS amount FROM balances b JOIN accounts a USING (account_id) "
            "WHERE a.account_type IN ('owner', 'unattributed') GROUP BY account_id"
        )
    finally:
        await conn.close()
    return {r["account_id"]: r["amount"] for r in rows if r["amount"]}
