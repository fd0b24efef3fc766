#!/usr/bin/env python3
"""One entry point for a fresh machine with only Python 3.11+: set up, then run.

    python3 dev.py demo     # create .venv, install, run the main job on the embedded platform
    python3 dev.py test     # create .venv, install (+ promtool, chromium where possible), run the whole suite
                            # on one pytest-xdist worker per core (extra arguments go to pytest)
    python3 dev.py bench    # create .venv, install, run every benchmark in benchmarks/
    python3 dev.py up       # create .venv, install, run the local platform until Ctrl-C

Set-up is idempotent: the install is skipped while pyproject.toml is unchanged.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PY = VENV / "bin" / "python"


def sh(*cmd: str, check: bool = True, **kwargs: object) -> int:
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=check, cwd=ROOT, **kwargs).returncode  # type: ignore[call-overload]


def ensure_venv() -> None:
    if sys.version_info < (3, 11):
        sys.exit(f"royalflow needs Python 3.11+, this is {sys.version.split()[0]}")
    if not PY.exists():
        print(f"creating virtual environment {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:16]
    stamp = VENV / f".installed-{digest}"
    if stamp.exists():
        return
    sh(str(PY), "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    # torch first and alone: the pinned CPU build (a GPU host installs its CUDA build of the
    # same version beforehand; see README "GPU hosts").
    sh(str(PY), "-m", "pip", "install", "--quiet", "torch==2.13.0")
    sh(str(PY), "-m", "pip", "install", "--quiet", "-e", ".[test]")
    for old in VENV.glob(".installed-*"):
        old.unlink()
    stamp.touch()


# Debian package -> (binaries that show it is there, what skips without it). PyPI has neither
# as a binary the tests may use: promtool for the infra tests, chromium for the portal's browser
# tests (playwright drives it; nothing is downloaded: never `playwright install`).
DEBIAN_TOOLS = {
    "prometheus": (("promtool", "prometheus"), "infra tests"),
    "chromium": (("chromium", "chromium-browser"), "the portal's browser tests"),
}


def ensure_debian_tools() -> None:
    """Install the missing DEBIAN_TOOLS with apt-get where we may (root), else say what skips."""
    missing = [pkg for pkg, (binaries, _) in DEBIAN_TOOLS.items() if not any(map(shutil.which, binaries))]
    if missing and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        sh("apt-get", "update", "-qq", check=False, env=env, stdout=subprocess.DEVNULL)
        for package in missing:  # one at a time: a package that fails must not cost the other
            sh("apt-get", "install", "-y", "-qq", "--no-install-recommends", package, check=False, env=env,
               stdout=subprocess.DEVNULL)
    for package in missing:
        binaries, what = DEBIAN_TOOLS[package]
        if not any(map(shutil.which, binaries)):
            print(f"note: {binaries[0]} not available (Debian package {package!r}); {what} will skip", flush=True)


MAX_TEST_WORKERS = 4  # each worker starts its own broker and PostgreSQL


def test_workers(rest: list[str]) -> list[str]:
    """One pytest-xdist worker per core (at most MAX_TEST_WORKERS), unless the caller chose
    (-n / -p no:xdist). Costly shared fixtures stay on one worker: see tests/conftest.py."""
    if any(a.startswith("-n") or a == "--numprocesses" or a.startswith("--numprocesses=") or "no:xdist" in a
           for a in rest):
        return []
    workers = max(1, min(MAX_TEST_WORKERS, os.cpu_count() or 1))
    return ["-n", str(workers)]  # the scheduler: tests/conftest.py


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(__doc__)
        return 0
    command, rest = argv[0], argv[1:]
    ensure_venv()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if command == "demo":
        return sh(str(VENV / "bin" / "royalflow"), "demo", *rest, check=False, env=env)
    if command == "up":
        return sh(str(VENV / "bin" / "royalflow"), "platform", "up", *rest, check=False, env=env)
    if command == "test":
        ensure_debian_tools()
        return sh(str(PY), "-m", "pytest", *test_workers(rest), *rest, check=False, env=env)
    if command == "bench":
        return sh(str(PY), "benchmarks/run.py", *rest, check=False, env=env)
    print(f"unknown command {command!r}\n{__doc__}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
