"""Restart semantics of the embedded platform (README "Configuration").

The embedded broker is memory-only. Restarting the platform on the same state folder must not
keep offsets of the old broker's logs: the embedded database starts empty, and new events
settle. With the embedded broker in front of a database that stored offsets, start is refused
with a message that says why.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from royalflow.attribution.families.categorical import demo_manifest, write_manifest
from royalflow.config import Settings
from royalflow.errors import PlatformError
from royalflow.ledger import queries
from royalflow.ledger.migrate import migrate
from royalflow.ledger.reconcile import reconcile
from royalflow.platform.database import create_pool
from royalflow.platform import leftovers
from royalflow.platform.runtime import DESCRIPTOR, LOCK, LocalPlatform, _lock
from royalflow.platform.supervisor import Supervisor
from royalflow.producer import Publisher
from royalflow.producer.samples import sample_events

pytestmark = pytest.mark.integration

EVENTS_PER_RUN = 20
SETTLE_TIMEOUT_SECONDS = 180


async def _publish_and_settle(settings: Settings, supervisor: Supervisor, run_id: str) -> int:
    """Publish EVENTS_PER_RUN events, wait until exactly those settle; return all settled."""
    events = sample_events(EVENTS_PER_RUN, family_id="digits-categorical", family_version="1", seed=len(run_id), run_id=run_id)
    ids = [e.event_id for e in events]
    async with Publisher(settings) as publisher:
        await publisher.publish(events)
    pool = await create_pool(str(settings.database_url), max_size=1)
    try:
        await migrate(pool)  # the ledger migrates too; whichever is first
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SETTLE_TIMEOUT_SECONDS
        query = "SELECT count(*) FROM generations WHERE generation_id = ANY($1::text[]) AND completed_at IS NOT NULL"
        while (settled := await pool.fetchval(query, ids)) < EVENTS_PER_RUN:
            supervisor.check_alive()
            if loop.time() > deadline:
                raise AssertionError(f"{settled}/{EVENTS_PER_RUN} of {run_id} settled; logs:\n"
                                     + "\n".join(s.tail() for s in supervisor.services.values()))
            await asyncio.sleep(0.5)
        assert await reconcile(pool) == []
        return await queries.settled_generation_count(pool)
    finally:
        await pool.close()


@pytest.fixture
def state_root() -> Iterator[Path]:
    """A folder outside pytest's base temp: as root, PostgreSQL runs as another user, and a
    pytest session starting beside us makes its base temp owner-only again (chmod 0700)."""
    root = Path(tempfile.mkdtemp(prefix="royalflow-restart-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
async def test_restart_on_the_same_state_dir_starts_empty_and_new_events_settle(state_root: Path) -> None:
    tmp_path = state_root
    base = Settings(kafka_bootstrap_servers=None, database_url=None, state_dir=tmp_path / "state",
                    families_dir=tmp_path / "families", topic_partitions=2)
    manifest = demo_manifest()
    assert manifest["family_id"] == "digits-categorical"
    write_manifest(base.families_dir, manifest)
    for run in ("first", "second-run"):
        platform = LocalPlatform(base)
        effective = await asyncio.to_thread(platform.start)
        try:
            with Supervisor(effective, tmp_path / "logs") as supervisor:
                supervisor.start("ledger", "attribution")
                generations = await _publish_and_settle(effective, supervisor, run)
            # Only this run's events: the database did not keep the first run's books or offsets.
            assert generations == EVENTS_PER_RUN, run
        finally:
            await asyncio.to_thread(platform.stop)
    assert (base.state_dir / "pgdata" / "PG_VERSION").exists()  # the server's folder is reused


async def test_embedded_broker_refuses_a_database_with_stored_offsets(fresh_database: str, tmp_path: Path) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    pool = await create_pool(fresh_database, max_size=1)
    try:
        await migrate(pool)
        await pool.execute("INSERT INTO consumer_offsets (group_id, topic, partition, next_offset) VALUES "
                           "('royalflow-ledger', $1, 0, 42)", f"{prefix}.contributions.v1")
    finally:
        await pool.close()
    settings = Settings(kafka_bootstrap_servers=None, database_url=fresh_database, state_dir=tmp_path / "state",
                        topic_prefix=prefix, topic_partitions=1)
    with pytest.raises(PlatformError, match=r"stored consumer offsets ahead of it: .*contributions\.v1 \(offsets up to 42"):
        await asyncio.to_thread(LocalPlatform(settings).start)
    assert leftovers.running(tmp_path / "state") == []  # nothing left running
    assert not (tmp_path / "state" / DESCRIPTOR).exists()

    # Offsets of another topic prefix are another history: this one starts.
    other = settings.model_copy(update={"topic_prefix": f"t{uuid.uuid4().hex[:10]}"})
    platform = LocalPlatform(other)
    effective = await asyncio.to_thread(platform.start)
    try:
        assert effective.kafka_bootstrap_servers and effective.database_url == fresh_database
    finally:
        await asyncio.to_thread(platform.stop)


async def test_a_second_platform_on_a_running_state_dir_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    # Stands for a running `platform up`: it holds the state folder's lock, as start() does.
    holder = subprocess.Popen([sys.executable, "-c", f"""
import fcntl, os, time
lock = open({str(state / LOCK)!r}, "a+")
fcntl.flock(lock, fcntl.LOCK_EX)
lock.write(str(os.getpid())); lock.flush()
print("locked", flush=True)
time.sleep(60)
"""], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        (state / DESCRIPTOR).write_text(json.dumps({"pid": holder.pid, "kafka_bootstrap_servers": "x", "database_url": "y"}))
        settings = Settings(kafka_bootstrap_servers=None, database_url=None, state_dir=state)
        with pytest.raises(PlatformError, match=f"already running on state dir .* \\(pid {holder.pid}\\)"):
            await asyncio.to_thread(LocalPlatform(settings).start)
        assert (state / DESCRIPTOR).exists()  # the running platform's descriptor is left alone
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()  # type: ignore[union-attr]


async def test_a_dead_holder_leaves_no_lock_behind(tmp_path: Path) -> None:
    # A descriptor naming a live process that is not a platform (a reused pid) proves nothing:
    # only the lock does, and the kernel released it when its holder died.
    state = tmp_path / "state"
    state.mkdir()
    unrelated = subprocess.Popen(["sleep", "60"])
    try:
        (state / DESCRIPTOR).write_text(json.dumps({"pid": unrelated.pid, "kafka_bootstrap_servers": "x", "database_url": "y"}))
        (state / LOCK).write_text(str(unrelated.pid))
        lock = _lock(state)
        lock.close()
    finally:
        unrelated.kill()
        unrelated.wait()


async def test_platform_up_help_documents_restart_semantics() -> None:
    from typer.testing import CliRunner

    from royalflow.cli import app

    result = CliRunner().invoke(app, ["platform", "up", "--help"], terminal_width=200)
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "started EMPTY" in text and "refused" in text and "backoff" in text


