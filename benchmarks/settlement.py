#!/usr/bin/env python3
"""End-to-end settlement latency: a generation event's publication to its balances being
committed, through the real broker, the faust agent and the ledger, at a stated load.

The categorical family is used so that the model is not what is measured (see
benchmarks/attribution.py for model cost).

    python benchmarks/settlement.py [--rate EVENTS_PER_S] [--seconds S] [--quick]

Latency per generation = the ledger's completion time of its last part (PostgreSQL clock,
inside the committing transaction) minus the producer's acknowledgement time of the event
(same machine). Writes bench-results/settlement.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from royalflow.attribution.families.categorical import demo_manifest, write_manifest
from royalflow.config import Settings
from royalflow.ledger.migrate import migrate
from royalflow.platform.database import create_pool
from royalflow.platform.runtime import LocalPlatform
from royalflow.platform.supervisor import Supervisor
from royalflow.producer import Publisher
from royalflow.producer.samples import sample_events

OUT = Path(__file__).resolve().parents[1] / "bench-results" / "settlement.json"


async def drive(settings: Settings, supervisor: Supervisor, rate: float, seconds: float) -> dict:
    manifest = demo_manifest()
    count = int(rate * seconds)
    warm = sample_events(50, family_id=manifest["family_id"], family_version="1", seed=1, run_id="warm")
    events = sample_events(count, family_id=manifest["family_id"], family_version="1", seed=2, run_id="load")
    pool = await create_pool(settings.database_url or "", max_size=2)
    await migrate(pool)

    async def settled(prefix: str) -> int:
        return int(await pool.fetchval("SELECT count(*) FROM generations WHERE completed_at IS NOT NULL AND generation_id LIKE $1", prefix + "%"))

    published: dict[str, datetime] = {}
    async with Publisher(settings) as publisher:
        await publisher.publish(warm)
        while await settled("warm") < len(warm):
            supervisor.check_alive()
            await asyncio.sleep(0.2)
        # Paced publication: one event every 1/rate seconds, each acknowledged (acks=all).
        start = time.perf_counter()
        for i, event in enumerate(events):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await publisher.publish([event])
            published[event.event_id] = datetime.now(UTC)
        publish_seconds = time.perf_counter() - start
    deadline = time.perf_counter() + 300
    while await settled("load") < count and time.perf_counter() < deadline:
        supervisor.check_alive()
        await asyncio.sleep(0.2)
    rows = await pool.fetch("SELECT generation_id, completed_at FROM generations WHERE generation_id LIKE 'load%' AND completed_at IS NOT NULL")
    await pool.close()
    latencies = np.array([(r["completed_at"] - published[r["generation_id"]]).total_seconds() for r in rows])
    return {
        "offered_rate_events_per_second": rate, "events": count, "settled": len(rows),
        "achieved_publish_rate_events_per_second": count / publish_seconds,
        "contributions_per_event": len(manifest["owners"]),
        "latency_p50_seconds": float(np.percentile(latencies, 50)), "latency_p99_seconds": float(np.percentile(latencies, 99)),
        "latency_max_seconds": float(latencies.max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=100.0, help="generation events per second (default 100)")
    parser.add_argument("--seconds", type=float, default=30.0, help="duration of the load (default 30)")
    parser.add_argument("--quick", action="store_true", help="10 seconds")
    args = parser.parse_args()
    seconds = 10.0 if args.quick else args.seconds
    with tempfile.TemporaryDirectory(prefix="royalflow-bench-") as tmp:
        base = Settings(state_dir=Path(tmp), families_dir=Path(tmp) / "families", kafka_bootstrap_servers=None, database_url=None)
        write_manifest(base.families_dir, demo_manifest())
        with LocalPlatform(base) as settings, Supervisor(settings, Path(tmp) / "logs") as supervisor:
            supervisor.start("ledger", "attribution")
            result = asyncio.run(drive(settings, supervisor, args.rate, seconds))
    print(f"load: {result['events']} generation events at {result['achieved_publish_rate_events_per_second']:.0f}/s "
          f"({result['contributions_per_event']} contributions each), settled {result['settled']}")
    print(f"publication -> balances committed: p50 {result['latency_p50_seconds'] * 1000:.0f} ms, "
          f"p99 {result['latency_p99_seconds'] * 1000:.0f} ms, max {result['latency_max_seconds'] * 1000:.0f} ms")
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
