#!/usr/bin/env python3
"""Nothing outlives its platform: how long the processes of ``royalflow platform up`` live on
after it is killed, and how long each service takes from SIGTERM to exit.

    python benchmarks/shutdown.py [--deps-down-seconds S] [--quick]

Three runs of ``platform up`` (attribution, ledger, API; embedded broker and PostgreSQL) on one
state folder, each after one settled event (every service up and connected):

1. kill -9 of ``platform up``: seconds until the last process it started (services, broker,
   watchdog, PostgreSQL and its backends, found in /proc) is gone;
2. SIGTERM to each service, dependencies up (the supervisor stopped with SIGSTOP, so it
   neither restarts them nor dies);
3. the same with the broker and PostgreSQL killed S seconds before (clients reconnecting).

Observation stops at 40 s ("> 40"). Writes bench-results/shutdown.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

from report import print_and_save
from royalflow.attribution.families.categorical import demo_manifest, write_manifest
from royalflow.config import Settings
from royalflow.platform.process import free_port
from royalflow.producer import Publisher
from royalflow.producer.samples import sample_events

WATCH_SECONDS = 40.0
START_TIMEOUT_SECONDS = 180.0


def processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every live process (zombies are dead)."""
    table = {}
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split() if entry.name.isdigit() else ["X"]
            if fields[0] not in ("Z", "X"):
                table[int(entry.name)] = (int(fields[1]), (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip())
        except (OSError, ValueError, IndexError):
            continue
    return table


def started_by(up: subprocess.Popen[str], state: Path) -> dict[int, str]:
    table = processes()
    found = {up.pid}
    postmaster = state / "pgdata" / "postmaster.pid"
    if postmaster.exists():
        found.add(int(postmaster.read_text().split("\n", 1)[0]))
    while grown := {pid for pid, (ppid, _) in table.items() if ppid in found} - found:
        found |= grown
    return {pid: table[pid][1] for pid in found - {up.pid} if pid in table}


def exit_seconds(watched: dict[int, str], since: float) -> dict[int, float | None]:
    """Seconds from ``since`` until each process is gone; None for one still running at the end."""
    gone: dict[int, float] = {}
    while len(gone) < len(watched) and time.monotonic() - since < WATCH_SECONDS:
        table = processes()
        gone |= {pid: time.monotonic() - since for pid, cmd in watched.items()
                 if pid not in gone and table.get(pid, (0, ""))[1] != cmd}
        time.sleep(0.02)
    return {pid: gone.get(pid) for pid in watched}


async def settle_one(state: Path, families: Path, run_id: str) -> None:
    info = json.loads((state / "platform.json").read_text())
    settings = Settings(kafka_bootstrap_servers=info["kafka_bootstrap_servers"], database_url=info["database_url"],
                        state_dir=state, families_dir=families, topic_partitions=1)
    (event,) = sample_events(1, family_id="digits-categorical", family_version="1", seed=1, run_id=run_id)
    async with Publisher(settings) as publisher:
        await publisher.publish([event])
    conn = await asyncpg.connect(info["database_url"])
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            try:
                if await conn.fetchval("SELECT 1 FROM generations WHERE generation_id = $1 AND completed_at IS NOT NULL", event.event_id):
                    return
            except asyncpg.UndefinedTableError:
                pass
            await asyncio.sleep(0.2)
        raise SystemExit(f"{run_id}: the event did not settle within {START_TIMEOUT_SECONDS:.0f}s")
    finally:
        await conn.close()


def platform_up(root: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL") and not k.startswith("ROYALFLOW_")}
    env.update(ROYALFLOW_STATE_DIR=str(root / "state"), ROYALFLOW_FAMILIES_DIR=str(root / "families"),
               ROYALFLOW_TOPIC_PARTITIONS="1", ROYALFLOW_API_PORT=str(free_port()), ROYALFLOW_LEDGER_PORT="0",
               ROYALFLOW_ATTRIBUTION_PORT="0", PYTHONUNBUFFERED="1")
    up = subprocess.Popen([sys.executable, "-m", "royalflow", "platform", "up"], env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    for line in up.stdout:  # type: ignore[union-attr]
        if line.startswith("Ctrl-C"):
            break
    else:
        raise SystemExit("platform up exited before it was up")
    asyncio.run(settle_one(root / "state", root / "families", f"shutdown-{up.pid}"))
    return up


def finish(up: subprocess.Popen[str], started: dict[int, str]) -> None:
    """kill -9 the platform (stopped or not) and whatever outlived it."""
    if up.poll() is None:
        up.kill()
    up.wait()
    time.sleep(3)  # the watchdog's turn, where there is one
    table = processes()
    for pid, cmd in started.items():
        if table.get(pid, (0, ""))[1] == cmd:
            os.kill(pid, signal.SIGKILL)
    up.stdout.close()  # type: ignore[union-attr]


def sigterm_run(root: Path, deps_down_seconds: float | None) -> dict[str, float | None]:
    up = platform_up(root)
    started = started_by(up, root / "state")
    try:
        os.kill(up.pid, signal.SIGSTOP)
        if deps_down_seconds is not None:
            postmaster = int((root / "state" / "pgdata" / "postmaster.pid").read_text().split("\n", 1)[0])
            for pid, cmd in started.items():
                if "tansu" in cmd or pid == postmaster:
                    os.kill(pid, signal.SIGKILL)
            time.sleep(deps_down_seconds)
        services = {pid: cmd for pid, cmd in started.items() if " -m royalflow " in f"{cmd} " and "watchdog" not in cmd}
        since = time.monotonic()
        for pid in services:
            os.kill(pid, signal.SIGTERM)
        return {services[pid].split(" -m royalflow ")[-1]: s for pid, s in exit_seconds(services, since).items()}
    finally:
        finish(up, started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deps-down-seconds", type=float, default=8.0)
    parser.add_argument("--quick", action="store_true", help="dependencies down 3 s")
    args = parser.parse_args()
    deps_down = 3.0 if args.quick else args.deps_down_seconds
    root = Path(tempfile.mkdtemp(prefix="royalflow-bench-shutdown-"))
    root.chmod(0o755)  # as root, PostgreSQL runs as another user that must reach the folder
    write_manifest(root / "families", demo_manifest())
    figures: dict[str, object] = {}
    try:
        up = platform_up(root)
        started = started_by(up, root / "state")
        killed = time.monotonic()
        up.kill()
        up.wait()
        after_kill = exit_seconds(started, killed)
        finish(up, started)
        outlived = [s for s in after_kill.values() if s is None]
        figures["kill -9 of platform up: processes it started"] = len(after_kill)
        figures["kill -9: still running after 40 s"] = len(outlived)
        figures["kill -9: seconds until the last one was gone"] = "> 40" if outlived else round(max(after_kill.values()), 2)  # type: ignore[type-var]
        for label, down in (("dependencies up", None), (f"broker and PostgreSQL killed {deps_down:.0f} s before", deps_down)):
            for service, seconds in sorted(sigterm_run(root, down).items()):
                figures[f"SIGTERM to exit, {label}: {service}"] = "> 40" if seconds is None else round(seconds, 2)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print_and_save("shutdown", "Nothing outlives its platform (seconds)", figures)


if __name__ == "__main__":
    main()
