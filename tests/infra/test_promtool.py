"""Prometheus config and alert rules, checked and unit-tested with promtool (Debian package
'prometheus'; `python3 dev.py test` installs it where it can). In CI (CI=true) they must run:
a missing promtool fails there instead of skipping."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "infra" / "prometheus"
RULES = PROMETHEUS / "rules" / "royalflow.rules.yml"
RULE_TESTS = PROMETHEUS / "tests" / "royalflow.rules.test.yml"
RUNBOOKS = ROOT / "infra" / "runbooks" / "alerts.md"


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        message = "promtool not installed: install the Debian package 'prometheus' (apt-get install prometheus)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI must run the infra checks")
        pytest.skip(message)
    return path


def run(*args: str) -> str:
    done = subprocess.run([promtool(), *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def alerts() -> list[dict]:  # type: ignore[type-arg]
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "alert" in r]


def test_config_is_valid_with_its_rule_files() -> None:
    out = run("check", "config", "prometheus.yml")
    assert "SUCCESS: 1 rule files found" in out and "is valid prometheus config file" in out


def test_rules_are_valid() -> None:
    assert "SUCCESS" in run("check", "rules", str(RULES.relative_to(PROMETHEUS)))


def test_rule_unit_tests_pass() -> None:
    assert "SUCCESS" in run("test", "rules", str(RULE_TESTS.relative_to(PROMETHEUS)))


def test_every_alert_has_severity_summary_runbook_and_a_runbook_section() -> None:
    sections = {line[3:].strip() for line in RUNBOOKS.read_text().splitlines() if line.startswith("## ")}
    for alert in alerts():
        name = alert["alert"]
        assert alert["labels"]["severity"] in ("critical", "warning"), name
        assert alert["annotations"]["summary"] and alert["annotations"]["runbook"], name
        assert name in sections, f"{name}: no '## {name}' section in {RUNBOOKS.name}"
        assert alert["annotations"]["runbook_doc"] == f"infra/runbooks/alerts.md#{name.lower()}", name


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    checks = [c for t in yaml.safe_load(RULE_TESTS.read_text())["tests"] for c in t.get("alert_rule_test", [])]
    firing = {c["alertname"] for c in checks if c.get("exp_alerts")}
    quiet = {c["alertname"] for c in checks if not c.get("exp_alerts")}
    for alert in alerts():
        assert alert["alert"] in firing, f"{alert['alert']} has no firing unit test"
        assert alert["alert"] in quiet, f"{alert['alert']} has no not-firing unit test"


def test_alert_expressions_never_group_by_an_id() -> None:
    for alert in alerts():
        for group in re.findall(r"\b(?:by|on)\s*\(([^)]*)\)", alert["expr"]):
            labels = {label.strip() for label in group.split(",")}
            assert not labels & {"owner", "owner_id", "generation", "generation_id"}, alert["alert"]
