"""A real Prometheus server scrapes a live local platform; its query API must show sane
throughput, latency and lag series."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest

from royalflow.attribution.families.categorical import demo_manifest, write_manifest
from royalflow.config import Settings
from royalflow.platform.kafka import ensure_topics
from royalflow.platform.process import free_port, wait_for_port
from royalflow.platform.supervisor import Supervisor
from royalflow.producer import Publisher
from royalflow.producer.samples import sample_events

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RULES = Path(__file__).resolve().parents[2] / "infra" / "prometheus" / "rules" / "royalflow.rules.yml"


def prometheus_binary() -> str:
    path = shutil.which("prometheus")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("prometheus is missing in CI: install the Debian package 'prometheus'")
        pytest.skip("prometheus not installed (Debian package 'prometheus')")
    return path


def query(port: int, expr: str) -> list[dict]:  # type: ignore[type-arg]
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    body = json.loads(urllib.request.urlopen(url, timeout=5).read())
    assert body["status"] == "success", body
    return body["data"]["result"]


async def test_prometheus_sees_throughput_latency_and_lag(settings: Settings, tmp_path: Path) -> None:
    binary = prometheus_binary()
    write_manifest(settings.families_dir, demo_manifest())
    await ensure_topics(settings)
    ports = {"attribution": free_port(), "ledger": free_port(), "api": free_port()}
    live = settings.model_copy(update={f"{k}_port": v for k, v in ports.items()})
    prom_port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],  # the production rules, evaluated on real expositions
        "scrape_configs": [{"job_name": k, "static_configs": [{"targets": [f"127.0.0.1:{p}"]}]} for k, p in ports.items()],
    }
    (tmp_path / "prometheus.yml").write_text(json.dumps(config))
    with Supervisor(live, tmp_path / "logs") as supervisor:
        supervisor.start("ledger", "attribution", "api")
        server = subprocess.Popen(
            [binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{prom_port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_port("127.0.0.1", prom_port, timeout_seconds=30, what="prometheus")
            async with Publisher(live) as publisher:
                for round_ in range(8):  # steady traffic for ~16 s
                    await publisher.publish(sample_events(25, family_id="digits-categorical", family_version="1",
                                                          seed=round_, run_id=f"prom{round_}", start=datetime.now(UTC)))
                    await asyncio.sleep(2)
                    supervisor.check_alive()
            # Scrapes are 1 s apart; under load settlement may trail publication: poll, bounded.
            exprs = {
                "consumed": 'sum(increase(royalflow_records_consumed_total{service="attribution"}[2m]))',
                "postings": "sum(increase(royalflow_ledger_postings_total[2m]))",
                "latency": "histogram_quantile(0.5, sum by (le) (rate(royalflow_settlement_latency_seconds_bucket[2m])))",
            }
            values: dict[str, float] = {}
            for _ in range(90):
                await asyncio.sleep(1)
                results = {k: query(prom_port, e) for k, e in exprs.items()}
                values = {k: float(r[0]["value"][1]) for k, r in results.items() if r}
                if len(values) == 3 and values["consumed"] > 0 and values["postings"] > 0 and values["latency"] == values["latency"]:
                    break
            up = query(prom_port, "up")
            assert {r["metric"]["job"]: r["value"][1] for r in up} == {"attribution": "1", "ledger": "1", "api": "1"}
            assert values.get("consumed", 0) > 0 and values.get("postings", 0) > 0, values
            assert 0 <= values["latency"] < 60, values  # event time to committed balance, live
            lag = query(prom_port, "royalflow_consumer_lag_records")
            assert lag and all(float(r["value"][1]) >= 0 for r in lag)
            # The rules evaluate without errors, and the SLO recording rule matches the
            # histogram's real bucket labels (le="2.0" from prometheus-client).
            url = f"http://127.0.0.1:{prom_port}/api/v1/rules"
            groups = json.loads(urllib.request.urlopen(url, timeout=5).read())["data"]["groups"]
            unhealthy = [(r["name"], r.get("lastError")) for g in groups for r in g["rules"] if r["health"] != "ok"]
            assert groups and not unhealthy, unhealthy
            slow = query(prom_port, 'job:royalflow_attribution_slow_ratio:rate5m{job="attribution"}')
            assert slow and 0 <= float(slow[0]["value"][1]) <= 1, slow
        finally:
            server.terminate()
            server.wait(10)
