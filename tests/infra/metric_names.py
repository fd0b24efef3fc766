"""Metric names queried by the Grafana dashboards and the alert rules, and helpers to compare
them with the catalogue (royalflow/observability/metrics.py) or with a live /metrics scrape."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import yaml

INFRA = Path(__file__).resolve().parents[2] / "infra"
DASHBOARDS = INFRA / "grafana" / "dashboards"
RULES = INFRA / "prometheus" / "rules" / "royalflow.rules.yml"
# Exported names only: a recorded series (job:x:rate5m) has colons, so it never matches.
_NAME = re.compile(r"(?<![:\w])(royalflow_[a-z0-9_]+|process_[a-z0-9_]+|up)(?![:\w])")
_RECORDED = re.compile(r"(?<![\w:])([a-z_]+:[a-z0-9_]+:[a-z0-9_]+)(?![\w:])")
_SAMPLE_SUFFIXES = ("_bucket", "_sum", "_count")
# Grafana's variables, replaced by something PromQL parses (for promtool's syntax check).
_GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h", "$currency": ".*"}


def _panels(panels: list[dict]) -> Iterator[dict]:  # type: ignore[type-arg]
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # panels inside a collapsed row


def dashboard_expressions() -> dict[str, list[str]]:
    """{dashboard file name: every PromQL expression of its panels and query variables}."""
    found = {}
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        exprs = [t["expr"] for p in _panels(board["panels"]) for t in p.get("targets", []) if t.get("expr")]
        for variable in board.get("templating", {}).get("list", []):
            query = variable.get("query")
            if variable.get("type") == "query":
                exprs.append(query["query"] if isinstance(query, dict) else query)
        found[path.name] = exprs
    return found


def rule_expressions() -> list[str]:
    rules = yaml.safe_load(RULES.read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def recorded_names() -> set[str]:
    rules = yaml.safe_load(RULES.read_text())
    return {rule["record"] for group in rules["groups"] for rule in group["rules"] if "record" in rule}


def names_in(exprs: list[str]) -> set[str]:
    return {name for expr in exprs for name in _NAME.findall(expr)}


def recorded_names_in(exprs: list[str]) -> set[str]:
    return {name for expr in exprs for name in _RECORDED.findall(expr)}


def dashboard_metrics() -> set[str]:
    return names_in([e for exprs in dashboard_expressions().values() for e in exprs])


def rule_metrics() -> set[str]:
    return names_in(rule_expressions())


def as_promql(expr: str) -> str:
    """The expression with Grafana's variables replaced, so promtool can parse it."""
    for variable, value in _GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    if "$" in expr:
        raise ValueError(f"unknown Grafana variable in {expr!r}")
    if expr.startswith("label_values("):  # Grafana's variable function, not PromQL
        expr = expr[len("label_values("):].rsplit(",", 1)[0]
    return expr


def base_name(name: str) -> str:
    """royalflow_x_seconds_bucket -> royalflow_x_seconds (histogram samples to their family)."""
    for suffix in _SAMPLE_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def exported_names(metrics_text: str) -> set[str]:
    """Every sample name in a /metrics exposition (families and their _bucket/_sum/_count)."""
    names = set()
    for line in metrics_text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            names.add(name)
            if kind == "counter":  # registered but no labelled child yet: no sample line
                names.add(name.removesuffix("_total") + "_total")
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names
