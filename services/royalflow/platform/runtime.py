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
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from pathlib import Path

import asyncpg

from royalflow.config import Settings
from royalflow.errors import ConfigurationError, PlatformError
from royalflow.platform.broker import EmbeddedBroker, kill_stale
from royalflow.platform.database import EmbeddedPostgres, create_database
from royalflow.platform.kafka import TOPICS, ensure_topics

log = logging.getLogger(__name__)

DATABASE_NAME = "royalflow"
DESCRIPTOR = "platform.json"


class LocalPlatform:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.state_dir = Path(settings.state_dir).resolve()
        self.broker: EmbeddedBroker | None = None
        self.postgres: EmbeddedPostgres | None = None

    def start(self) -> Settings:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        _refuse_if_running(self.state_dir)
        updates: dict[str, str] = {}
        try:
            if self.settings.embedded_kafka and not self.settings.embedded_database:
                # Before starting anything: a refusal must not leave a broker behind.
                asyncio.run(_refuse_stored_offsets(str(self.settings.database_url), self.settings))
            if self.settings.embedded_kafka:
                kill_stale(self.state_dir)
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


def _refuse_if_running(state_dir: Path) -> None:
    """Two platforms on one state folder would stop each other's PostgreSQL and wipe its books."""
    descriptor = state_dir / DESCRIPTOR
    if not descriptor.exists():
        return
    try:
        pid = int(json.loads(descriptor.read_text())["pid"])
    except (ValueError, KeyError, TypeError):
        return  # a torn descriptor from a killed run: nothing runs behind it
    if pid != os.getpid() and _alive(pid):
        raise PlatformError(f"a platform is already running on state dir {state_dir} (pid {pid}); stop it first")


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


def install_signal_handlers(stop: asyncio.Event) -> None:
    """SIGTERM/SIGINT set ``stop`` so services drain and shut down cleanly."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread
            pass


def cli_settings() -> Settings:
    """The settings a command-line process runs with: environment, or a running platform."""
    from royalflow.config import get_settings

    return resolve_settings(get_settings())
