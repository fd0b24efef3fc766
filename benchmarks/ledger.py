#!/usr/bin/env python3
"""Ledger throughput and memory: contributions per second from the topic to committed balances.

    python benchmarks/ledger.py            # 200,000 contributions
    python benchmarks/ledger.py --quick    # 40,000

1. Start an embedded broker and PostgreSQL (or use KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL).
2. Pre-load N valid contributions (generations of 8 owners, one of them hot: in every
   generation) onto <prefix>.contributions.v1, keyed by owner.
3. Start the ledger as its own process (``python -m royalflow ledger run``) and time from its
   first committed contribution to the last: the sustained drain rate, with every batch
   committing postings, balances, hourly buckets, generation progress, outbox rows and offsets.
4. Check the books (reconcile) and report peak RSS of the ledger process (VmHWM).
5. Naive baseline, same run, same machine: the same signed records verified, decoded and
   applied ONE TRANSACTION PER CONTRIBUTION (the same journal code with batches of one, the
   offset stored in each transaction) on a fresh database; the ratio is reported.

Every record is signed as the agent signs it (HMAC-SHA256, key id in the headers), so the
figure includes verification in the ledger's decode step.

Prints a table and writes bench-results/ledger.json.
"""

from __future__ import annotations

from royalflow import topics
import argparse
import asyncio
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "services"))
# The services the ledger PROCESS runs from; --ledger-tree points it at another checkout (the same
# input, signed, is fed to both: a ledger from before signing ignores the headers), which is how
# the before/after figures in the README are measured back to back.
LEDGER_SERVICES = ROOT / "services"

import asyncpg  # noqa: E402

from royalflow.config import Settings  # noqa: E402
from royalflow.contracts import ContributionEvent  # noqa: E402
from royalflow.contracts.decode import decode_ledger_record  # noqa: E402
from royalflow.contracts.events import to_json_bytes  # noqa: E402
from royalflow.contracts.keys import key_material  # noqa: E402
from royalflow.ledger.journal import apply_batch  # noqa: E402
from royalflow.ledger.migrate import migrate  # noqa: E402
from royalflow.ledger.reconcile import reconcile  # noqa: E402
from royalflow.money import apportion  # noqa: E402
from royalflow.platform.broker import EmbeddedBroker  # noqa: E402
from royalflow.platform.database import EmbeddedPostgres, create_database, create_pool  # noqa: E402
from royalflow.platform.kafka import ensure_topics, make_producer  # noqa: E402

sys.path.insert(0, str(ROOT))
from benchmarks.report import print_and_save  # noqa: E402

OWNERS = tuple(f"owner-{i:03d}" for i in range(64))
PARTS_PER_GENERATION = 8
DRAIN_TIMEOUT_SECONDS = 600


def contributions(count: int, seed: int) -> list[tuple[bytes, bytes]]:
    """(key, value) pairs: whole generations whose parts sum exactly to their pool."""
    rng = random.Random(seed)
    base = datetime(2026, 11, 25, 12, tzinfo=UTC)
    out: list[tuple[bytes, bytes]] = []
    g = 0
    while len(out) < count:
        owners = ("owner-hot", *rng.sample(OWNERS, PARTS_PER_GENERATION - 1))
        revenue = rng.randint(1_000_000, 50_000_000)
        pool = revenue * 3 // 10
        weights = [rng.random() for _ in owners]
        amounts = apportion(pool, weights, list(owners))
        # Most events are recent; one in twenty is late, up to 30 days (its own hourly bucket).
        late = rng.random() < 0.05
        when = base - timedelta(seconds=rng.randint(0, 30 * 86400 if late else 3600))
        total = sum(weights)
        for owner, w, a in zip(owners, weights, amounts):
            event = ContributionEvent(
                contribution_id=f"b{g}/{owner}/0", generation_id=f"b{g}", owner_id=owner, occurred_at=when,
                family_id="bench", family_version="1", method="exact", shapley_value=w, std_error=0.0,
                share=w / total, amount=a, currency="USD", asset_scale=9, pool_amount=pool, revenue_amount=revenue,
                parts_total=len(owners),
            )
            out.append((owner.encode(), to_json_bytes(event)))
        g += 1
    return out[: count - count % PARTS_PER_GENERATION]


