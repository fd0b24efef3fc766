"""Free ports and waiting for a TCP listener; used by the embedded broker and PostgreSQL."""

from __future__ import annotations

import socket
import time

from royalflow.errors import PlatformError


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, *, timeout_seconds: float, what: str) -> None:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise PlatformError(f"{what} did not listen on {host}:{port} within {timeout_seconds:.0f}s")
