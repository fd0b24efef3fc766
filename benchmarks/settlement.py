#!/usr/bin/env python3
"""End-to-end settlement: a generation event's publication to its balances being committed,
through the real broker, the faust agent and the ledger (one of each), at a stated load, with
a profile of where the time and the CPU go.

The categorical family (4 owners) is used so that the model is not what is measured (see
benchmarks/attribution.py for model cost).

    python benchmarks/settlement.py [--rate EVENTS_PER_S] [--seconds S] [--quick]
    python benchmarks/settlement.py --sweep [--rates 100,250,...] [--seconds S]

Latency per generation = the first moment its balances are seen committed (a probe polls
PostgreSQL every 10 ms) minus the moment the producer handed the event over. Also shown, for
comparison with older figures: PostgreSQL's now() of the committing transaction (its start)
minus the producer's acknowledgement.

Profile, per rate step:
* timeline per generation (p50/p99): producer + broker (send -> acks=all), agent (ack -> its
  audit record appended to the producer: fetch wait, batch window, decode, attribution,
  signing), hand-off (audit record -> ledger transaction start: agent acks, broker, the
  ledger's fetch and decode/verify, the batch in front), commit (transaction start -> seen);
* CPU per process (psutil): harness (producer and probes), broker, agent, ledger, PostgreSQL,
  in microseconds per generation and in cores;
* once, each stage alone (benchmarks/stages.py): CPU per generation of decode, attribution,
  signing, verify, parse and the ledger's transaction at batch sizes 1 and 100.

--sweep raises the rate step by step until p99 passes 2 s or the backlog (published, not yet
settled) grows, and reports the curve. Writes bench-results/settlement.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.probes import CpuMeter, Seen, percentiles_ms, poll_visible, watch_audits  # noqa: E402
from benchmarks.stages import stage_costs  # noqa: E402
from royalflow import topics  # noqa: E402
from royalflow.attribution.families.categorical import demo_manifest, write_manifest  # noqa: E402
from royalflow.config import Settings  # noqa: E402
from royalflow.contracts.events import to_json_bytes  # noqa: E402
from royalflow.ledger.migrate import migrate  # noqa: E402
from royalflow.platform.database import create_pool  # noqa: E402
from royalflow.platform.kafka import make_producer  # noqa: E402
from royalflow.platform.runtime import LocalPlatform  # noqa: E402
from royalflow.platform.supervisor import Supervisor  # noqa: E402
from royalflow.producer.samples import sample_events  # noqa: E402

OUT = ROOT / "bench-results" / "settlement.json"
P99_LIMIT_SECONDS = 2.0
DRAIN_SECONDS = 120.0  # after a step, its backlog must settle within this
MAX_IN_FLIGHT = 20_000  # unacknowledged sends of the harness producer
BACKLOG_SAMPLE_SECONDS = 0.5
STAGE_SAMPLE = 600  # generations for the isolated stage costs


def _events(count: int, run_id: str) -> list[tuple[bytes, bytes]]:
    manifest = demo_manifest()
    # Content repeats every 200 events (PNG encoding here would dominate the set-up); ids differ.
    base = sample_events(min(count, 200), family_id=manifest["family_id"], family_version="1", seed=2, run_id=run_id)
    out = []
    for i in range(count):
        event = base[i % len(base)].model_copy(update={"event_id": f"{run_id}-{i:07d}"})
        out.append((event.event_id.encode(), to_json_bytes(event)))
    return out


async def step(settings: Settings, supervisor: Supervisor, meter: CpuMeter, pool, rate: float, seconds: float,  # type: ignore[no-untyped-def]
               run_id: str) -> dict[str, object]:
    records = _events(int(rate * seconds), run_id)
    count = len(records)
    seen, pending = Seen(), {}
    sent, acked = [0.0] * count, [0.0] * count
    stop = asyncio.Event()
    audits = asyncio.create_task(watch_audits(settings, settings.topic(topics.ATTRIBUTIONS), seen, stop))
    await asyncio.sleep(1.0)  # the audit watcher is at the end of its topic
    poller = asyncio.create_task(poll_visible(pool, pending, seen, stop))
    backlog: list[tuple[float, int]] = []
    producer = make_producer(settings)
    await producer.start()
    topic = settings.topic(topics.GENERATIONS)
    cpu0, wall0 = meter.sample(), time.perf_counter()
    try:
        start, i, futures = time.perf_counter(), 0, []
        next_sample = start
        while i < count:
            now = time.perf_counter()
            due = min(count, int((now - start) * rate) + 1)
            while i < due:
                key, value = records[i]
                pending[key.decode()] = None
                sent[i] = time.time()
                future = await producer.send(topic, value, key=key)
                future.add_done_callback(lambda _f, i=i: acked.__setitem__(i, time.time()))
                futures.append(future)
                i += 1
            if now >= next_sample:
                supervisor.check_alive()
                backlog.append((now - start, i - len(seen.visible)))
                next_sample += BACKLOG_SAMPLE_SECONDS
            if len(futures) > MAX_IN_FLIGHT:
                await asyncio.gather(*futures)
                futures.clear()
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
        publish_seconds = time.perf_counter() - start
        await asyncio.gather(*futures)
        cpu1, wall1 = meter.sample(), time.perf_counter()  # CPU over the load window only
        deadline = time.perf_counter() + DRAIN_SECONDS
        while pending and time.perf_counter() < deadline:
            supervisor.check_alive()
            await asyncio.sleep(0.2)
    finally:
        await producer.stop()
        stop.set()
        await asyncio.gather(audits, poller, return_exceptions=True)
    return _figures(rate, seconds, records, sent, acked, seen, backlog, publish_seconds,
                    {k: cpu1[k] - cpu0[k] for k in cpu0}, wall1 - wall0)


def _figures(rate, seconds, records, sent, acked, seen, backlog, publish_seconds, cpu, wall) -> dict[str, object]:  # type: ignore[no-untyped-def]
    ids = [k.decode() for k, _ in records]
    done = [(j, g) for j, g in enumerate(ids) if g in seen.visible]
    end_to_end = [seen.visible[g] - sent[j] for j, g in done]
    old = [seen.completed_at[g] - acked[j] for j, g in done]
    timed = [(j, g) for j, g in done if g in seen.agent_produced]
    timeline = {
        "producer+broker (send -> acked)": percentiles_ms([acked[j] - sent[j] for j, _ in done]),
        "agent (acked -> audit record produced)": percentiles_ms([seen.agent_produced[g] - acked[j] for j, g in timed]),
        "hand-off + ledger (produced -> transaction start)": percentiles_ms(
            [seen.completed_at[g] - seen.agent_produced[g] for _, g in timed]),
        "commit (transaction start -> seen committed)": percentiles_ms(
            [seen.visible[g] - seen.completed_at[g] for _, g in done]),
    }
    # Backlog growth: slope of a line through the second half of the samples, events per second.
    half = backlog[len(backlog) // 2:]
    slope = float(np.polyfit([t for t, _ in half], [b for _, b in half], 1)[0]) if len(half) >= 3 else 0.0
    events = len(records)
    e2e = np.asarray(end_to_end)
    return {
        "offered_rate_events_per_second": rate, "seconds": seconds, "events": events, "settled": len(done),
        "achieved_publish_rate_events_per_second": round(events / publish_seconds, 1),
        "latency_p50_ms": round(float(np.percentile(e2e, 50)) * 1000, 1) if len(e2e) else None,
        "latency_p99_ms": round(float(np.percentile(e2e, 99)) * 1000, 1) if len(e2e) else None,
        "latency_max_ms": round(float(e2e.max()) * 1000, 1) if len(e2e) else None,
        "old_definition_completed_minus_ack": percentiles_ms(old),
        "timeline": timeline,
        "backlog_growth_events_per_second": round(slope, 1),
        "backlog_at_end_of_load": backlog[-1][1] if backlog else 0,
        "cpu_us_per_generation": {k: round(v / events * 1e6) for k, v in cpu.items()},
        "cpu_cores": {k: round(v / wall, 2) for k, v in cpu.items()},
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def _stable(result: dict[str, object]) -> bool:
    p99 = result["latency_p99_ms"]
    rate = result["offered_rate_events_per_second"]
    # Growing: the backlog rises by more than 5% of the rate per second over the second half of the
    # load, and ends above half a second's worth of events (below that it is batching noise).
    growing = (result["backlog_growth_events_per_second"] > 0.05 * rate  # type: ignore[operator]
               and result["backlog_at_end_of_load"] > 0.5 * rate)  # type: ignore[operator]
    return (result["settled"] == result["events"] and p99 is not None and p99 < P99_LIMIT_SECONDS * 1000
            and not growing and result["achieved_publish_rate_events_per_second"]  # type: ignore[operator]
            >= 0.95 * result["offered_rate_events_per_second"])  # type: ignore[operator]


def _show(r: dict[str, object]) -> None:
    print(f"\n== {r['offered_rate_events_per_second']:.0f} generations/s for {r['seconds']:.0f} s "
          f"(published at {r['achieved_publish_rate_events_per_second']:.0f}/s, settled {r['settled']}/{r['events']}, "
          f"load {r['load_average_1m']})")
    print(f"   publication -> committed balance: p50 {r['latency_p50_ms']} ms, p99 {r['latency_p99_ms']} ms, "
          f"max {r['latency_max_ms']} ms; backlog growth {r['backlog_growth_events_per_second']}/s")
    for stage, p in r["timeline"].items():  # type: ignore[union-attr]
        print(f"   {stage:<52} p50 {p['p50_ms']:>7} ms  p99 {p['p99_ms']:>7} ms")
    cpu, cores = r["cpu_us_per_generation"], r["cpu_cores"]
    print("   CPU per generation: " + ", ".join(f"{k} {cpu[k]} us ({cores[k]} cores)" for k in cpu))  # type: ignore[index]


async def drive(settings: Settings, supervisor: Supervisor, platform: LocalPlatform, rates: list[float],
                seconds: float, sweep: bool, stages: bool) -> dict[str, object]:
    manifest = demo_manifest()
    pool = await create_pool(settings.database_url or "", max_size=2)
    await migrate(pool)
    meter = CpuMeter({
        "harness": (os.getpid(), False), "broker": (platform.broker._process.pid, False),  # type: ignore[union-attr]
        "agent": (supervisor.services["attribution"].process.pid, True),  # type: ignore[union-attr]
        "ledger": (supervisor.services["ledger"].process.pid, True),  # type: ignore[union-attr]
        "postgres": (platform.postgres._postmaster_pid(), True),  # type: ignore[union-attr]
    })
    await step(settings, supervisor, meter, pool, 50, 1, "warm")  # groups joined, family loaded
    steps = []
    for n, rate in enumerate(rates):
        result = await step(settings, supervisor, meter, pool, rate, seconds, f"load{n}")
        _show(result)
        steps.append(result)
        if sweep and not _stable(result):
            print("   -> p99 over 2 s, backlog growing, or the harness could not publish at the rate: sweep ends")
            break
    out: dict[str, object] = {"steps": steps, "family": f"{manifest['family_id']} ({len(manifest['owners'])} owners)",
                              "cpu_count": os.cpu_count()}
    if sweep:
        stable = [s["offered_rate_events_per_second"] for s in steps if _stable(s)]
        out["sustained_events_per_second"] = max(stable) if stable else 0
    if stages:
        admin = platform.postgres.dsn  # type: ignore[union-attr]
        sample = sample_events(STAGE_SAMPLE, family_id=manifest["family_id"], family_version="1", seed=3, run_id="stage")
        out["stages"] = await stage_costs(settings, admin, sample)
        print("\n== each stage alone (CPU per generation, this process, one thread)")
        for stage, us in out["stages"]["cpu_us_per_generation"].items():  # type: ignore[index]
            print(f"   {stage:<58} {us:>8} us")
        for size, t in out["stages"]["ledger_transaction"].items():  # type: ignore[index]
            print(f"   ledger transaction, {size:<37} {t['median_wall_ms']:>8} ms wall "
                  f"({t['wall_us_per_contribution']} us per contribution, client CPU {t['client_cpu_ms']} ms)")
    await pool.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=100.0, help="generation events per second (default 100)")
    parser.add_argument("--seconds", type=float, default=None, help="duration of each load step (default 30; sweep 20)")
    parser.add_argument("--quick", action="store_true", help="10-second steps")
    parser.add_argument("--sweep", action="store_true", help="raise the rate until p99 > 2 s or the backlog grows")
    parser.add_argument("--rates", default="100,250,500,750,1000,1250,1500,2000", help="the sweep's steps (events/s)")
    parser.add_argument("--logs", type=Path, default=None, help="copy the services' logs here at the end")
    parser.add_argument("--no-stages", action="store_true", help="skip the isolated per-stage costs")
    args = parser.parse_args()
    seconds = 10.0 if args.quick else (args.seconds or (20.0 if args.sweep else 30.0))
    rates = [float(r) for r in args.rates.split(",")] if args.sweep else [args.rate]
    with tempfile.TemporaryDirectory(prefix="royalflow-bench-") as tmp:
        base = Settings(state_dir=Path(tmp), families_dir=Path(tmp) / "families", kafka_bootstrap_servers=None, database_url=None)
        write_manifest(base.families_dir, demo_manifest())
        platform = LocalPlatform(base)
        with platform as settings, Supervisor(settings, Path(tmp) / "logs") as supervisor:
            supervisor.start("ledger", "attribution")
            try:
                result = asyncio.run(drive(settings, supervisor, platform, rates, seconds, args.sweep, not args.no_stages))
            finally:
                if args.logs is not None:
                    shutil.copytree(Path(tmp) / "logs", args.logs, dirs_exist_ok=True)
    result["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {OUT}")


if __name__ == "__main__":
    main()
