"""docker-compose.yml, checked without a Docker engine: valid against the Compose Specification
schema, and consistent with the services' settings, CLI, topics, the Prometheus targets, the
Dockerfile and .env.example."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from royalflow.cli import app as cli
from royalflow.config import Settings
from royalflow.platform.kafka import TOPICS, client_kwargs

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
SERVICES = COMPOSE["services"]
ENV_EXAMPLE = (ROOT / ".env.example").read_text()
ROYALFLOW = {"attribution": ["attribution", "run"], "attribution-cpu": ["attribution", "run"],
             "ledger": ["ledger", "run"], "api": ["api", "serve"], "families": ["families", "train"],
             "admin": ["ledger", "reconcile"]}
# The Kafka principal of each royalflow service; the others (api, families) get no Kafka credentials.
PRINCIPALS = {"attribution": "attribution", "attribution-cpu": "attribution", "ledger": "ledger", "admin": "operator"}
PORTS = {"attribution": "ROYALFLOW_ATTRIBUTION_PORT", "ledger": "ROYALFLOW_LEDGER_PORT", "api": "ROYALFLOW_API_PORT"}
ONE_SHOT = {"kafka-init", "families", "admin"}
_VARIABLE = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")
SECRET = re.compile(r"PASSWORD|SECRET|TOKEN|_KEYS$")


def interpolate(value: str, given: dict[str, str]) -> str:
    """Compose's interpolation: ${VAR}, ${VAR:-default}, ${VAR:?error}; $$ is a literal $."""
    def one(match: re.Match[str]) -> str:
        name, operator, argument = match.groups()
        if given.get(name):
            return given[name]
        if operator == ":?":
            raise KeyError(f"{name} is required: {argument}")
        return argument if operator == ":-" else ""
    return _VARIABLE.sub(one, value.replace("$$", "\0")).replace("\0", "$")


def required_variables() -> set[str]:
    return {m.group(1) for m in _VARIABLE.finditer(COMPOSE_TEXT) if m.group(2) == ":?"}


def service_environment(name: str, given: dict[str, str] | None = None) -> dict[str, str]:
    secrets = {v: "s3cret" for v in required_variables()}
    return {k: interpolate(str(v), {**secrets, **(given or {})}) for k, v in SERVICES[name]["environment"].items()}


