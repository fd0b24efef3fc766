"""Free ports and waiting for a TCP listener (the embedded broker and PostgreSQL), and a thread's
CPU priority (work at start that must yield to busier work on the host)."""

from __future__ import annotations

import os
import socket
import threading
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


def lower_thread_priority(niceness: int) -> None:
    """The calling thread (only: Linux keeps a priority per thread) at ``niceness`` more than now,
    and so every process it starts from now on. Best effort: a platform without per-thread
    priorities runs the work at the normal one."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + niceness))
    except (AttributeError, OSError):
        pass
