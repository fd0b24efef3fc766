"""Prometheus config and alert rules, checked and unit-tested with promtool (Debian package
'prometheus'; `python3 dev.py test` installs it where it can). In CI they must run."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

INFRA = Path(__file__).resolve().parents[2] / "infra" / "prometheus"


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is missing in CI: install the Debian package 'prometheus'")
        pytest.skip("promtool not installed (Debian package 'prometheus')")
    return path


def run(*args: str) -> str:
    done = subprocess.run([promtool(), *args], cwd=INFRA, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_config_is_valid() -> None:
    assert "SUCCESS" in run("check", "config", "--syntax-only", "prometheus.yml")


def test_rules_are_valid() -> None:
    assert "SUCCESS" in run("check", "rules", "rules/royalflow.rules.yml")


def test_rule_unit_tests_pass() -> None:
    assert "SUCCESS" in run("test", "rules", "tests/royalflow.rules.test.yml")


def test_every_alert_has_summary_runbook_and_a_unit_test() -> None:
    import yaml

    rules = yaml.safe_load((INFRA / "rules" / "royalflow.rules.yml").read_text())
    alerts = [r for g in rules["groups"] for r in g["rules"] if "alert" in r]
    tested = {a["alertname"] for t in yaml.safe_load((INFRA / "tests" / "royalflow.rules.test.yml").read_text())["tests"]
              for a in t.get("alert_rule_test", []) if a.get("exp_alerts")}
    for alert in alerts:
        assert alert["annotations"]["summary"] and alert["annotations"]["runbook"], alert["alert"]
        assert alert["alert"] in tested, f"{alert['alert']} has no firing unit test"
