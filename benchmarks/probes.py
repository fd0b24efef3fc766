"""What benchmarks/settlement.py watches while the platform settles: when each generation's
audit record left the agent, when its balances became visible in PostgreSQL, and how much CPU
each process of the platform used. Nothing here runs inside the services.

Clocks: every time is the wall clock of this one machine (time.time() here, the Kafka record
timestamp set by the agent's producer, PostgreSQL's now()), so differences across processes
are meaningful to about a millisecond (Kafka timestamps are whole milliseconds).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import asyncpg
import psutil
from aiokafka import AIOKafkaConsumer, TopicPartition

from royalflow.config import Settings
from royalflow.platform.kafka import client_kwargs

POLL_SECONDS = 0.01  # visibility resolution: a commit is seen at most this much late (5 ms on average)
POLL_MAX_IDS = 5_000  # ids asked about per poll (the oldest pending): bounds the probe's own cost


@dataclass
class Seen:
    """Per generation id: when its audit record was produced by the agent, when its balances
    were first seen committed (and PostgreSQL's now() of the committing transaction)."""

    agent_produced: dict[str, float] = field(default_factory=dict)
    visible: dict[str, float] = field(default_factory=dict)
    completed_at: dict[str, float] = field(default_factory=dict)


async def watch_audits(settings: Settings, topic: str, seen: Seen, stop: asyncio.Event) -> None:
    """Reads the audit topic from its end: one record per generation, key = generation id,
    timestamp = the agent producer's append time (after decode, attribution and signing)."""
    consumer = AIOKafkaConsumer(**client_kwargs(settings), enable_auto_commit=False, fetch_max_wait_ms=20)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=50, max_records=5_000)
            for records in batches.values():
                for r in records:
                    if r.key is not None:
                        seen.agent_produced.setdefault(r.key.decode(), r.timestamp / 1000.0)
    finally:
        await consumer.stop()


async def poll_visible(pool: asyncpg.Pool, pending: dict[str, None], seen: Seen, stop: asyncio.Event) -> None:
    """Every POLL_SECONDS: which pending generations are complete in a committed snapshot."""
    while not stop.is_set():
        ids = [g for g, _ in zip(pending, range(POLL_MAX_IDS))]
        if ids:
            rows = await pool.fetch(
                "SELECT generation_id, completed_at FROM generations "
                "WHERE generation_id = ANY($1::text[]) AND completed_at IS NOT NULL", ids)
            now = time.time()
            for r in rows:
                seen.visible[r["generation_id"]] = now
                seen.completed_at[r["generation_id"]] = r["completed_at"].timestamp()
                pending.pop(r["generation_id"], None)
        await asyncio.sleep(POLL_SECONDS)


class CpuMeter:
    """User + system CPU seconds of named process groups (a group = pids and their descendants;
    PostgreSQL's exited backends count through the postmaster's reaped-children times)."""

    def __init__(self, groups: dict[str, tuple[int, bool]]) -> None:
        # name -> (pid, whether its descendants count too)
        self.groups = {name: (psutil.Process(pid), deep) for name, (pid, deep) in groups.items()}

    def sample(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, (root, deep) in self.groups.items():
            total = 0.0
            try:
                procs = [root, *root.children(recursive=True)] if deep else [root]
            except psutil.NoSuchProcess:
                procs = []
            for i, proc in enumerate(procs):
                try:
                    t = proc.cpu_times()
                except psutil.NoSuchProcess:
                    continue
                total += t.user + t.system
                if i == 0 and deep:
                    total += t.children_user + t.children_system
            out[name] = total
        return out


def percentiles_ms(values: list[float]) -> dict[str, float]:
    import numpy as np

    if not values:
        return {"p50_ms": float("nan"), "p99_ms": float("nan")}
    a = np.asarray(values) * 1000.0
    return {"p50_ms": round(float(np.percentile(a, 50)), 1), "p99_ms": round(float(np.percentile(a, 99)), 1)}
