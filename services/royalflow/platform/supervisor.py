"""Runs the services as child processes (``python -m royalflow <service> run``), restarts the
ones that crash, and stops them.

Used by ``royalflow platform up``, the demo and the integration tests: each service is a real
process with its own consumer-group member, exactly as in production.

Restarts. ``check_alive()`` (call it every second or so) notices a child that exited, schedules
its restart after an exponential backoff (0.5 s, 1 s, 2 s ... at most 30 s) and restarts it on
a later call; the other children keep running. Restarting is safe because every service resumes
from state it keeps outside the process (offsets and idempotency keys in PostgreSQL). A child
that crashes ``max_restarts`` times within ``window_seconds`` is given up on: ``check_alive()``
raises :class:`PlatformError` naming the service, its exit status and its last log lines,
because a crash loop is a bug or a broken dependency that restarting will not fix.

Lifetime. Every child gets the parent-death signal (SIGTERM when the process that started it
dies, kill -9 included) and is recorded in ``<state_dir>/pids`` for the platform's watchdog and
the next start (:mod:`royalflow.platform.lifetime`, :mod:`royalflow.platform.leftovers`). A
service exits within its shutdown deadline of SIGTERM; ``stop()`` SIGKILLs one that does not.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from royalflow.config import Settings
from royalflow.errors import PlatformError
from royalflow.platform import leftovers
from royalflow.platform.lifetime import SHUTDOWN_DEADLINE_SECONDS, die_with_parent

log = logging.getLogger(__name__)

STOP_TIMEOUT_SECONDS = 3 * SHUTDOWN_DEADLINE_SECONDS  # a service exits by its deadline; this is the backstop
TAIL_LINES = 30
TAIL_BYTES = 64 * 1024  # read at most the end of a log, however large it grew


@dataclass(frozen=True)
class RestartPolicy:
    """How often a crashed child is restarted before the supervisor gives up on it."""

    max_restarts: int = 5  # within window_seconds; 0 = never restart
    window_seconds: float = 300.0
    initial_backoff_seconds: float = 0.5
    max_backoff_seconds: float = 30.0

    def backoff_seconds(self, recent_restarts: int) -> float:
        return min(self.initial_backoff_seconds * 2 ** min(recent_restarts, 32), self.max_backoff_seconds)

SERVICE_ARGS: dict[str, tuple[str, ...]] = {
    "attribution": ("attribution", "run"),
    "ledger": ("ledger", "run"),
    "api": ("api", "serve"),
}


def service_kind(name: str) -> str:
    """The service a child runs: its name, or for a replica named ``<service>-<n>`` (a second
    attribution agent, say: another member of the same consumer group) that service."""
    kind, dash, number = name.rpartition("-")
    return kind if dash and number.isdigit() and kind in SERVICE_ARGS else name


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a child process see exactly ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROYALFLOW_")}
    for name, field in Settings.model_fields.items():
        value = getattr(settings, name)
        if value is None:
            continue
        alias = field.validation_alias
        key = alias.choices[0] if alias is not None else f"ROYALFLOW_{name.upper()}"  # type: ignore[union-attr]
        env[str(key)] = str(value)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class ServiceProcess:
    def __init__(self, name: str, settings: Settings, log_dir: Path, extra_args: tuple[str, ...] = ()) -> None:
        if service_kind(name) not in SERVICE_ARGS:
            raise PlatformError(f"unknown service {name!r}; known: {', '.join(SERVICE_ARGS)} (replicas: <service>-2 ...)")
        self.name = name
        self.settings = settings
        self.log_path = Path(log_dir) / f"{name}.log"
        self.args = (*SERVICE_ARGS[service_kind(name)], *extra_args)
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts: deque[float] = deque(maxlen=64)  # monotonic times of restarts
        self.restart_at: float | None = None  # when a crashed child is due to come back

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "royalflow", *self.args],
                env=settings_env(self.settings),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                # Called from the thread that supervises the children (the signal follows it).
                preexec_fn=die_with_parent(os.getpid()),
            )
        leftovers.record(self.settings.state_dir, self.name, self.process.pid, self.process.args)  # type: ignore[arg-type]

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def exit_status(self) -> str:
        code = None if self.process is None else self.process.poll()
        if code is None:
            return "running"
        return f"killed by signal {-code}" if code < 0 else f"exit code {code}"

    def kill(self) -> None:
        """SIGKILL: the crash the fault tests inject."""
        if self.process is not None and self.alive:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        self.terminate()
        self.wait_stopped()

    def terminate(self) -> None:
        """SIGTERM, without waiting: replicas stop side by side (see Supervisor.stop)."""
        if self.process is not None and self.alive:
            self.process.send_signal(signal.SIGTERM)

    def wait_stopped(self) -> None:
        """Wait for the child to exit after terminate(), SIGKILL past STOP_TIMEOUT_SECONDS."""
        if self.process is None:
            return
        try:
            self.process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        leftovers.forget(self.settings.state_dir, self.name, self.process.pid)
        self.process = None

    def tail(self, lines: int = TAIL_LINES) -> str:
        if not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as log_file:
            log_file.seek(max(0, self.log_path.stat().st_size - TAIL_BYTES))
            text = log_file.read(TAIL_BYTES).decode(errors="replace")
        return "\n".join(text.splitlines()[-lines:])


class Supervisor:
    def __init__(
        self, settings: Settings, log_dir: Path, *, policy: RestartPolicy | None = None,
        notify: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.policy = policy or RestartPolicy()
        self.notify = notify or log.warning  # where restart notices go (the CLI prints them)
        self.services: dict[str, ServiceProcess] = {}

    def start(self, *names: str) -> None:
        for name in names:
            service = ServiceProcess(name, self.settings, self.log_dir)
            service.start()
            self.services[name] = service

    def check_alive(self) -> None:
        """Restart crashed children with backoff; raise PlatformError for one given up on."""
        now = time.monotonic()
        for service in self.services.values():
            if service.alive:
                continue
            if service.restart_at is None:
                recent = sum(1 for t in service.restarts if now - t < self.policy.window_seconds)
                if recent >= self.policy.max_restarts:
                    raise PlatformError(
                        f"service {service.name} {service.exit_status} after {recent} restart(s) within "
                        f"{self.policy.window_seconds:.0f}s; giving up. Last log lines ({service.log_path}):\n"
                        f"{service.tail()}"
                    )
                delay = self.policy.backoff_seconds(recent)
                service.restart_at = now + delay
                self.notify(f"service {service.name} {service.exit_status}; restarting in {delay:.1f}s "
                            f"(restart {recent + 1} of at most {self.policy.max_restarts} per "
                            f"{self.policy.window_seconds:.0f}s); log {service.log_path}")
            elif now >= service.restart_at:
                service.restart_at = None
                service.restarts.append(now)
                service.start()

    @property
    def restart_count(self) -> int:
        """Restarts of every child so far (tests and status lines read it)."""
        return sum(len(s.restarts) for s in self.services.values())

    def stop(self) -> None:
        # Reverse start order: consumers downstream stop last and drain what upstream sent.
        # Replicas of one service (attribution, attribution-2, ...) are independent members of
        # one consumer group: they stop side by side, so a stop costs one faust shutdown (2-3 s
        # measured), not one per agent.
        for group in _kind_groups(list(reversed(list(self.services.values())))):
            for service in group:
                service.terminate()
            for service in group:
                service.wait_stopped()
        self.services.clear()

    def __enter__(self) -> "Supervisor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _kind_groups(services: list[ServiceProcess]) -> list[list[ServiceProcess]]:
    """Consecutive services of the same kind, in the given order, as groups."""
    groups: list[list[ServiceProcess]] = []
    for service in services:
        if groups and service_kind(groups[-1][0].name) == service_kind(service.name):
            groups[-1].append(service)
        else:
            groups.append([service])
    return groups


def wait_until(predicate, *, timeout_seconds: float, interval_seconds: float = 0.2, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval_seconds)
    raise PlatformError(f"timed out after {timeout_seconds:.0f}s waiting for {what}")
