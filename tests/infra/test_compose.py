"""docker-compose.yml against the Compose Specification schema (no Docker engine here), and
consistent with the services' settings, the Prometheus targets and its own health wiring."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import yaml

from royalflow.config import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
ROYALFLOW_SERVICES = ("attribution", "attribution-cpu", "ledger", "api")


def accepted_env_names() -> set[str]:
    names = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        names |= set(getattr(alias, "choices", [])) if alias is not None else {f"ROYALFLOW_{name.upper()}"}
    return names


def test_valid_against_the_compose_specification() -> None:
    schema = json.loads((Path(__file__).parent / "compose-spec.json").read_text())
    jsonschema.Draft7Validator(schema).validate(COMPOSE)


def test_images_are_pinned() -> None:
    for name, service in COMPOSE["services"].items():
        image = service.get("image", "")
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin the image ({image!r})"


def test_service_environment_is_what_settings_accept() -> None:
    accepted = accepted_env_names()
    for name in ROYALFLOW_SERVICES:
        env = COMPOSE["services"][name]["environment"]
        unknown = set(env) - accepted
        assert not unknown, f"{name}: variables Settings does not read: {sorted(unknown)}"
        Settings.model_validate({k: v for k, v in env.items() if v and "${" not in str(v)})


def test_no_secret_literals() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for match in re.finditer(r"^\s*[A-Z_]*(PASSWORD|SECRET|TOKEN)[A-Z_]*:\s*(\S+)", text, re.MULTILINE):
        assert match.group(2).startswith("${"), f"secret literal: {match.group(0)}"
    assert all(not line.split("=", 1)[1] for line in (ROOT / ".env.example").read_text().splitlines()
               if "PASSWORD" in line and "=" in line)


def test_ports_match_prometheus_targets_and_healthchecks() -> None:
    prometheus = yaml.safe_load((ROOT / "infra" / "prometheus" / "prometheus.yml").read_text())
    targets = {c["job_name"]: c["static_configs"][0]["targets"][0] for c in prometheus["scrape_configs"]}
    ports = {"attribution": "ROYALFLOW_ATTRIBUTION_PORT", "ledger": "ROYALFLOW_LEDGER_PORT", "api": "ROYALFLOW_API_PORT"}
    for service, variable in ports.items():
        port = COMPOSE["services"][service]["environment"][variable]
        assert targets[service] == f"{service}:{port}"
        assert f"localhost:{port}/readyz" in " ".join(COMPOSE["services"][service]["healthcheck"]["test"])


def test_every_service_has_a_healthcheck_and_health_conditions() -> None:
    for name, service in COMPOSE["services"].items():
        if name != "kafka-init":
            assert "healthcheck" in service, name
        for dependency, condition in service.get("depends_on", {}).items():
            expected = "service_completed_successfully" if dependency == "kafka-init" else "service_healthy"
            assert condition["condition"] == expected, f"{name} -> {dependency}"


def test_gpu_reservation_and_cpu_profile() -> None:
    gpu = COMPOSE["services"]["attribution"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"]
    assert COMPOSE["services"]["attribution-cpu"]["profiles"] == ["cpu"]


def test_topics_have_explicit_partitions_and_retention() -> None:
    script = COMPOSE["services"]["kafka-init"]["command"][0]
    for topic in ("generations", "contributions", "attributions", "deadletter", "corrections", "balances"):
        assert f"royalflow.{topic}.v1" in script
    assert "--partitions" in script and "cleanup.policy=compact" in script
