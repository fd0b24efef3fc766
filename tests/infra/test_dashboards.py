"""Every metric a dashboard panel or an alert rule queries is one the services export:
collected from the catalogue statically, and from a live local run's /metrics."""

from __future__ import annotations

import asyncio
import json
import subprocess
import urllib.request
from pathlib import Path

import pytest
import yaml

from royalflow.attribution.families.categorical import demo_manifest, write_manifest
from royalflow.config import Settings
from royalflow.observability import metrics
from royalflow.platform.kafka import ensure_topics
from royalflow.platform.process import free_port
from royalflow.platform.supervisor import Supervisor
from royalflow.producer import Publisher
from royalflow.producer.samples import sample_events

from tests.infra.metric_names import (
    DASHBOARDS,
    INFRA,
    as_promql,
    base_name,
    dashboard_expressions,
    dashboard_metrics,
    exported_names,
    recorded_names,
    recorded_names_in,
    rule_metrics,
)
from tests.infra.test_promtool import promtool


def catalogue_names() -> set[str]:
    """Exposed sample names of the catalogue: counters with _total, histograms with their samples."""
    names = set()
    for name, kind, _, _ in metrics.catalogue():
        names.add(name)
        if kind == "histogram":
            names |= {name + suffix for suffix in ("_bucket", "_sum", "_count")}
    return names


def test_dashboards_and_rules_use_catalogue_metrics() -> None:
    catalogue = catalogue_names()
    used = dashboard_metrics() | rule_metrics()
    standard = {n for n in used if n == "up" or n.startswith("process_")}  # Prometheus / prometheus-client
    missing = sorted(used - standard - catalogue)
    assert not missing, f"not in royalflow/observability/metrics.py: {missing}"
    assert {"royalflow_settlement_latency_seconds_bucket", "royalflow_consumer_lag_records"} <= used


def test_dashboards_use_only_recorded_series_that_rules_define() -> None:
    exprs = [e for exprs in dashboard_expressions().values() for e in exprs]
    unknown = recorded_names_in(exprs) - recorded_names()
    assert not unknown, f"recorded series no rule defines: {sorted(unknown)}"