def signed(settings: Settings, records: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
    """(key, value, headers) as the agent publishes them."""
    signer = key_material(settings).signer(topics.CONTRIBUTIONS)
    return [(k, v, signer.headers(topics.CONTRIBUTIONS, k, v)) for k, v in records]


async def preload(settings: Settings, records: list[tuple[bytes, bytes, list[tuple[str, bytes]]]]) -> float:
    producer = make_producer(settings, linger_ms=50)
    await producer.start()
    started = time.perf_counter()
    try:
        pending = []
        for key, value, headers in records:
            pending.append(await producer.send(settings.topic(topics.CONTRIBUTIONS), value, key=key, headers=headers))
            if len(pending) >= 10_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.perf_counter() - started


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far: less sensitive to other load than wall time."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


async def drain(settings: Settings, expected: int, log_path: Path) -> dict[str, float]:
    env = dict(os.environ)
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=settings.kafka_bootstrap_servers or "", DATABASE_URL=settings.database_url or "",
        ROYALFLOW_TOPIC_PREFIX=settings.topic_prefix, ROYALFLOW_LEDGER_PORT="0",
        ROYALFLOW_STATE_DIR=str(settings.state_dir),  # the ledger verifies with the keys signed with
        PYTHONPATH=os.pathsep.join(filter(None, [str(LEDGER_SERVICES), env.get("PYTHONPATH", "")])),
    )
    with open(log_path, "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "royalflow", "ledger", "run"], env=env,
                                   stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    conn = await asyncpg.connect(settings.database_url)
    first_at = None
    peak = 0
    try:
        deadline = time.monotonic() + DRAIN_TIMEOUT_SECONDS
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"ledger exited with {process.returncode}; see {log_path}")
            peak = max(peak, peak_rss_bytes(process.pid))
            # Progress from the offsets the ledger commits with each batch (one row per partition):
            # every record of the topic is one contribution. A count(*) over contributions here
            # scanned the growing table 20 times a second on the cores under test.
            try:
                count = int(await conn.fetchval(
                    "SELECT COALESCE(sum(next_offset), 0) FROM consumer_offsets WHERE topic = $1",
                    settings.topic(topics.CONTRIBUTIONS)))
            except asyncpg.UndefinedTableError:
                count = 0
            now = time.monotonic()
            if count and first_at is None:
                first_at, first_count, first_cpu = now, count, cpu_seconds(process.pid)
            if count >= expected:
                break
            if now > deadline:
                raise TimeoutError(f"{count}/{expected} settled after {DRAIN_TIMEOUT_SECONDS}s")
            await asyncio.sleep(0.05)
        seconds = now - first_at
        cpu = cpu_seconds(process.pid) - first_cpu
        peak = max(peak, peak_rss_bytes(process.pid))
        booked = await conn.fetchval("SELECT count(*) FROM contributions")  # after the clock: the offsets' word checked
        if booked != expected:
            raise RuntimeError(f"offsets say {count} records settled, contributions hold {booked} of {expected}")
    finally:
        await conn.close()
        process.terminate()
        process.wait(30)
    return {"seconds": seconds, "records": expected - first_count, "peak_rss_bytes": peak, "cpu_seconds": cpu}


async def naive(settings: Settings, dsn: str, records: list[tuple[bytes, bytes, list[tuple[str, bytes]]]]) -> float:
    """Contributions/s when each one is verified, decoded and applied in its own transaction."""
    verifier = key_material(settings).verifier()
    pool = await create_pool(dsn, max_size=1)
    try:
        await migrate(pool)
        topic = settings.topic(topics.CONTRIBUTIONS)
        started = time.perf_counter()
        async with pool.acquire() as conn:
            for offset, (key, value, headers) in enumerate(records):
                event = decode_ledger_record(topics.CONTRIBUTIONS, value, verifier=verifier, key=key, headers=headers)
                async with conn.transaction():
                    await apply_batch(conn, [event], [], {(topic, 0): offset + 1}, group_id="naive", shard=0)
        seconds = time.perf_counter() - started
    finally:
        await pool.close()
    return len(records) / seconds


async def bench(count: int, naive_count: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="royalflow-bench-") as tmp:
        state = Path(tmp)
        broker = EmbeddedBroker(state / "broker") if not os.environ.get("KAFKA_BOOTSTRAP_SERVERS") else None
        postgres = EmbeddedPostgres(state / "postgres") if not os.environ.get("DATABASE_URL") else None
        try:
            bootstrap = broker.start() if broker else os.environ["KAFKA_BOOTSTRAP_SERVERS"]
            admin = postgres.start() if postgres else os.environ["DATABASE_URL"]
            dsn = await create_database(admin, f"bench_{uuid.uuid4().hex[:8]}")
            settings = Settings(kafka_bootstrap_servers=bootstrap, database_url=dsn, state_dir=state / "state",
                                topic_prefix=f"bench{uuid.uuid4().hex[:6]}", topic_partitions=8)
            await ensure_topics(settings)
            pool = await create_pool(dsn, max_size=2)
            await migrate(pool)  # schema first, so the timed drain measures settlement only
            records = signed(settings, contributions(count, seed=1))
            load_seconds = await preload(settings, records)
            result = await drain(settings, len(records), state / "ledger.log")
            problems = await reconcile(pool)
            await pool.close()
            naive_dsn = await create_database(admin, f"naive_{uuid.uuid4().hex[:8]}")
            naive_rate = await naive(settings, naive_dsn, records[:naive_count])
        finally:
            if broker:
                broker.stop()
            if postgres:
                postgres.stop()
    rate = result["records"] / result["seconds"]
    return {
        "contributions": len(records),
        "timed_contributions": int(result["records"]),
        "drain_seconds": round(result["seconds"], 3),
        "contributions_per_second": round(rate),
        "ledger_cpu_us_per_contribution": round(result["cpu_seconds"] / result["records"] * 1e6, 1),
        "signed_records": True,
        "naive_one_transaction_per_contribution_per_second": round(naive_rate),
        "naive_contributions": naive_count,
        "ratio_to_naive": round(rate / naive_rate, 1),
        "goal_contributions_per_second": 20_000,
        "ledger_peak_rss_mib": round(result["peak_rss_bytes"] / 2**20, 1),
        "preload_seconds": round(load_seconds, 2),
        "reconciliation_problems": len(problems),
        "batch_size": Settings().ledger_batch_size,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="40,000 contributions instead of 200,000")
    parser.add_argument("--count", type=int, default=None)
    parser.add_argument("--ledger-tree", type=Path, default=None,
                        help="run the ledger process from this checkout (e.g. a worktree of an older commit)")
    args = parser.parse_args()
    if args.ledger_tree is not None:
        global LEDGER_SERVICES
        LEDGER_SERVICES = args.ledger_tree.resolve() / "services"
    count = args.count or (40_000 if args.quick else 200_000)
    figures = asyncio.run(bench(count, naive_count=2_000 if args.quick else 10_000))
    print_and_save("ledger", "Ledger: topic -> committed balances (one ledger process)", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
