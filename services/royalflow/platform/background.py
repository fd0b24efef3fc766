"""The platform started on a thread of its own, so that the caller works meanwhile: the demo
trains its model family, or samples its events, while the broker, PostgreSQL and the services
start (on a 2-core host the training uses one core while the base model trains, and sampling one).

The thread lives until :meth:`BackgroundPlatform.stop`: the parent-death signal of the broker
and the services follows the *thread* that started them (lifetime.py), so it must not end
before they do. A child restarted later by ``supervisor.check_alive()`` is started by the
caller's thread, which outlives it too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from royalflow.config import Settings
from royalflow.errors import PlatformError
from royalflow.platform.runtime import LocalPlatform
from royalflow.platform.supervisor import Supervisor

START_TIMEOUT_SECONDS = 300.0  # broker, PostgreSQL (initdb on first use) and service processes
STOP_TIMEOUT_SECONDS = 120.0  # services, broker and PostgreSQL each stop within their own bounds


class BackgroundPlatform:
    """``start()`` returns at once; ``wait()`` gives the effective settings and the supervisor of
    the started services (or raises the start's error); ``stop()`` stops it all."""

    def __init__(self, settings: Settings, services: tuple[str, ...] | Callable[[], tuple[str, ...]], *,
                 notify: Callable[[str], None] | None = None) -> None:
        """``services``: the names to start, or a function that tells them, called on the
        platform's thread once the broker and PostgreSQL are up (it may import what it needs)."""
        self.settings = settings
        self.services = services
        self.notify = notify
        self.started_seconds: float | None = None  # how long the start took (set when ready)
        self.effective: Settings | None = None
        self.supervisor: Supervisor | None = None
        self.stopped_leftovers: list[str] = []  # processes of a killed run, stopped at start
        self._error: BaseException | None = None
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="platform", daemon=False)

    def start(self) -> None:
        self._thread.start()

    def wait(self, timeout_seconds: float = START_TIMEOUT_SECONDS) -> tuple[Settings, Supervisor]:
        if not self._ready.wait(timeout_seconds):
            raise PlatformError(f"the platform did not start within {timeout_seconds:.0f}s")
        if self._error is not None:
            raise self._error
        if self.effective is None or self.supervisor is None:
            raise PlatformError("the platform thread ended without starting")
        return self.effective, self.supervisor

    def request_stop(self) -> None:
        """Begin stopping (services, then broker and PostgreSQL) and return at once."""
        self._stop.set()

    def stop(self) -> None:
        """Stop everything and wait for it."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(STOP_TIMEOUT_SECONDS)

    def _run(self) -> None:
        clock = time.monotonic()
        platform = LocalPlatform(self.settings)
        try:
            effective = platform.start()  # stops what it started if it fails
            self.stopped_leftovers = [r.describe() for r in platform.stopped_leftovers]
            try:
                supervisor = Supervisor(effective, Path(effective.state_dir) / "logs", notify=self.notify)
                try:
                    supervisor.start(*(self.services() if callable(self.services) else self.services))
                    self.effective, self.supervisor = effective, supervisor
                    self.started_seconds = time.monotonic() - clock
                    self._ready.set()
                    self._stop.wait()
                finally:
                    supervisor.stop()
            finally:
                platform.stop()
        except BaseException as exc:  # handed to the caller by wait()
            self._error = exc
        finally:
            self._ready.set()
