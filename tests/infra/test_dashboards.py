"""Every metric a dashboard panel or an alert rule queries is one the services export:
collected from the catalogue statically, and from a live local run's /metrics."""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, generate_latest

from royalflow.attribution.categorical import demo_manifest, write_manifest
from royalflow.config import Settings
from royalflow.observability import metrics  # noqa: F401 - registers the catalogue
from royalflow.platform.kafka import ensure_topics
from royalflow.platform.process import free_port
from royalflow.platform.supervisor import Supervisor
from royalflow.producer import Publisher
from royalflow.producer.samples import sample_events

from tests.infra.metric_names import base_name, dashboard_metrics, exported_names, rule_metrics


def test_dashboards_and_rules_use_catalogue_metrics() -> None:
    catalogue = exported_names(generate_latest(REGISTRY).decode())
    used = (dashboard_metrics() | rule_metrics()) - {"up"}
    missing = {name for name in used if name not in catalogue and base_name(name) not in catalogue}
    assert not missing, f"not in the metric catalogue: {sorted(missing)}"


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
    gpu = {"royalflow_gpu_memory_allocated_bytes", "royalflow_gpu_memory_reserved_bytes"}  # only on CUDA hosts
    missing = {n for n in used - {"up"} - gpu if n not in exported and base_name(n) not in exported}
    assert not missing, f"queried by dashboards/rules but not exported live: {sorted(missing)}"
