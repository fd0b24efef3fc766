"""The local platform: embedded broker and PostgreSQL when the environment names none.

``LocalPlatform(settings).start()`` returns *effective* settings in which
``kafka_bootstrap_servers`` and ``database_url`` are always set: to what the environment said,
or to the embedded servers it started. It writes ``<state_dir>/platform.json`` so that other
``royalflow`` processes (``ledger balances``, ``produce``...) find a running embedded platform.
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
from royalflow.platform.database import EmbeddedPostgres
from royalflow.platform.kafka import ensure_topics

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
        updates: dict[str, str] = {}
        try:
            if self.settings.embedded_kafka:
                kill_stale(self.state_dir)
                self.broker = EmbeddedBroker(self.state_dir)
                updates["kafka_bootstrap_servers"] = self.broker.start()
            if self.settings.embedded_database:
                self.postgres = EmbeddedPostgres(self.state_dir)
                admin_dsn = self.postgres.start()
                asyncio.run(_ensure_database(admin_dsn, DATABASE_NAME))
                updates["database_url"] = admin_dsn.rsplit("/", 1)[0] + f"/{DATABASE_NAME}"
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
