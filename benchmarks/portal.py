#!/usr/bin/env python3
"""Owner portal latency: the owner page at 16 concurrent signed-in sessions.

    python benchmarks/portal.py            # 100,000 contributions in the ledger, 100 pages per session
    python benchmarks/portal.py --quick    # 20,000 contributions, 30 pages per session

1. Start an embedded PostgreSQL (or use DATABASE_URL) and settle N contributions through the
   ledger's own journal (``apply_batch``): generations of 8 owners among 64 plus one hot owner
   in every generation, event times spread over the last 30 days; close one USD period halfway,
   so the page also lists a statement and this period's top generations.
2. Start ``royalflow api serve`` (uvicorn, one process) as a child process.
3. Sign 16 owners in through the portal's form (one session each; the hot owner among them) and
   have each session load its owner page (balance, 30-day chart and table, top generations,
   statements) as fast as it can, 16 at a time. Latency is measured at the client, per request,
   from send to the last byte; the target is p99 < 200 ms.

The load generator runs on the same host as the server and PostgreSQL (a 2-core machine shared
with other work): the figures include its CPU. Prints a table and writes bench-results/portal.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import re
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "services"))

import httpx  # noqa: E402

from royalflow.api.auth import create_token  # noqa: E402
from royalflow.attribution.royalty import contribution_id  # noqa: E402
from royalflow.config import Settings  # noqa: E402
from royalflow.contracts import ContributionEvent  # noqa: E402
from royalflow.ledger.journal import apply_batch  # noqa: E402
from royalflow.ledger.migrate import migrate  # noqa: E402
from royalflow.ledger.payouts import close_period  # noqa: E402
from royalflow.money import apportion  # noqa: E402
from royalflow.platform.database import EmbeddedPostgres, create_database, create_pool  # noqa: E402
from royalflow.platform.process import free_port  # noqa: E402
from royalflow.platform.supervisor import ServiceProcess  # noqa: E402

sys.path.insert(0, str(ROOT))
from benchmarks.report import print_and_save  # noqa: E402

OWNERS = tuple(f"owner-{i:03d}" for i in range(64))
PARTS_PER_GENERATION = 8
FAMILIES = (("digits-demo", "1"), ("digits-demo", "2"), ("styles", "1"))
SESSIONS = 16
BATCH_CONTRIBUTIONS = 5000
START_TIMEOUT_SECONDS = 60
CSRF_FIELD = re.compile(r'name="csrf" value="([A-Za-z0-9_-]+)"')


def generations(count: int, seed: int, *, first: datetime) -> list[ContributionEvent]:
    """Whole generations (parts sum exactly to the pool) until ``count`` contributions."""
    rng = random.Random(seed)
    out: list[ContributionEvent] = []
    g = 0
    while len(out) < count:
        owners = ("owner-hot", *rng.sample(OWNERS, PARTS_PER_GENERATION - 1))
        revenue = rng.randint(1_000_000, 50_000_000)
        pool = revenue * 3 // 10
        weights = [rng.random() for _ in owners]
        amounts = apportion(pool, weights, list(owners))
        family, version = FAMILIES[g % len(FAMILIES)]
        when = first + timedelta(seconds=rng.uniform(0, 30 * 86_400 - 3600))
        out += [
            ContributionEvent(
                contribution_id=contribution_id(f"g{g}", o), generation_id=f"g{g}", owner_id=o, occurred_at=when,
                family_id=family, family_version=version, method="exact", shapley_value=w, std_error=0.01,
                share=w / sum(weights), amount=a, currency="USD", asset_scale=9, pool_amount=pool,
                revenue_amount=revenue, parts_total=PARTS_PER_GENERATION,
            )
            for o, w, a in zip(owners, weights, amounts)
        ]
        g += 1
    return out


async def load(pool, records: list[ContributionEvent]) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    for i in range(0, len(records), BATCH_CONTRIBUTIONS):
        chunk = records[i:i + BATCH_CONTRIBUTIONS]
        async with pool.acquire() as conn, conn.transaction():
            await apply_batch(conn, chunk, [], {("bench", 0): i + len(chunk)}, group_id="bench", shard=0)
        if i + BATCH_CONTRIBUTIONS >= len(records) // 2 > i:  # 1. close a period halfway
            await close_period(pool, datetime.now(UTC), currency="USD")
    return time.perf_counter() - started


async def start_api(settings: Settings, log_dir: Path) -> tuple[ServiceProcess, str]:
    port = free_port()
    api = ServiceProcess("api", settings, log_dir, extra_args=("--port", str(port)))
    api.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() < deadline:
            if not api.alive:
                raise RuntimeError(f"api exited:\n{api.tail()}")
            try:
                if (await client.get(f"{base}/readyz")).status_code == 200:
                    return api, base
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    api.stop()
    raise RuntimeError(f"api not ready within {START_TIMEOUT_SECONDS}s:\n{api.tail()}")


async def session(base: str, token: str) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=base, timeout=30)
    form = await client.get("/portal/signin")
    signed = await client.post("/portal/signin", data={"token": token, "csrf": CSRF_FIELD.search(form.text).group(1)})  # type: ignore[union-attr]
    if signed.status_code != 303:
        raise RuntimeError(f"sign-in refused: {signed.status_code}")
    return client


async def browse(client: httpx.AsyncClient, path: str, pages: int, latencies: list[float]) -> None:
    for _ in range(pages):
        started = time.perf_counter()
        response = await client.get(path)
        latencies.append(time.perf_counter() - started)
        if response.status_code != 200 or "Earnings of" not in response.text:
            raise RuntimeError(f"{path}: {response.status_code}")


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """CPU time (user + system) used so far by each process (Linux /proc): the API and the
    database backends, so the figure per page does not depend on what else shares the host."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        out[pid] = (int(fields[11]) + int(fields[12])) / tick
    return out


