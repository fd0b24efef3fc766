"""Runs the services as child processes (``python -m royalflow <service> run``) and stops them.

Used by ``royalflow platform up``, the demo and the integration tests: each service is a real
process with its own consumer-group member, exactly as in production.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from royalflow.config import Settings
from royalflow.errors import PlatformError

STOP_TIMEOUT_SECONDS = 15.0

SERVICE_ARGS: dict[str, tuple[str, ...]] = {
    "attribution": ("attribution", "run"),
    "ledger": ("ledger", "run"),
    "api": ("api", "serve"),
}


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
        if name not in SERVICE_ARGS:
            raise PlatformError(f"unknown service {name!r}; known: {', '.join(SERVICE_ARGS)}")
        self.name = name
        self.settings = settings
        self.log_path = Path(log_dir) / f"{name}.log"
        self.args = (*SERVICE_ARGS[name], *extra_args)
        self.process: subprocess.Popen[bytes] | None = None

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
            )

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: the crash the fault tests inject."""
        if self.process is not None and self.alive:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process is None:
            return
        if self.alive:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class Supervisor:
    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.services: dict[str, ServiceProcess] = {}

    def start(self, *names: str) -> None:
        for name in names:
            service = ServiceProcess(name, self.settings, self.log_dir)
            service.start()
            self.services[name] = service

    def check_alive(self) -> None:
        for service in self.services.values():
            if not service.alive:
                raise PlatformError(f"service {service.name} exited; last log lines:\n{service.tail()}")

    def stop(self) -> None:
        # Reverse start order: consumers downstream stop last and drain what upstream sent.
        for service in reversed(list(self.services.values())):
            service.stop()
        self.services.clear()

    def __enter__(self) -> "Supervisor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_until(predicate, *, timeout_seconds: float, interval_seconds: float = 0.2, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval_seconds)
    raise PlatformError(f"timed out after {timeout_seconds:.0f}s waiting for {what}")
