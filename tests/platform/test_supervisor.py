"""The supervisor restarts crashed children with bounded exponential backoff, keeps the others
running, and gives up on a crash loop with an error naming the service and its last log lines.
Under kill -9 of the agent and the ledger, every event still settles exactly once."""

from __future__ import annotations

import asyncio
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from royalflow.attribution.families.categorical import demo_manifest, write_manifest
from royalflow.config import Settings
from royalflow.errors import PlatformError
from royalflow.ledger import queries
from royalflow.ledger.migrate import migrate
from royalflow.ledger.reconcile import reconcile
from royalflow.platform.database import create_pool
from royalflow.platform.deadletter import read_dead_letters
from royalflow.platform.kafka import ensure_topics
from royalflow.platform.supervisor import RestartPolicy, ServiceProcess, Supervisor, service_kind
from royalflow.producer import Publisher
from royalflow.producer.samples import sample_events

EVENTS = 60
SETTLE_TIMEOUT_SECONDS = 120


def test_backoff_doubles_and_is_capped() -> None:
    policy = RestartPolicy(initial_backoff_seconds=0.5, max_backoff_seconds=30)
    assert [policy.backoff_seconds(n) for n in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert policy.backoff_seconds(10**6) == 30  # no overflow however long it crashes


def test_replicas_are_named_service_dash_number(tmp_path: Path) -> None:
    assert service_kind("attribution") == "attribution"
    assert service_kind("attribution-2") == "attribution"
    assert ServiceProcess("attribution-3", Settings(), tmp_path).args == ("attribution", "run")
    assert ServiceProcess("attribution-3", Settings(), tmp_path).log_path == tmp_path / "attribution-3.log"
    for unknown in ("broker", "attribution-two", "broker-2", "-2"):
        with pytest.raises(PlatformError, match="unknown service"):
            ServiceProcess(unknown, Settings(), tmp_path)


_SLOW_TO_STOP = """
import signal, sys, time
from pathlib import Path
out = Path(sys.argv[1])
def stop(*_):
    out.with_suffix(".term").write_text(repr(time.time()))
    time.sleep(0.5)  # a faust worker's shutdown takes seconds
    out.with_suffix(".exit").write_text(repr(time.time()))
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
out.with_suffix(".ready").write_text("")
time.sleep(60)
"""


def test_replicas_stop_side_by_side_and_the_ledger_after_them(tmp_path: Path) -> None:
    supervisor = Supervisor(Settings(state_dir=tmp_path), tmp_path / "logs")
    for name in ("ledger", "attribution", "attribution-2"):  # the start order of `platform up`
        service = ServiceProcess(name, supervisor.settings, tmp_path / "logs")
        service.process = subprocess.Popen([sys.executable, "-c", _SLOW_TO_STOP, str(tmp_path / name)])
        supervisor.services[name] = service
    deadline = time.monotonic() + 30
    while not all((tmp_path / f"{n}.ready").exists() for n in supervisor.services) and time.monotonic() < deadline:
        time.sleep(0.05)
    supervisor.stop()
    at = {f"{n}.{e}": float((tmp_path / f"{n}.{e}").read_text()) for n in ("ledger", "attribution", "attribution-2")
          for e in ("term", "exit")}
    # Both agents were told to stop before either had stopped: one shutdown's time, not two.
    assert at["attribution.term"] < at["attribution-2.exit"] and at["attribution-2.term"] < at["attribution.exit"]
    # The ledger, downstream, was told only once both agents had gone.
    assert at["ledger.term"] >= max(at["attribution.exit"], at["attribution-2.exit"])
    assert supervisor.services == {}


def test_a_crash_loop_is_restarted_with_backoff_then_given_up_with_the_log(tmp_path: Path) -> None:
    # `api serve` with no database and no running platform exits at once: a real crash loop.
    settings = Settings(kafka_bootstrap_servers=None, database_url=None, state_dir=tmp_path / "no-platform")
    notices: list[str] = []
    policy = RestartPolicy(max_restarts=2, window_seconds=60, initial_backoff_seconds=0.05, max_backoff_seconds=1)
    with Supervisor(settings, tmp_path / "logs", policy=policy, notify=notices.append) as supervisor:
        supervisor.start("api")
        deadline = time.monotonic() + 60
        with pytest.raises(PlatformError) as failure:
            while time.monotonic() < deadline:
                supervisor.check_alive()
                time.sleep(0.05)
    message = str(failure.value)
    assert "service api exit code 1 after 2 restart(s) within 60s; giving up" in message
    assert "no Kafka/PostgreSQL configured" in message  # the child's last log lines
    assert supervisor.services == {}  # __exit__ stopped everything
    assert len(notices) == 2
    assert "restarting in 0.1s (restart 1 of at most 2" in notices[0]  # 0.05 s, shown rounded
    assert "restarting in 0.1s (restart 2 of at most 2" in notices[1]


def test_never_restart_policy_fails_on_the_first_crash(tmp_path: Path) -> None:
    settings = Settings(kafka_bootstrap_servers=None, database_url=None, state_dir=tmp_path / "no-platform")
    with Supervisor(settings, tmp_path / "logs", policy=RestartPolicy(max_restarts=0)) as supervisor:
        supervisor.start("api")
        supervisor.services["api"].process.wait(30)  # type: ignore[union-attr]
        with pytest.raises(PlatformError, match="service api exit code 1 after 0 restart"):
            supervisor.check_alive()


async def _wait(predicate, supervisor: Supervisor, what: str, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE_TIMEOUT_SECONDS
    while not await predicate():
        supervisor.check_alive()  # restarts the killed children
        if loop.time() > deadline:
            letters = Counter(f"{d.reason} ({d.source_topic})" for d in await read_dead_letters(settings, timeout_seconds=5))
            raise AssertionError(f"timed out waiting for {what}; dead letters {dict(letters)}; logs:\n"
                                 + "\n".join(s.tail() for s in supervisor.services.values()))
        await asyncio.sleep(0.3)


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("killed", [
    ("ledger",),
    ("ledger", "attribution"),
])
async def test_kill_9_children_come_back_and_events_settle_exactly(settings: Settings, tmp_path: Path, killed: tuple[str, ...]) -> None:
    manifest = demo_manifest()
    write_manifest(settings.families_dir, manifest)
    await ensure_topics(settings)
    events = sample_events(EVENTS, family_id=manifest["family_id"], family_version="1", seed=5, run_id="crash")
    pool = await create_pool(str(settings.database_url), max_size=2)
    policy = RestartPolicy(initial_backoff_seconds=0.2)
    try:
        await migrate(pool)
        with Supervisor(settings, tmp_path / "logs", policy=policy) as supervisor:
            supervisor.start("ledger", "attribution")
            async with Publisher(settings) as publisher:
                await publisher.publish(events[: EVENTS // 2])

            async def some_settled() -> bool:
                return await queries.settled_generation_count(pool) > 0

            await _wait(some_settled, supervisor, "the first settlements", settings)
            first_pids = {name: s.process.pid for name, s in supervisor.services.items()}  # type: ignore[union-attr]
            for name in killed:
                supervisor.services[name].kill()  # SIGKILL mid-stream
            async with Publisher(settings) as publisher:
                await publisher.publish(events[EVENTS // 2 :])
                await publisher.publish(events[:10])  # redeliveries: no effect

            async def all_settled() -> bool:
                settled = await queries.settled_generation_count(pool)
                progress.append(settled)
                return settled >= EVENTS

            progress: list[int] = []

            try:
                await _wait(all_settled, supervisor, f"{EVENTS} settled generations", settings)
            except AssertionError as exc:
                state = await pool.fetchrow("SELECT count(*) AS generations, count(completed_at) AS settled, "
                                            "(SELECT count(*) FROM contributions) AS contributions FROM generations")
                raise AssertionError(f"settled over time {progress[::20]}; {dict(state)}; {exc}") from None
            assert supervisor.restart_count == len(killed)
            assert all(s.alive and (s.process.pid != first_pids[n]) == (n in killed)  # type: ignore[union-attr]
                       for n, s in supervisor.services.items())
        assert await queries.settled_generation_count(pool) == EVENTS
        owners = len(manifest["owners"])
        assert await pool.fetchval("SELECT count(*) FROM contributions") == EVENTS * owners
        totals = await queries.settlement_totals(pool)
        balances = await queries.all_balances(pool)
        assert sum(r["lifetime"] for r in balances) == sum(t["pool"] for t in totals) == sum(e.revenue.amount * 3 // 10 for e in events)
        assert await reconcile(pool) == []
    finally:
        await pool.close()


def _children(pid: int) -> dict[int, str]:
    """pid -> command line of the live children of ``pid`` (Linux /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid and stat.rsplit(")", 1)[1].split()[0] != "Z":
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError, IndexError):
            continue
    return found


def _lines(stream, into: queue.Queue[str]) -> None:  # type: ignore[no-untyped-def]
    for line in stream:
        into.put(line.rstrip("\n"))


def _expect(lines: queue.Queue[str], text: str, timeout_seconds: float, seen: list[str]) -> None:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            continue
        seen.append(line)
        if text in line:
            return
    raise AssertionError(f"no line with {text!r} within {timeout_seconds}s; got:\n" + "\n".join(seen))


@pytest.mark.integration
@pytest.mark.slow
def test_platform_up_restarts_a_killed_child_and_stops_cleanly(tmp_path: Path) -> None:
    root = Path(tempfile.mkdtemp(prefix="royalflow-up-"))  # outside pytest's base temp: see test_restart
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL") and not k.startswith("ROYALFLOW_")}
    env.update(ROYALFLOW_STATE_DIR=str(root / "state"), ROYALFLOW_FAMILIES_DIR=str(root / "families"),
               ROYALFLOW_TOPIC_PARTITIONS="1", PYTHONUNBUFFERED="1")
    up = subprocess.Popen([sys.executable, "-m", "royalflow", "platform", "up", "--services", "ledger"], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
    lines: queue.Queue[str] = queue.Queue(maxsize=10_000)
    reader = threading.Thread(target=_lines, args=(up.stdout, lines), daemon=True)
    reader.start()
    seen: list[str] = []
    try:
        _expect(lines, "Ctrl-C to stop.", 120, seen)
        ledger = [pid for pid, cmd in _children(up.pid).items() if "ledger run" in cmd]
        assert len(ledger) == 1, _children(up.pid)
        os.kill(ledger[0], signal.SIGKILL)
        _expect(lines, "service ledger killed by signal 9; restarting in 0.5s", 30, seen)
        deadline = time.monotonic() + 30
        while not [p for p, cmd in _children(up.pid).items() if "ledger run" in cmd and p != ledger[0]]:
            assert time.monotonic() < deadline, f"ledger not restarted: {_children(up.pid)}"
            time.sleep(0.2)
        assert up.poll() is None  # the platform kept running
        up.send_signal(signal.SIGTERM)
        assert up.wait(90) == 0
        _expect(lines, "stopping...", 5, seen)
        assert not (root / "state" / "platform.json").exists()
    finally:
        if up.poll() is None:  # a failed assertion: stop it the clean way, so broker and PostgreSQL stop too
            up.send_signal(signal.SIGTERM)
            try:
                up.wait(60)
            except subprocess.TimeoutExpired:
                up.kill()
                up.wait()
        reader.join(10)  # EOF once the process is gone
        up.stdout.close()  # type: ignore[union-attr]
        shutil.rmtree(root, ignore_errors=True)
