"""Process records in the state folder: a leftover is stopped only when it is provably ours
(same pid, start time and command line), never a process that merely got its pid."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from royalflow.platform import leftovers
from royalflow.platform.runtime import _stop_leftovers

SLEEP = [sys.executable, "-c", "import time; time.sleep(60)"]


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(SLEEP)
    yield process
    if process.poll() is None:
        process.kill()
    process.wait()


def _gone(process: subprocess.Popen[bytes], seconds: float) -> bool:
    try:
        process.wait(seconds)
    except subprocess.TimeoutExpired:
        return False
    return True


def test_a_recorded_process_is_found_and_stopped(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    leftovers.record(tmp_path, "ledger", sleeper.pid)
    (found,) = leftovers.running(tmp_path)
    assert (found.name, found.pid, found.cmdline) == ("ledger", sleeper.pid, tuple(SLEEP))
    assert leftovers.stop([found]) == []
    assert _gone(sleeper, 1)
    assert leftovers.running(tmp_path) == []
    assert not list(leftovers.pids_dir(tmp_path).glob("*.json"))  # the stale record is dropped


def test_a_reused_pid_is_never_signalled(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    # A record of a dead process whose pid now belongs to someone else: another start time.
    leftovers.record(tmp_path, "api", sleeper.pid)
    path = leftovers.pids_dir(tmp_path) / "api.json"
    data = json.loads(path.read_text())
    path.write_text(json.dumps(data | {"start_ticks": data["start_ticks"] - 1}))
    assert leftovers.running(tmp_path) == []
    # The same pid and start time but another command line is not ours either.
    leftovers.record(tmp_path, "api", sleeper.pid)
    path.write_text(json.dumps(json.loads(path.read_text()) | {"cmdline": ["postgres", "-D", "x"]}))
    assert leftovers.running(tmp_path) == []
    assert not _gone(sleeper, 0.3)  # still running: nothing was sent to it


def test_torn_or_foreign_records_prove_nothing(tmp_path: Path) -> None:
    folder = leftovers.pids_dir(tmp_path)
    folder.mkdir()
    (folder / "broker.json").write_text('{"pid": 1, "start')
    (folder / "ledger.json").write_text('{"pid": "one"}')
    assert leftovers.running(tmp_path) == []


def test_forget_keeps_a_newer_process_record(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    leftovers.record(tmp_path, "ledger", sleeper.pid)
    leftovers.forget(tmp_path, "ledger", sleeper.pid + 1)  # an older instance stopping late
    assert [r.pid for r in leftovers.running(tmp_path)] == [sleeper.pid]
    leftovers.forget(tmp_path, "ledger", sleeper.pid)
    assert leftovers.running(tmp_path) == []


def test_a_process_that_ignores_sigterm_is_killed(tmp_path: Path) -> None:
    stubborn = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                                 "print('ready', flush=True); time.sleep(60)"], stdout=subprocess.PIPE)
    try:
        assert stubborn.stdout is not None and stubborn.stdout.readline() == b"ready\n"
        leftovers.record(tmp_path, "attribution", stubborn.pid)
        started = time.monotonic()
        assert leftovers.stop(leftovers.running(tmp_path), wait_seconds=0.3) == []
        assert _gone(stubborn, 1) and stubborn.returncode == -9
        assert time.monotonic() - started < 1.5
    finally:
        if stubborn.poll() is None:
            stubborn.kill()
        stubborn.wait()
        stubborn.stdout.close()  # type: ignore[union-attr]


def test_a_platform_start_stops_the_leftovers_of_a_killed_run(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    leftovers.record(tmp_path, "api", sleeper.pid)
    stopped = _stop_leftovers(tmp_path)
    assert [(r.name, r.pid) for r in stopped] == [("api", sleeper.pid)]
    assert "api (pid" in stopped[0].describe()
    assert _gone(sleeper, 1)


def test_a_process_recorded_right_after_popen_is_recorded_by_its_real_command_line(tmp_path: Path) -> None:
    # Popen returns before the kernel shows the new command line (/proc reads it empty for a
    # moment): a record taken then would never match the running process again.
    for argv in (None, SLEEP):
        started = [subprocess.Popen(SLEEP) for _ in range(5)]
        try:
            for k, process in enumerate(started):
                leftovers.record(tmp_path, f"p{k}", process.pid, argv)
            assert sorted(r.pid for r in leftovers.running(tmp_path)) == sorted(p.pid for p in started)
            assert {r.cmdline for r in leftovers.running(tmp_path)} == {tuple(SLEEP)}
        finally:
            for process in started:
                process.kill()
                process.wait()