def test_dashboard_queries_parse_as_promql(tmp_path: Path) -> None:
    """promtool parses every panel query, wrapped as a recording rule."""
    binary = promtool()
    exprs = [as_promql(e) for exprs in dashboard_expressions().values() for e in exprs]
    rules = [{"record": f"dashboard:query:n{i}", "expr": e} for i, e in enumerate(exprs)]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    done = subprocess.run([binary, "check", "rules", str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_dashboards_are_well_formed_and_provisioned() -> None:
    uids = set()
    for name in dashboard_expressions():
        board = json.loads((DASHBOARDS / name).read_text())
        assert board["uid"] not in uids and len(board["uid"]) <= 40, name
        uids.add(board["uid"])
        assert board["title"].startswith("Royalflow — "), name
        variables = {v["name"] for v in board["templating"]["list"]}
        ids = set()
        for panel in board["panels"]:
            assert panel["id"] not in ids, f"{name}: duplicate panel id {panel['id']}"
            ids.add(panel["id"])
            if panel["type"] in ("row", "text"):
                continue
            assert panel["datasource"]["uid"] == "${datasource}" and "datasource" in variables, panel["title"]
            assert panel["targets"] and panel["fieldConfig"]["defaults"].get("unit"), panel["title"]
    assert uids == {"royalflow-ops", "royalflow-finance"}
    provider = yaml.safe_load((INFRA / "grafana" / "provisioning" / "dashboards" / "royalflow.yml").read_text())
    datasource = yaml.safe_load((INFRA / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/etc/grafana/dashboards"
    assert datasource["datasources"][0]["uid"] == "prometheus"


def _scrape(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()


@pytest.mark.integration
async def test_dashboard_metrics_exist_in_live_services(settings: Settings, tmp_path: Path) -> None:
    write_manifest(settings.families_dir, demo_manifest())
    await ensure_topics(settings)
    ports = {"attribution": free_port(), "ledger": free_port(), "api": free_port()}
    live = settings.model_copy(update={"attribution_port": ports["attribution"], "ledger_port": ports["ledger"],
                                       "api_port": ports["api"]})
    with Supervisor(live, tmp_path / "logs") as supervisor:
        supervisor.start("ledger", "attribution", "api")
        async with Publisher(live) as publisher:
            await publisher.publish(sample_events(20, family_id="digits-categorical", family_version="1", run_id="dash"))
            await publisher.publish_raw([(b"bad", b"not json")])
        exported: set[str] = set()
        for _ in range(120):
            await asyncio.sleep(0.5)
            supervisor.check_alive()
            try:
                texts = [_scrape(p) for p in ports.values()]
                urllib.request.urlopen(f"http://127.0.0.1:{ports['api']}/healthz", timeout=5).read()
                texts.append(_scrape(ports["api"]))
            except OSError:
                continue
            exported = set().union(*(exported_names(t) for t in texts))
            if "royalflow_settlement_latency_seconds_count" in exported and "royalflow_records_dead_lettered_total" in exported:
                break
    used = dashboard_metrics() | rule_metrics()
    gpu = {"royalflow_gpu_memory_allocated_bytes", "royalflow_gpu_memory_reserved_bytes",
           "royalflow_gpu_memory_total_bytes"}  # only on CUDA hosts
    missing = {n for n in used - {"up"} - gpu if n not in exported and base_name(n) not in exported}
    assert not missing, f"queried by dashboards/rules but not exported live: {sorted(missing)}"


def _panel_expr(dashboard: str, title: str, ref: str = "A") -> str:
    board = json.loads((DASHBOARDS / dashboard).read_text())
    panel = next(p for p in board["panels"] if p["title"] == title)
    return as_promql(next(t["expr"] for t in panel["targets"] if t["refId"] == ref))


def test_finance_queries_convert_units_and_never_mix_currencies(tmp_path: Path) -> None:
    """promtool evaluates the finance panels on known series: 1 h of USD (0.3 USD/min to owners,
    0.7 to the platform) and JPY (1000 asset units/min = 0.0001 JPY/min to owners)."""
    binary = promtool()
    units = "royalflow_ledger_settled_amount_units_total"
    settled = _panel_expr("finance.json", "Settled in the last 24 h (currency units)")
    shares = "Pool vs platform share, last 24 h (per currency)"
    test = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [
                {"series": f'{units}{{currency="USD", account_type="owner"}}', "values": "0+300000000x60"},
                {"series": f'{units}{{currency="USD", account_type="platform"}}', "values": "0+700000000x60"},
                {"series": f'{units}{{currency="JPY", account_type="owner"}}', "values": "0+1000x60"},
                {"series": 'royalflow_currency_asset_scale{currency="USD", job="ledger"}', "values": "9x60"},
                {"series": 'royalflow_currency_asset_scale{currency="USD", job="api"}', "values": "9x60"},
                {"series": 'royalflow_currency_asset_scale{currency="JPY", job="ledger"}', "values": "7x60"},
            ],
            "promql_expr_test": [
                {"expr": settled, "eval_time": "60m",
                 "exp_samples": [{"labels": '{currency="USD"}', "value": 60}, {"labels": '{currency="JPY"}', "value": 0.006}]},
                {"expr": _panel_expr("finance.json", shares, "A"), "eval_time": "60m",
                 "exp_samples": [{"labels": '{currency="USD"}', "value": 0.3}, {"labels": '{currency="JPY"}', "value": 1}]},
                {"expr": _panel_expr("finance.json", shares, "B"), "eval_time": "60m",
                 "exp_samples": [{"labels": '{currency="USD"}', "value": 0.7}]},
            ],
        }],
    }
    path = tmp_path / "finance.test.yml"
    path.write_text(yaml.safe_dump(test))
    done = subprocess.run([binary, "test", "rules", str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
