"""Metric names used by dashboards and rules, and names exported by the services."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

INFRA = Path(__file__).resolve().parents[2] / "infra"
_NAME = re.compile(r"(?<![:\w])(royalflow_[a-z0-9_]+|up)(?![:\w])")  # recorded series (job:x:rate5m) excluded
_SUFFIXES = ("_bucket", "_sum", "_count", "_total", "_created", "_info")


def dashboard_metrics() -> set[str]:
    names: set[str] = set()
    for path in (INFRA / "grafana" / "dashboards").glob("*.json"):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                names |= set(_NAME.findall(target["expr"]))
    return names


def rule_metrics() -> set[str]:
    rules = yaml.safe_load((INFRA / "prometheus" / "rules" / "royalflow.rules.yml").read_text())
    names: set[str] = set()
    for group in rules["groups"]:
        for rule in group["rules"]:
            names |= set(_NAME.findall(rule["expr"]))
    return names


def base_name(name: str) -> str:
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def exported_names(metrics_text: str) -> set[str]:
    """Every sample name in a /metrics exposition (families and their _bucket/_sum/_count)."""
    names = set()
    for line in metrics_text.splitlines():
        if line.startswith("# TYPE "):
            names.add(line.split()[2])
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names
