"""``royalflow platform up`` as a real child process on a state folder, for the tests that kill
it: its output lines, its settings (from the descriptor it writes), every process it started
(found in /proc, not from its own records), and a published event waited for until settled."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg

from royalflow.attribution.families.categorical import demo_manifest, write_manifest
from royalflow.config import Settings
from royalflow.platform.database import create_pool
from royalflow.platform.process import free_port
from royalflow.platform.runtime import DESCRIPTOR
from royalflow.producer import Publisher
from royalflow.producer.samples import sample_events

START_TIMEOUT_SECONDS = 120
SETTLE_TIMEOUT_SECONDS = 120
FAMILY = ("digits-categorical", "1")


class PlatformUp:
    def __init__(self, root: Path) -> None:
        self.root = root
        env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL") and not k.startswith("ROYALFLOW_")}
        env.update(ROYALFLOW_STATE_DIR=str(root / "state"), ROYALFLOW_FAMILIES_DIR=str(root / "families"),
                   ROYALFLOW_TOPIC_PARTITIONS="1", ROYALFLOW_API_PORT=str(free_port()), ROYALFLOW_LEDGER_PORT="0",
                   ROYALFLOW_ATTRIBUTION_PORT="0", PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen([sys.executable, "-m", "royalflow", "platform", "up"], env=env, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.lines: queue.Queue[str] = queue.Queue(maxsize=10_000)
        self.seen: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:  # type: ignore[union-attr]
            self.lines.put(line.rstrip("\n"))

    def expect(self, text: str, timeout_seconds: float = START_TIMEOUT_SECONDS) -> None:
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.process.poll() is not None and self.lines.empty():
                    break
                continue
            self.seen.append(line)
            if text in line:
                return
        raise AssertionError(f"no line with {text!r} within {timeout_seconds}s; got:\n" + "\n".join(self.seen))

    @property
    def settings(self) -> Settings:
        info = json.loads((self.root / "state" / DESCRIPTOR).read_text())
        return Settings(kafka_bootstrap_servers=info["kafka_bootstrap_servers"], database_url=info["database_url"],
                        state_dir=self.root / "state", families_dir=self.root / "families", topic_partitions=1)

    def processes(self) -> dict[int, str]:
        """pid -> command line of every live process this platform started: its descendants, and
        PostgreSQL's postmaster (daemonized by pg_ctl) with its own."""
        table = _process_table()
        roots = {self.process.pid}
        postmaster = self.root / "state" / "pgdata" / "postmaster.pid"
        if postmaster.exists():
            roots.add(int(postmaster.read_text().split("\n", 1)[0]))
        found = set(roots)
        while grown := {pid for pid, (ppid, _) in table.items() if ppid in found} - found:
            found |= grown
        return {pid: table[pid][1] for pid in found - {self.process.pid} if pid in table}

    def stop(self) -> None:
        if self.process.poll() is None:  # the clean way, so that broker and PostgreSQL stop too
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(10)
        self.process.stdout.close()  # type: ignore[union-attr]


def _process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every live process (zombies are dead)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if fields[0] in ("Z", "X"):
                continue
            table[int(entry.name)] = (int(fields[1]), (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip())
        except (OSError, ValueError, IndexError):
            continue
    return table


def alive(pids: dict[int, str]) -> dict[int, str]:
    table = _process_table()
    return {pid: cmd for pid, cmd in pids.items() if pid in table and table[pid][1] == cmd}


async def publish_and_settle(settings: Settings, run_id: str, count: int = 1) -> float:
    """Publish ``count`` events; seconds until all of them are settled in the ledger."""
    events = sample_events(count, family_id=FAMILY[0], family_version=FAMILY[1], seed=len(run_id), run_id=run_id)
    started = time.monotonic()
    async with Publisher(settings) as publisher:
        await publisher.publish(events)
    pool = await create_pool(str(settings.database_url), max_size=1)
    try:
        query = ("SELECT count(*) FROM generations WHERE generation_id = ANY($1::text[]) AND completed_at IS NOT NULL")
        while True:
            try:
                settled = await pool.fetchval(query, [e.event_id for e in events])
            except asyncpg.UndefinedTableError:  # the ledger has not migrated the database yet
                settled = 0
            if settled == count:
                return time.monotonic() - started
            if time.monotonic() - started > SETTLE_TIMEOUT_SECONDS:
                raise AssertionError(f"{settled}/{count} events of {run_id} settled within {SETTLE_TIMEOUT_SECONDS}s")
            await asyncio.sleep(0.2)
    finally:
        await pool.close()


def state_root(prefix: str) -> Iterator[Path]:
    """A state folder with the categorical demo family, OUTSIDE pytest's base temp: as root,
    PostgreSQL runs as another user (see test_restart). For a fixture: ``yield from``."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    write_manifest(folder / "families", demo_manifest())
    yield folder
    shutil.rmtree(folder, ignore_errors=True)
