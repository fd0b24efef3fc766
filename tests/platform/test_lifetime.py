"""Children die with their parent (the parent-death signal), and every service exits within a
bounded time of SIGTERM, also while the broker and PostgreSQL are gone."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from royalflow.platform.lifetime import HARD_EXIT_CODE, bounded

from tests.platform.running import PlatformUp, alive, publish_and_settle, state_root

SIGTERM_EXIT_SECONDS = 10.0  # the promise: every service, dependencies down
DEPS_DOWN_SECONDS = 3.0  # long enough for every client to notice and start reconnecting


def test_a_child_dies_with_its_parent_even_on_kill_9() -> None:
    parent = subprocess.Popen([sys.executable, "-c", """
import os, subprocess, sys, time
from royalflow.platform.lifetime import die_with_parent
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True,
                         preexec_fn=die_with_parent(os.getpid()))
print(child.pid, flush=True)
time.sleep(60)
"""], stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())  # type: ignore[union-attr]
        command = {child: Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()}
        assert alive(command)
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 2
        while alive(command) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not alive(command), "the child outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        parent.stdout.close()  # type: ignore[union-attr]


def test_the_shutdown_deadline_ends_a_stuck_stop() -> None:
    stuck = subprocess.run([sys.executable, "-c", """
import time
from royalflow.platform.lifetime import arm_shutdown_deadline
arm_shutdown_deadline(0.3, what="stuck")
arm_shutdown_deadline(30, what="again")  # a second SIGTERM does not push the deadline back
time.sleep(60)  # a graceful stop waiting on a dependency that is gone
"""], capture_output=True, text=True, timeout=30, check=False)
    assert stuck.returncode == HARD_EXIT_CODE
    assert "stuck: graceful stop took over 0.3s" in stuck.stderr


async def test_bounded_gives_up_on_a_step_and_goes_on() -> None:
    async def fails() -> None:
        raise OSError("connection refused")

    started = time.monotonic()
    await bounded(asyncio.sleep(30), "a close that never returns", 0.1)
    await bounded(fails(), "a close that fails", 0.1)
    assert time.monotonic() - started < 1


@pytest.fixture
def root() -> Iterator[Path]:
    yield from state_root("royalflow-sigterm-")


@pytest.mark.integration
@pytest.mark.slow
async def test_every_service_exits_within_10s_of_sigterm_with_its_dependencies_down(root: Path) -> None:
    up = PlatformUp(root)
    processes: dict[int, str] = {}
    try:
        up.expect("Ctrl-C to stop.")
        await publish_and_settle(up.settings, "sigterm")  # every service is up and connected
        processes = up.processes()
        services = {pid: cmd for pid, cmd in processes.items() if " -m royalflow " in f"{cmd} " and "watchdog" not in cmd}
        assert len(services) == 3, processes
        # The supervisor stays alive (no parent death) but does nothing (no restarts).
        os.kill(up.process.pid, signal.SIGSTOP)
        postmaster = int((root / "state" / "pgdata" / "postmaster.pid").read_text().split("\n", 1)[0])
        for pid, cmd in processes.items():
            if "tansu" in cmd or pid == postmaster:
                os.kill(pid, signal.SIGKILL)
        await asyncio.sleep(DEPS_DOWN_SECONDS)
        assert alive(services) == services, "a service died of its dependencies instead of waiting for them"
        signalled_at = time.monotonic()
        for pid in services:
            os.kill(pid, signal.SIGTERM)
        exit_seconds: dict[str, float] = {}
        while len(exit_seconds) < len(services) and time.monotonic() - signalled_at < SIGTERM_EXIT_SECONDS:
            for pid, cmd in services.items():
                if cmd not in exit_seconds and not alive({pid: cmd}):
                    exit_seconds[cmd] = time.monotonic() - signalled_at
            await asyncio.sleep(0.05)
        print("\nSIGTERM to exit, broker and PostgreSQL down: "
              + ", ".join(f"{cmd.split(' -m royalflow ')[-1]} {s:.2f}s" for cmd, s in sorted(exit_seconds.items())))
        assert len(exit_seconds) == len(services), f"still running {SIGTERM_EXIT_SECONDS}s after SIGTERM: {alive(services)}"
    finally:
        if up.process.poll() is None:
            up.process.kill()  # stopped or not: kill -9 wakes the watchdog, which stops the rest
            up.process.wait()
        up.stop()
        deadline = time.monotonic() + 5
        while alive(processes) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        for pid in alive(processes):
            os.kill(pid, signal.SIGKILL)