async def serving_pids(api: ServiceProcess, pool) -> list[int]:  # type: ignore[no-untyped-def]
    rows = await pool.fetch("SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' AND datname = current_database()")
    return [api.process.pid if api.process else 0, *(int(r["pid"]) for r in rows)]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def bench(count: int, pages: int, cache_seconds: float, sessions: int = SESSIONS) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="royalflow-bench-") as tmp:
        state = Path(tmp)
        postgres = EmbeddedPostgres(state / "postgres") if not os.environ.get("DATABASE_URL") else None
        try:
            admin = postgres.start() if postgres else os.environ["DATABASE_URL"]
            dsn = await create_database(admin, f"bench_{uuid.uuid4().hex[:8]}")
            pool = await create_pool(dsn, max_size=2)
            await migrate(pool)
            records = generations(count, seed=1, first=datetime.now(UTC) - timedelta(days=30))
            load_seconds = await load(pool, records)
            owners = ["owner-hot", *OWNERS[: sessions - 1]]
            tokens = [(await create_token(pool, role="owner", owner_id=o))[1] for o in owners]
            hot_rows = await pool.fetchval("SELECT count(*) FROM contributions WHERE owner_id = 'owner-hot'")
            # The API needs no broker; a placeholder satisfies the settings check and is never dialled.
            settings = Settings(database_url=dsn, kafka_bootstrap_servers="127.0.0.1:9", state_dir=state / "state",
                                portal_cache_seconds=cache_seconds)
            api, base = await start_api(settings, state / "logs")
            try:
                clients = [await session(base, t) for t in tokens]
                for c, o in zip(clients, owners):  # 2. warm-up: one page each
                    await browse(c, f"/portal/owners/{o}", 1, [])
                latencies: list[float] = []
                hot: list[float] = []
                started = time.perf_counter()
                cpu_before = cpu_seconds(await serving_pids(api, pool))
                await asyncio.gather(*(browse(c, f"/portal/owners/{o}", pages, hot if o == "owner-hot" else latencies)
                                       for c, o in zip(clients, owners)))
                wall = time.perf_counter() - started
                cpu = sum(cpu_seconds(await serving_pids(api, pool)).values()) - sum(cpu_before.values())
                for c in clients:
                    await c.aclose()
            finally:
                api.stop()
            await pool.close()
        finally:
            if postgres:
                postgres.stop()
    every = latencies + hot
    return {
        "contributions": len(records),
        "hot_owner_contributions": int(hot_rows),
        "sessions": sessions,
        "pages": len(every),
        "p50_ms": round(statistics.median(every) * 1000, 1),
        "p95_ms": round(percentile(every, 0.95) * 1000, 1),
        "p99_ms": round(percentile(every, 0.99) * 1000, 1),
        "max_ms": round(max(every) * 1000, 1),
        "hot_owner_p99_ms": round(percentile(hot, 0.99) * 1000, 1),
        "cpu_seconds_per_page": round(cpu / len(every), 4),
        "pages_per_second": round(len(every) / wall, 1),
        "target_p99_ms": 200,
        "portal_cache_seconds": cache_seconds,
        "load_seconds": round(load_seconds, 1),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="20,000 contributions, 30 pages per session")
    parser.add_argument("--sessions", type=int, default=SESSIONS, help="concurrent signed-in sessions")
    parser.add_argument("--cache-seconds", type=float, default=Settings().portal_cache_seconds,
                        help="ROYALFLOW_PORTAL_CACHE_SECONDS of the server; 0 = every view queries everything")
    args = parser.parse_args()
    figures = asyncio.run(bench(20_000 if args.quick else 100_000, 30 if args.quick else 100, args.cache_seconds, args.sessions))
    print_and_save("portal", "Owner portal: owner page at 16 concurrent sessions", figures)


if __name__ == "__main__":
    main()
