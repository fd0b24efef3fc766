"""Nothing outlives its platform: children die with their parent, and every service stops
within a bounded time on SIGTERM, also while the broker or PostgreSQL is unreachable.

* :func:`die_with_parent` is a ``preexec_fn``: the Linux parent-death signal
  (``prctl(PR_SET_PDEATHSIG, SIGTERM)``) makes the kernel send SIGTERM to the child the moment
  its parent dies, kill -9 included. The signal follows the parent *thread* that forked the
  child, so children are started from the thread that supervises them (the supervisor's loop).
  Processes that daemonize (PostgreSQL under ``pg_ctl``) cannot use it: the watchdog
  (:mod:`royalflow.platform.watchdog`) stops those.
* :func:`arm_shutdown_deadline` is called by every service's SIGTERM/SIGINT handler: a graceful
  stop that needs a dead broker or database (aiokafka's leave-group and flush, faust's commit,
  asyncpg's close) can wait for its own long timeouts; after the deadline the process exits
  hard, so a supervisor (or an operator) never waits longer than that.
* :func:`bounded` bounds one awaited step of a graceful stop.
* :func:`exit_now` ends a process whose work is stopped, written and closed, without the
  interpreter's teardown (freeing torch's and diffusers' modules: 0.6-1.6 s of CPU measured).
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
SHUTDOWN_DEADLINE_SECONDS = 3.0  # SIGTERM to exit, at most: within the 5 s the platform promises after a crash
STOP_STEP_SECONDS = 1.0  # one awaited step of a graceful stop (close a client, join a helper task)
HARD_EXIT_CODE = 128 + signal.SIGTERM  # what a shell reports for a process ended by SIGTERM

_libc: Any = None
if sys.platform.startswith("linux"):
    try:  # loaded before any fork: the preexec_fn then only makes a system call
        _libc = ctypes.CDLL(None, use_errno=True)
    except OSError:  # pragma: no cover - a libc without symbols; the watchdog still covers us
        _libc = None

_armed = threading.Lock()


def die_with_parent(parent_pid: int) -> Callable[[], None]:
    """A ``preexec_fn`` for ``subprocess.Popen``: SIGTERM to the child when ``parent_pid`` (the
    process calling Popen) dies. Runs in the child between fork and exec."""

    def preexec() -> None:
        if _libc is not None:
            _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        # The parent died between fork and prctl: no signal will ever come, so do not start.
        if os.getppid() != parent_pid:
            os._exit(HARD_EXIT_CODE)

    return preexec


def arm_shutdown_deadline(seconds: float = SHUTDOWN_DEADLINE_SECONDS, *, what: str = "service") -> None:
    """Exit the process hard ``seconds`` from now unless it has exited by then. Idempotent: the
    first call sets the deadline (a second SIGTERM does not push it back)."""
    if not _armed.acquire(blocking=False):
        return

    def hard_exit() -> None:
        # stderr, not the logging module: a lock held by the stuck thread must not stop us.
        os.write(2, f"{what}: graceful stop took over {seconds:.1f}s (a dependency is unreachable?); "
                    f"exiting now\n".encode())
        os._exit(HARD_EXIT_CODE)

    timer = threading.Timer(seconds, hard_exit)
    timer.daemon = True  # a clean exit before the deadline is not held up by the timer
    timer.start()


async def bounded(step: Awaitable[object], what: str, seconds: float = STOP_STEP_SECONDS) -> None:
    """Await one step of a graceful stop for at most ``seconds``; log and go on if it fails or
    takes longer (a stop must not wait on a dependency that is gone)."""
    try:
        await asyncio.wait_for(step, seconds)
    except TimeoutError:
        log.warning("stopping: %s took over %.1fs; skipped", what, seconds)
    except Exception as exc:  # a client failing to close changes nothing now: we are leaving
        log.warning("stopping: %s failed: %s", what, exc)


def exit_now(code: int | str | None) -> None:
    """End the process at once with ``code`` (SystemExit's meaning: None is 0, a text is 1),
    skipping the interpreter's teardown. Only for a command's own process, once its work is
    stopped, written and closed: logging is flushed here, atexit handlers are not run."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else (0 if code is None else 1))
