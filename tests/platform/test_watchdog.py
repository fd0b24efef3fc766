"""Nothing outlives its platform: after kill -9 of ``royalflow platform up`` no process it
started is left within 5 s (parent-death signal for its children, the watchdog for PostgreSQL),
and the next ``platform up`` on the same state folder settles its first event."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from royalflow.platform import leftovers

from tests.platform.running import PlatformUp, alive, publish_and_settle, state_root

ORPHANS_GONE_SECONDS = 5.0


@pytest.fixture
def root() -> Iterator[Path]:
    yield from state_root("royalflow-crash-")


def test_the_watchdog_stops_the_recorded_processes_when_its_parent_dies(tmp_path: Path) -> None:
    # A parent that starts the watchdog and a recorded "server" in its own session (no
    # parent-death signal: like PostgreSQL under pg_ctl), then blocks until it is killed.
    parent = subprocess.Popen([sys.executable, "-c", f"""
import os, subprocess, sys, time
from pathlib import Path
from royalflow.platform import leftovers
state = Path({str(tmp_path)!r})
server = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
leftovers.record(state, "postgres", server.pid)
watchdog = subprocess.Popen([sys.executable, "-m", "royalflow.platform.watchdog", str(os.getpid()), str(state)],
                            stdout=open(state / "watchdog.log", "ab"), start_new_session=True)
leftovers.record(state, "watchdog", watchdog.pid)
print(server.pid, watchdog.pid, flush=True)
time.sleep(60)
"""], stdout=subprocess.PIPE, text=True)
    try:
        server_pid, watchdog_pid = map(int, parent.stdout.readline().split())  # type: ignore[union-attr]
        time.sleep(0.5)  # the watchdog is up and waiting on its parent
        recorded = {r.pid: " ".join(r.cmdline) for r in leftovers.running(tmp_path)}
        assert set(recorded) == {server_pid, watchdog_pid}
        watchdog_cmdline = recorded[watchdog_pid]
        parent.kill()
        parent.wait()
        started = time.monotonic()
        while {r.pid for r in leftovers.running(tmp_path)} and time.monotonic() - started < ORPHANS_GONE_SECONDS:
            time.sleep(0.05)
        assert leftovers.running(tmp_path) == [], (tmp_path / "watchdog.log").read_text()
        while alive({watchdog_pid: watchdog_cmdline}) and time.monotonic() - started < ORPHANS_GONE_SECONDS:
            time.sleep(0.05)  # it has stopped the server; now it reports and exits
        assert not alive({watchdog_pid: watchdog_cmdline})
        assert "stopped postgres (pid" in (tmp_path / "watchdog.log").read_text()
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        parent.stdout.close()  # type: ignore[union-attr]
        for entry in leftovers.running(tmp_path):
            os.kill(entry.pid, signal.SIGKILL)


@pytest.mark.integration
@pytest.mark.slow
async def test_kill_9_of_platform_up_leaves_nothing_and_a_restart_settles(root: Path) -> None:
    first = PlatformUp(root)
    try:
        first.expect("Ctrl-C to stop.")
        settle_seconds = await publish_and_settle(first.settings, "before-crash")  # every service is up and working
        started = first.processes()
        names = {cmd.split(" -m ")[-1][:40] if " -m " in cmd else cmd[:40] for cmd in started.values()}
        assert any("tansu" in n for n in names) and any("postgres" in n for n in names), names
        assert {"royalflow attribution run", "royalflow ledger run", "royalflow api serve"} <= {n.strip() for n in names}, names
        killed_at = time.monotonic()
        first.process.kill()
        first.process.wait()
        left = alive(started)
        while left and time.monotonic() - killed_at < ORPHANS_GONE_SECONDS:
            time.sleep(0.05)
            left = alive(started)
        gone_seconds = time.monotonic() - killed_at
        print(f"\nkill -9 of platform up: {len(started)} processes (services, broker, PostgreSQL and its backends, "
              f"watchdog) gone in {gone_seconds:.2f}s; first event settled in {settle_seconds:.1f}s")
        assert not left, f"left after {ORPHANS_GONE_SECONDS}s: {left}"
    finally:
        first.stop()
        for pid in alive(first.processes()):
            os.kill(pid, signal.SIGKILL)

    second = PlatformUp(root)  # the same state folder
    try:
        second.expect("Ctrl-C to stop.")
        assert not [line for line in second.seen if "leftover" in line], second.seen  # nothing was left to stop
        settle_seconds = await publish_and_settle(second.settings, "after-crash")
        print(f"restarted platform up settled its first event in {settle_seconds:.1f}s")
    finally:
        second.stop()
    assert second.process.returncode == 0, second.seen
    assert leftovers.running(root / "state") == []
