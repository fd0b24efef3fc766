"""The platform's watchdog: a tiny process that outlives its parent (``royalflow platform up``,
the demo) by exactly as long as it takes to stop what the parent started.

The services die with their parent by the parent-death signal (:mod:`royalflow.platform.lifetime`);
the embedded PostgreSQL cannot (``pg_ctl`` daemonizes it), and a broker started from another
thread might not. So :class:`royalflow.platform.runtime.LocalPlatform` starts this watchdog first:
it waits on a pidfd of its parent (woken by the kernel the moment the parent exits, kill -9
included), then stops every process recorded in the state folder that is still ours
(:mod:`royalflow.platform.leftovers`), and exits. A normal stop sends it SIGTERM: it leaves at once.

Run as ``python -m royalflow.platform.watchdog PARENT_PID STATE_DIR``; it imports nothing heavy.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time
from pathlib import Path

from royalflow.platform import leftovers

POLL_SECONDS = 0.2  # only where pidfds are missing (Linux < 5.3): how often the parent is checked


def wait_for_death(parent_pid: int) -> None:
    """Return once ``parent_pid`` has exited."""
    try:
        pidfd = os.pidfd_open(parent_pid)
    except (AttributeError, OSError):
        pidfd = None
    # Our parent may already be gone (it died before we opened the pidfd): then we were
    # re-parented, and our parent pid is no longer it.
    if os.getppid() != parent_pid:
        return
    if pidfd is not None:
        select.select([pidfd], [], [])  # readable when the process exits
        os.close(pidfd)
        return
    while os.getppid() == parent_pid:  # pragma: no cover - old kernels only
        time.sleep(POLL_SECONDS)


def main(argv: list[str]) -> int:
    parent_pid, state_dir = int(argv[0]), Path(argv[1])
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))  # the platform stopped cleanly
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the parent's to handle
    wait_for_death(parent_pid)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # from now on, finish the job
    started = time.monotonic()
    found = leftovers.running(state_dir, exclude=frozenset({os.getpid()}))
    left = leftovers.stop(found)
    names = ", ".join(f.describe() for f in found) or "nothing"
    print(f"watchdog: parent {parent_pid} exited; stopped {names} in {time.monotonic() - started:.2f}s"
          + (f"; could not stop {', '.join(f.describe() for f in left)}" if left else ""), flush=True)
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
