"""The processes a platform started, recorded in its state folder (``<state_dir>/pids``), so
that leftovers of a killed run are found, proven ours and stopped.

A record is a process id with the process's start time (``/proc/<pid>/stat`` field 22, clock
ticks since boot) and its command line, read when it started. A pid alone is not proof: after a
crash the number may have been given to an unrelated process. Only a live process with the same
start time and command line is stopped; a record that fits nothing running is dropped.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

PIDS_DIR = "pids"
STOP_WAIT_SECONDS = 2.0  # after SIGTERM (SIGQUIT for PostgreSQL) and before SIGKILL
POLL_SECONDS = 0.05
MAX_RECORDS = 64  # a state folder holds a handful; never read an unbounded folder
MAX_RECORD_BYTES = 64 * 1024
CMDLINE_WAIT_SECONDS = 1.0  # for a just-started process to show its command line
CMDLINE_POLL_SECONDS = 0.002
# PostgreSQL's postmaster: SIGQUIT is its immediate shutdown (it stops every backend and exits
# without a checkpoint; the next start recovers from the WAL). SIGTERM would wait for clients.
STOP_SIGNALS = {"postgres": signal.SIGQUIT}


@dataclass(frozen=True)
class ProcessRecord:
    name: str
    pid: int
    start_ticks: int
    cmdline: tuple[str, ...]

    def describe(self) -> str:
        return f"{self.name} (pid {self.pid}: {' '.join(self.cmdline)[:120]})"


def pids_dir(state_dir: Path) -> Path:
    return Path(state_dir) / PIDS_DIR


def _start_ticks(pid: int) -> int | None:
    """The process's start time, or None when it is gone or a zombie (exited, not yet reaped)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else int(fields[19])  # state is field 3, starttime 22


def _cmdline(pid: int) -> tuple[str, ...]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ()
    return tuple(part.decode(errors="replace") for part in raw.split(b"\0") if part)


def record(state_dir: Path, name: str, pid: int, argv: list[str] | None = None) -> None:
    """Note that this platform started ``pid`` as ``name`` (replacing an older record of it);
    ``argv``, when known, is the command line it was started with."""
    ticks = _start_ticks(pid)
    if ticks is None:
        return  # already gone: nothing to find later
    # Popen returns once exec closed the close-on-exec pipe, but the kernel fills in the new
    # command line a moment later: until then /proc shows it empty. Wait for the real one.
    deadline = time.monotonic() + CMDLINE_WAIT_SECONDS
    cmdline = _cmdline(pid)
    while (not cmdline or (argv is not None and cmdline != tuple(argv))) and time.monotonic() < deadline:
        time.sleep(CMDLINE_POLL_SECONDS)
        cmdline = _cmdline(pid)
    folder = pids_dir(state_dir)
    folder.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"pid": pid, "start_ticks": ticks, "cmdline": list(cmdline)})
    temporary = folder / f".{name}.json.tmp"
    temporary.write_text(body)
    temporary.replace(folder / f"{name}.json")  # whole or absent, even if we are killed now


def forget(state_dir: Path, name: str, pid: int | None = None) -> None:
    """Drop ``name``'s record (only if it is still about ``pid``, when given)."""
    path = pids_dir(state_dir) / f"{name}.json"
    if pid is not None:
        found = _read(path)
        if found is not None and found.pid != pid:
            return  # a newer process took the name
    path.unlink(missing_ok=True)


def _read(path: Path) -> ProcessRecord | None:
    try:
        if path.stat().st_size > MAX_RECORD_BYTES:
            return None
        data = json.loads(path.read_text())
        return ProcessRecord(path.stem, int(data["pid"]), int(data["start_ticks"]), tuple(str(a) for a in data["cmdline"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # torn or foreign: proves nothing


def is_running(found: ProcessRecord) -> bool:
    """Is the process of this record still running, the same process (start time, command line)?"""
    return _start_ticks(found.pid) == found.start_ticks and _cmdline(found.pid) == found.cmdline


def running(state_dir: Path, *, exclude: frozenset[int] = frozenset()) -> list[ProcessRecord]:
    """Recorded processes still running, proven ours; stale records are removed."""
    folder = pids_dir(state_dir)
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.glob("*.json"))[:MAX_RECORDS]:
        entry = _read(path)
        if entry is not None and entry.pid not in exclude and entry.pid != os.getpid() and is_running(entry):
            found.append(entry)
        else:
            path.unlink(missing_ok=True)
    return found


def stop(found: list[ProcessRecord], *, wait_seconds: float = STOP_WAIT_SECONDS) -> list[ProcessRecord]:
    """Stop these processes: their stop signal, then SIGKILL after ``wait_seconds`` for those
    still running. Returns the ones that could not be stopped (should be none)."""
    for entry in found:
        _signal(entry, STOP_SIGNALS.get(entry.name, signal.SIGTERM))
    deadline = time.monotonic() + wait_seconds
    left = [e for e in found if is_running(e)]
    while left and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
        left = [e for e in left if is_running(e)]
    for entry in left:
        _signal(entry, signal.SIGKILL)
    deadline = time.monotonic() + wait_seconds
    while left and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
        left = [e for e in left if is_running(e)]
    return left


def _signal(entry: ProcessRecord, sig: signal.Signals) -> None:
    if not is_running(entry):  # checked again right before: never signal a reused pid
        return
    try:
        os.kill(entry.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
