"""The local platform: embedded broker and PostgreSQL when the environment names none.

``LocalPlatform(settings).start()`` returns *effective* settings in which
``kafka_bootstrap_servers`` and ``database_url`` are always set: to what the environment said,
or to the embedded servers it started. It writes ``<state_dir>/platform.json`` so that other
``royalflow`` processes (``ledger balances``, ``produce``...) find a running embedded platform.

Restart semantics. The embedded broker keeps topics in memory only, so every start brings an
empty broker. Consumer offsets stored in PostgreSQL describe the *old* broker's logs; kept, they
would point beyond the new logs and nothing new would settle, silently. So:

* embedded broker + embedded PostgreSQL: the ``royalflow`` database is dropped and created
  empty on every start (the server's data folder is kept: initdb is slow). Balances, tokens and
  offsets always describe the same history as the broker.
* embedded broker + your ``DATABASE_URL``: we never drop your database. If it holds stored
  offsets for this topic prefix, start is refused with a :class:`PlatformError` that says why.
* your ``KAFKA_BOOTSTRAP_SERVERS``: the broker keeps its logs, so PostgreSQL is kept as is.

Nothing outlives the platform. ``start()`` takes an exclusive lock on the state folder
(``flock`` on ``platform.lock``, released by the kernel however the holder dies), so a second
platform on the same folder is refused. Under the lock, leftovers of a killed run (processes
recorded in ``<state_dir>/pids`` and proven ours, :mod:`royalflow.platform.leftovers`) are
stopped before anything starts, and a watchdog (:mod:`royalflow.platform.watchdog`) is started
that stops everything recorded there the moment this process dies.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO

import asyncpg

from royalflow.config import Settings
from royalflow.errors import ConfigurationError, PlatformError
from royalflow.platform import leftovers
from royalflow.platform.broker import EmbeddedBroker
from royalflow.platform.database import EmbeddedPostgres, create_database
from royalflow.platform.lifetime import arm_shutdown_deadline
from royalflow.platform.kafka import TOPICS, ensure_topics

log = logging.getLogger(__name__)

DATABASE_NAME = "royalflow"
DESCRIPTOR = "platform.json"
LOCK = "platform.lock"
WATCHDOG_STOP_SECONDS = 5.0


class LocalPlatform:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.state_dir = Path(settings.state_dir).resolve()
        self.broker: EmbeddedBroker | None = None
        self.postgres: EmbeddedPostgres | None = None
        self.lock: IO[str] | None = None
        self.watchdog: subprocess.Popen[bytes] | None = None
        self.stopped_leftovers: list[leftovers.ProcessRecord] = []  # of a killed run, stopped at start

    def start(self) -> Settings:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.lock = _lock(self.state_dir)
        updates: dict[str, str] = {}
        try:
            self.stopped_leftovers = _stop_leftovers(self.state_dir)
            self.watchdog = _start_watchdog(self.state_dir)
            if self.settings.embedded_kafka and not self.settings.embedded_database:
                # Before starting anything: a refusal must not leave a broker behind.
                asyncio.run(_refuse_stored_offsets(str(self.settings.database_url), self.settings))
            if self.settings.embedded_kafka:
                self.broker = EmbeddedBroker(self.state_dir)
                updates["kafka_bootstrap_servers"] = self.broker.start()
            if self.settings.embedded_database:
                self.postgres = EmbeddedPostgres(self.state_dir)
                admin_dsn = self.postgres.start()
                if self.settings.embedded_kafka:
                    # A new in-memory broker: start the books empty too (module docstring).
                    url = asyncio.run(create_database(admin_dsn, DATABASE_NAME))
                    log.info("embedded broker is memory-only: database %s starts empty", DATABASE_NAME)
                else:
                    asyncio.run(_ensure_database(admin_dsn, DATABASE_NAME))
                    url = admin_dsn.rsplit("/", 1)[0] + f"/{DATABASE_NAME}"
                updates["database_url"] = url
            effective = self.settings.model_copy(update=updates)
            asyncio.run(ensure_topics(effective))
        except BaseException:
            self.stop()
            raise
        (self.state_dir / DESCRIPTOR).write_text(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "kafka_bootstrap_servers": effective.kafka_bootstrap_servers,
                    "database_url": effective.database_url,
                }
            )
        )
        self.effective = effective
        return effective

    def stop(self) -> None:
        (self.state_dir / DESCRIPTOR).unlink(missing_ok=True)
        # Broker after database? Order does not matter for correctness: services stop first.
        if self.broker is not None:
            self.broker.stop()
            self.broker = None
        if self.postgres is not None:
            self.postgres.stop()
            self.postgres = None
        if self.watchdog is not None:  # last: until here a kill -9 of ours still needs it
            self.watchdog.terminate()
            try:
                self.watchdog.wait(WATCHDOG_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.watchdog.kill()
                self.watchdog.wait()
            leftovers.forget(self.state_dir, "watchdog", self.watchdog.pid)
            self.watchdog = None
        if self.lock is not None:
            self.lock.close()  # releases the flock
            self.lock = None

    def __enter__(self) -> Settings:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def _ensure_database(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def _lock(state_dir: Path) -> IO[str]:
    """Hold the state folder: two platforms on one folder would stop each other's PostgreSQL and
    wipe its books. The kernel drops the lock when its holder dies, kill -9 included."""
    handle = open(state_dir / LOCK, "a+")  # noqa: SIM115 - held until stop(); close-on-exec
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read(32).strip() or "unknown"
        handle.close()
        raise PlatformError(f"a platform is already running on state dir {state_dir} (pid {holder}); stop it first") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def _stop_leftovers(state_dir: Path) -> list[leftovers.ProcessRecord]:
    """Stop what a killed run on this folder left running (its pids are ports and data folders
    the new run needs), or refuse to start, naming what would not stop."""
    found = leftovers.running(state_dir)
    if not found:
        return []
    log.warning("stopping leftovers of an earlier run on %s: %s", state_dir, ", ".join(f.describe() for f in found))
    left = leftovers.stop(found)
    if left:
        raise PlatformError(f"refusing to start: processes of an earlier run on state dir {state_dir} would not stop: "
                            + ", ".join(f.describe() for f in left))
    return found


def _start_watchdog(state_dir: Path) -> subprocess.Popen[bytes]:
    with open(state_dir / "watchdog.log", "ab") as out:
        watchdog = subprocess.Popen(
            [sys.executable, "-m", "royalflow.platform.watchdog", str(os.getpid()), str(state_dir)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C to the terminal is ours to handle, not its
        )
    leftovers.record(state_dir, "watchdog", watchdog.pid, watchdog.args)  # type: ignore[arg-type]
    return watchdog


async def _refuse_stored_offsets(database_url: str, settings: Settings) -> None:
    """Refuse a new, empty in-memory broker in front of a database that stored offsets of an
    older broker: the ledger would seek beyond the new logs and settle nothing."""
    conn = await asyncpg.connect(database_url)
    try:
        if not await conn.fetchval("SELECT to_regclass('consumer_offsets') IS NOT NULL"):
            return
        topics = [spec.name for spec in TOPICS]
        rows = await conn.fetch(
            "SELECT topic, count(*) AS partitions, max(next_offset) AS highest FROM consumer_offsets "
            "WHERE topic = ANY($1::text[]) AND next_offset > 0 GROUP BY topic ORDER BY topic LIMIT 16",
            [settings.topic(t) for t in topics],
        )
    finally:
        await conn.close()
    if rows:
        found = ", ".join(f"{r['topic']} (offsets up to {r['highest']} on {r['partitions']} partitions)" for r in rows)
        raise PlatformError(
            "refusing to start: the embedded broker is memory-only and starts empty, but DATABASE_URL holds "
            f"stored consumer offsets ahead of it: {found}. New events would never settle. Point "
            "KAFKA_BOOTSTRAP_SERVERS at the broker that holds that history, use an empty database, "
            "or use another ROYALFLOW_TOPIC_PREFIX."
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def resolve_settings(settings: Settings) -> Settings:
    """Fill unset URLs from a running ``royalflow platform up``; fail clearly otherwise."""
    if not settings.embedded_kafka and not settings.embedded_database:
        return settings
    descriptor = Path(settings.state_dir) / DESCRIPTOR
    if descriptor.exists():
        info = json.loads(descriptor.read_text())
        if _alive(int(info["pid"])):
            updates = {}
            if settings.embedded_kafka:
                updates["kafka_bootstrap_servers"] = info["kafka_bootstrap_servers"]
            if settings.embedded_database:
                updates["database_url"] = info["database_url"]
            return settings.model_copy(update=updates)
    raise ConfigurationError(
        "no Kafka/PostgreSQL configured: set KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL, "
        f"or start the embedded platform with `royalflow platform up` (state dir {settings.state_dir})"
    )


def install_signal_handlers(stop: asyncio.Event, *, what: str = "service") -> None:
    """SIGTERM/SIGINT set ``stop`` so services drain and shut down cleanly, and arm the shutdown
    deadline: a drain that waits on an unreachable broker or database ends in a hard exit."""
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        arm_shutdown_deadline(what=what)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, on_signal)
        except (NotImplementedError, RuntimeError):  # not the main thread
            pass


def cli_settings() -> Settings:
    """The settings a command-line process runs with: environment, or a running platform."""
    from royalflow.config import get_settings

    return resolve_settings(get_settings())
