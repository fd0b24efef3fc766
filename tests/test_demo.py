"""``royalflow demo`` end to end as a user runs it: a real child process on its own state
folder (embedded broker and PostgreSQL), the platform started beside the family and the events,
two attribution agents in one consumer group; every generation settles, the books reconcile,
each phase prints its time, and nothing is left running afterwards."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

DEMO_TIMEOUT_SECONDS = 420


def test_the_demo_settles_with_two_agents_and_leaves_nothing_behind(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL") and not k.startswith("ROYALFLOW_")}
    env.update(ROYALFLOW_STATE_DIR=str(tmp_path / "state"), ROYALFLOW_FAMILIES_DIR=str(tmp_path / "families"),
               ROYALFLOW_TOPIC_PARTITIONS="2", PYTHONUNBUFFERED="1", COLUMNS="200")
    done = subprocess.run([sys.executable, "-m", "royalflow", "demo", "--family", "categorical", "--events", "30",
                           "--agents", "2"], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=DEMO_TIMEOUT_SECONDS, stdin=subprocess.DEVNULL)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert "reconciliation: all invariants hold" in out
    phases = [line.split("s ", 1)[1] for line in out.splitlines() if re.match(r"^\s+\d+\.\ds ", line)]
    assert phases[0] == "model family ready"
    assert phases[-1] == "platform stopped"
    assert any(p.startswith("30 generations settled") for p in phases)
    assert (tmp_path / "state" / "logs" / "attribution-2.log").exists()  # the second agent ran
    assert (tmp_path / "state" / "share-heatmap.png").stat().st_size > 0
    # Nothing outlives the demo: every process it recorded is gone, and so are their records.
    assert not list((tmp_path / "state" / "pids").glob("*.json"))
    leftover = subprocess.run(["pgrep", "-f", str(tmp_path / "state")], capture_output=True, text=True).stdout.split()
    assert leftover == []


def test_one_agent_takes_a_thread_per_core_and_more_agents_share_them(monkeypatch: pytest.MonkeyPatch) -> None:
    from royalflow import demo

    monkeypatch.setattr(demo.os, "cpu_count", lambda: 2)
    assert demo._agent_plan(0, "diffusion") == (1, 2)
    assert demo._agent_plan(2, "diffusion") == (2, 1)
    assert demo._agent_plan(3, "diffusion") == (3, 1)  # never less than one thread
    assert demo._agent_plan(0, "categorical") == (1, 1)  # no models to run side by side
    monkeypatch.setattr(demo.os, "cpu_count", lambda: 64)
    assert demo._agent_plan(0, "diffusion") == (1, demo.MAX_AUTO_CPU_THREADS)