def settings_for(name: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings exactly as the container would build them from its environment."""
    import os

    for key in list(os.environ):
        if key.startswith("ROYALFLOW_") or key in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL"):
            monkeypatch.delenv(key)
    for key, value in service_environment(name).items():
        monkeypatch.setenv(key, value)
    return Settings()


def accepted_env_names() -> set[str]:
    names = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        names |= set(getattr(alias, "choices", [])) if alias is not None else {f"ROYALFLOW_{name.upper()}"}
    return names


def test_valid_against_the_compose_specification() -> None:
    schema = json.loads((Path(__file__).parent / "compose-spec.json").read_text())
    jsonschema.Draft7Validator(schema).validate(COMPOSE)


def test_images_are_pinned_and_ours_carry_the_project_version() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for name, service in SERVICES.items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and re.match(r"v?\d+\.\d+", tag), f"{name}: pin the image to a version ({image!r})"
        if "build" in service:
            assert repository == "royalflow" and tag.split("-")[0] == version, f"{name}: {image}"


def test_royalflow_services_read_only_settings_they_accept(monkeypatch: pytest.MonkeyPatch) -> None:
    accepted = accepted_env_names()
    for name in ROYALFLOW:
        unknown = set(SERVICES[name]["environment"]) - accepted
        assert not unknown, f"{name}: variables Settings does not read: {sorted(unknown)}"
        settings = settings_for(name, monkeypatch)
        assert settings.kafka_bootstrap_servers == "kafka:9092" and settings.database_url
        assert settings.database_url.endswith("@postgres:5432/royalflow")
        assert settings.families_dir == Path("/families")


def test_kafka_sasl_settings_are_accepted_by_the_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    broker = SERVICES["kafka"]["environment"]
    jaas = SERVICES["kafka"]["command"][0]
    for name in ROYALFLOW:
        settings = settings_for(name, monkeypatch)
        assert (settings.kafka_security_protocol, settings.kafka_sasl_mechanism) == ("SASL_PLAINTEXT", "PLAIN")
        if name not in PRINCIPALS:  # the API reads PostgreSQL only; the trainer reads files
            assert settings.kafka_sasl_username is None and settings.kafka_sasl_password is None, name
            continue
        kwargs = client_kwargs(settings)  # raises on an incomplete SASL configuration
        principal = PRINCIPALS[name]
        assert kwargs["sasl_plain_username"] == principal, name
        # The service's password variable is the one the broker's JAAS entry for it reads.
        variable = _VARIABLE.search(SERVICES[name]["environment"]["ROYALFLOW_KAFKA_SASL_PASSWORD"]).group(1)
        broker_variable = next(k for k, v in broker.items() if f"${{{variable}:?" in str(v))
        assert f'user_{principal}="$${{{broker_variable}}}"' in jaas, name
    assert broker["KAFKA_SASL_ENABLED_MECHANISMS"] == "PLAIN"
    assert broker["KAFKA_ADVERTISED_LISTENERS"] == "CLIENT://kafka:9092"
    assert broker["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"] == "CLIENT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT"
    # The image turns every KAFKA_* variable into a broker property: no password may be one.
    assert not [k for k in broker if k.startswith("KAFKA") and SECRET.search(k)]


def _acls() -> dict[str, set[tuple[str, str, str]]]:
    """{principal: {(operation, resource type, resource name)}} from kafka-init's `acl` lines."""
    script = SERVICES["kafka-init"]["command"][0]
    table: dict[str, set[tuple[str, str, str]]] = {}
    for principal, operations, rest in re.findall(r"^acl (\w+) ([\w,]+) (.+)$", script, re.MULTILINE):
        resource_type, name = re.search(r"--(topic|group) (\S+)$", rest).groups()  # type: ignore[union-attr]
        if "--resource-pattern-type prefixed" in rest:
            name += "*"
        for operation in operations.split(","):
            table.setdefault(principal, set()).add((operation, resource_type, name))
    return table


def _holders(operation: str, topic: str) -> set[str]:
    return {p for p, acls in _acls().items() if (operation, "topic", f"royalflow.{topic}") in acls}


def test_kafka_authorizes_every_client_deny_by_default() -> None:
    broker = SERVICES["kafka"]["environment"]
    assert broker["KAFKA_AUTHORIZER_CLASS_NAME"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert broker["KAFKA_SUPER_USERS"] == "User:admin"
    assert broker["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    assert broker["KAFKA_SASL_MECHANISM_CONTROLLER_PROTOCOL"] == "PLAIN"
    script = SERVICES["kafka-init"]["command"][0]
    assert "kafka-acls.sh --bootstrap-server kafka:9092 --command-config /tmp/admin.properties" in script
    assert '--allow-principal "User:$$principal"' in script  # allow rules only; nothing else is allowed
    # Every principal with ACLs has a broker account, and every account but admin has ACLs.
    jaas = SERVICES["kafka"]["command"][0]
    assert set(re.findall(r"user_(\w+)=", jaas)) == set(_acls()) | {"admin"}
    assert set(_acls()) == set(PRINCIPALS.values()) | {"producer"}


def test_acls_who_may_write_which_topic() -> None:
    from royalflow import topics
    from royalflow.contracts.keys import ADMIN, AGENT, TOPIC_SIGNERS

    # The ACLs and the signatures agree: the signed topics are written only by their signer.
    signer_principal = {AGENT: "attribution", ADMIN: "operator"}
    for topic, signer in TOPIC_SIGNERS.items():
        assert _holders("Write", topic) == {signer_principal[signer]}, topic
    assert _holders("Write", topics.GENERATIONS) == {"producer"}
    assert _acls()["producer"] == {("Write", "topic", "royalflow.generations.v1"), ("Describe", "topic", "royalflow.generations.v1")}
    assert _holders("Write", topics.DEADLETTER) == {"attribution", "ledger"}
    assert _holders("Write", topics.BALANCES) == {"ledger"}
    assert _holders("Write", topics.GENERATION_CLAIMS) == {"attribution"}
    assert _acls()["operator"] == {("Write", "topic", "royalflow.corrections.v1"), ("Describe", "topic", "royalflow.corrections.v1")}
    # Every ACL names a real topic; every topic is written by someone.
    named = {name for acls in _acls().values() for _, kind, name in acls if kind == "topic"}
    assert named <= {f"royalflow.{spec.name}" for spec in TOPICS}
    assert all(_holders("Write", spec.name) for spec in TOPICS)


def test_acls_let_each_consumer_read_what_it_consumes() -> None:
    from royalflow import topics
    from royalflow.attribution.app import APP_ID

    assert _holders("Read", topics.GENERATIONS) == {"attribution"}
    for topic in (topics.CONTRIBUTIONS, topics.ATTRIBUTIONS, topics.CORRECTIONS):
        assert _holders("Read", topic) == {"ledger"}, topic
    acls = _acls()
    # Consumer groups as the code names them: the faust app id, and <prefix>-ledger (plus `--group` variants).
    assert ("Read", "group", APP_ID) in acls["attribution"]
    assert ("Read", "group", "royalflow-ledger*") in acls["ledger"]
    assert not [a for a in acls["producer"] | acls["operator"] if a[0] == "Read"]


def test_signing_keys_go_only_where_they_are_needed() -> None:
    def has(name: str, variable: str) -> bool:
        return variable in SERVICES[name]["environment"]

    for agent in ("attribution", "attribution-cpu"):
        assert has(agent, "ROYALFLOW_SIGNING_KEYS") and has(agent, "ROYALFLOW_SIGNING_KEY_ID")
        assert not has(agent, "ROYALFLOW_ADMIN_KEYS")  # the agent cannot sign corrections
    assert has("ledger", "ROYALFLOW_SIGNING_KEYS") and has("ledger", "ROYALFLOW_ADMIN_KEYS")
    assert not has("ledger", "ROYALFLOW_SIGNING_KEY_ID") and not has("ledger", "ROYALFLOW_ADMIN_KEY_ID")
    assert has("admin", "ROYALFLOW_ADMIN_KEYS") and has("admin", "ROYALFLOW_ADMIN_KEY_ID")
    assert not has("admin", "ROYALFLOW_SIGNING_KEYS")
    for name in ("api", "families", "kafka", "kafka-init", "postgres"):
        assert not [k for k in SERVICES[name].get("environment", {}) if "KEYS" in k or "KEY_ID" in k], name


def test_commands_exist_in_the_cli() -> None:
    runner = CliRunner()
    for name, command in ROYALFLOW.items():
        assert SERVICES[name]["command"][: len(command)] == command, name
        result = runner.invoke(cli, [*command, "--help"])
        assert result.exit_code == 0, f"{name}: royalflow {' '.join(command)}: {result.output}"
    assert 'ENTRYPOINT ["royalflow"]' in (ROOT / "Dockerfile").read_text()


def test_no_secret_literals_and_every_required_variable_is_documented() -> None:
    for name, service in SERVICES.items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET.search(key):
                assert re.fullmatch(r"\$\{\w+:\?[^}]+\}", str(value)), f"{name}: {key} must be ${{VAR:?error}}"
    assert re.search(r"postgresql://royalflow:\$\{POSTGRES_PASSWORD:\?[^}]+\}@", COMPOSE_TEXT)
    assert "password=\"$${ADMIN_PASSWORD}\"" in SERVICES["kafka-init"]["command"][0]
    example = dict(line.split("=", 1) for line in ENV_EXAMPLE.splitlines() if line and not line.startswith("#"))
    for variable in required_variables():
        assert variable in example, f"{variable} is required but missing from .env.example"
        assert example[variable] == "", f".env.example must not carry a value for {variable}"
    for variable in {m.group(1) for m in _VARIABLE.finditer(COMPOSE_TEXT)}:
        assert variable in ENV_EXAMPLE, f"{variable} is not documented in .env.example"
    assert ".env" in (ROOT / ".gitignore").read_text().split()


def test_ports_match_prometheus_targets_and_healthchecks() -> None:
    prometheus = yaml.safe_load((ROOT / "infra" / "prometheus" / "prometheus.yml").read_text())
    jobs = {c["job_name"]: c for c in prometheus["scrape_configs"]}
    for service, variable in PORTS.items():
        discovery = jobs[service]["dns_sd_configs"][0]
        replicas = [service, "attribution-cpu"] if service == "attribution" else [service]
        for replica in replicas:
            port = SERVICES[replica]["environment"][variable]
            assert discovery["names"] == [service] and discovery["port"] == int(port), replica
            assert f"localhost:{port}/readyz" in " ".join(SERVICES[replica]["healthcheck"]["test"]), replica
    assert SERVICES["attribution-cpu"]["networks"]["default"]["aliases"] == ["attribution"]
    assert SERVICES["api"]["ports"][0].endswith(":" + SERVICES["api"]["environment"]["ROYALFLOW_API_PORT"])


def test_healthchecks_and_health_conditions() -> None:
    for name, service in SERVICES.items():
        if name not in ONE_SHOT:
            assert service["healthcheck"]["test"], f"{name} has no healthcheck"
        for dependency, condition in service.get("depends_on", {}).items():
            expected = "service_completed_successfully" if dependency in ONE_SHOT else "service_healthy"
            assert condition == {"condition": expected}, f"{name} -> {dependency}"
            assert dependency in ONE_SHOT or "healthcheck" in SERVICES[dependency], dependency
    assert set(SERVICES["ledger"]["depends_on"]) == {"kafka-init", "postgres"}


def test_gpu_reservation_and_cpu_profile() -> None:
    gpu, cpu = SERVICES["attribution"], SERVICES["attribution-cpu"]
    device = gpu["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert (gpu["profiles"], cpu["profiles"]) == (["gpu"], ["cpu"])
    assert gpu["environment"]["ROYALFLOW_DEVICE"] == "cuda" and cpu["environment"]["ROYALFLOW_DEVICE"] == "cpu"
    assert gpu["build"]["args"]["TORCH_VARIANT"] == "cuda" and cpu["build"]["args"]["TORCH_VARIANT"] == "cpu"
    assert re.search(r"^COMPOSE_PROFILES=gpu$", ENV_EXAMPLE, re.MULTILINE)


def test_topics_match_the_platform_with_explicit_partitions() -> None:
    script = SERVICES["kafka-init"]["command"][0]
    created = {m.group(1): dict(re.findall(r"--config (\S+)=(\S+)", m.group(2)))
               for m in re.finditer(r"^topic royalflow\.(\S+)(.*)$", script, re.MULTILINE)}
    assert created == {spec.name: spec.config for spec in TOPICS}
    assert "--partitions ${ROYALFLOW_TOPIC_PARTITIONS:-12}" in script
    assert SERVICES["ledger"]["environment"]["ROYALFLOW_TOPIC_PARTITIONS"] == "${ROYALFLOW_TOPIC_PARTITIONS:-12}"
    assert SERVICES["kafka"]["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


def test_dockerfile_pins_the_project_torch_and_runs_unprivileged() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    torch = next(d for d in dependencies if d.startswith("torch=="))
    assert f"ARG TORCH_VERSION={torch.removeprefix('torch==')}" in dockerfile
    assert "FROM python:3.11-slim" in dockerfile and "\nUSER royalflow" in dockerfile
    assert "FROM torch-${TORCH_VARIANT}" in dockerfile


def test_bind_mounts_exist_and_match_the_provisioning() -> None:
    for name in ("prometheus", "grafana"):
        for volume in SERVICES[name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name}: {source} is missing"
    provider = yaml.safe_load((ROOT / "infra/grafana/provisioning/dashboards/royalflow.yml").read_text())
    assert f"./infra/grafana/dashboards:{provider['providers'][0]['options']['path']}:ro" in SERVICES["grafana"]["volumes"]
    assert "./infra/prometheus/rules:/etc/prometheus/rules:ro" in SERVICES["prometheus"]["volumes"]
