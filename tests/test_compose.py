"""compose.yaml agrees with the code (no Docker engine runs here, so this is how it stays true):
official images, topics, ports, variable names and values, commands, and the Collector config."""

from __future__ import annotations

import re
from urllib.parse import urlparse

import pytest
import typer
import yaml

from collectors.settings import CollectorSettings
from cutover.cli import app
from cutover.settings import CutoverSettings
from dashboards.settings import DashboardSettings
from processors.settings import ProcessorSettings
from simulator.settings import LoadgenSettings, SimulatorSettings
from tests.support import REPO, settings_classes, settings_variables

COMPOSE = yaml.safe_load((REPO / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]
OURS = {name: spec for name, spec in SERVICES.items() if spec.get("build")}
DEFAULTS = CutoverSettings()
# The settings class each of our services loads, and the settings field naming its listening port.
ROLES = {
    "collect": (CollectorSettings, "collect_port"),
    "processor": (ProcessorSettings, None),
    "dashboard": (DashboardSettings, "dashboard_port"),
    "simulator": (SimulatorSettings, "simulator_port"),
    "loadgen": (LoadgenSettings, None),
}


def env(service: str) -> dict[str, str]:
    return {k: str(v) for k, v in SERVICES[service].get("environment", {}).items()}


def test_official_images_for_kafka_clickhouse_and_the_collector():
    assert SERVICES["kafka"]["image"].startswith("apache/kafka:4.")
    assert SERVICES["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")
    assert SERVICES["otelcol"]["image"].startswith("otel/opentelemetry-collector-contrib:")
    assert set(OURS) == set(ROLES), "every service built from our Dockerfile has a role in this test"


def test_kafka_is_kraft_and_the_topics_are_the_codes_defaults():
    kafka = env("kafka")
    assert kafka["KAFKA_PROCESS_ROLES"] == "broker,controller"
    created = re.findall(r"for topic in ([\w ]+);", SERVICES["kafka-init"]["command"][0])[0].split()
    assert created == [DEFAULTS.spans_topic, DEFAULTS.dlq_topic, DEFAULTS.logs_topic]
    advertised = kafka["KAFKA_ADVERTISED_LISTENERS"].split("//")[1]
    for name in OURS:
        assert env(name)["CUTOVER_KAFKA_BOOTSTRAP"] == advertised


def test_the_collector_config_writes_what_the_processor_reads():
    otelcol = SERVICES["otelcol"]
    mount = next(v for v in otelcol["volumes"] if v.startswith("./collectors/otelcol.yaml:"))
    assert mount.split(":")[1] in " ".join(otelcol["command"])
    config = yaml.safe_load((REPO / "collectors" / "otelcol.yaml").read_text())
    kafka = config["exporters"]["kafka"]
    assert kafka["traces"] == {"topic": DEFAULTS.spans_topic, "encoding": "otlp_proto"}
    assert kafka["partition_traces_by_id"] is True
    assert kafka["brokers"] == ["${env:KAFKA_BROKERS}"]
    assert otelcol["environment"]["KAFKA_BROKERS"] == env("processor")["CUTOVER_KAFKA_BOOTSTRAP"]
    assert "kafka" in config["service"]["pipelines"]["traces"]["exporters"]


def test_every_variable_is_one_the_code_reads_and_every_value_validates():
    known = settings_variables()
    for name in OURS:
        variables = {k for k in env(name) if k.startswith("CUTOVER_")}
        assert variables <= known, f"{name}: {variables - known}"
        cls, _ = ROLES[name]
        fields = {k.removeprefix("CUTOVER_").lower(): v for k, v in env(name).items()}
        cls(**{k: v for k, v in fields.items() if k in cls.model_fields})  # raises on an invalid value
    assert all(cls.model_config["env_prefix"] == "CUTOVER_" for cls in settings_classes())


@pytest.mark.parametrize("service", sorted(ROLES))
def test_commands_exist_and_ports_match_the_settings(service):
    spec = OURS[service]
    commands = set(typer.main.get_command(app).commands)
    assert spec["command"][0] in commands
    cls, port_field = ROLES[service]
    if port_field is None:
        assert "ports" not in spec
        return
    port = int(env(service).get(f"CUTOVER_{port_field.upper()}", cls.model_fields[port_field].default))
    assert port == cls.model_fields[port_field].default, "keep compose on the code's default port"
    assert any(p.split(":")[-1] == str(port) for p in spec["ports"])
    host_field = port_field.replace("_port", "_host")
    assert env(service)[f"CUTOVER_{host_field.upper()}"] == "0.0.0.0", "listen beyond the container's loopback"


def test_clickhouse_and_simulator_addresses_point_at_their_services():
    url = urlparse(env("processor")["CUTOVER_CLICKHOUSE_URL"])
    clickhouse = env("clickhouse")
    assert (url.hostname, url.port) == ("clickhouse", 8123)
    assert (url.username, url.password) == (clickhouse["CLICKHOUSE_USER"], clickhouse["CLICKHOUSE_PASSWORD"])
    assert any(p.endswith(":8123") for p in SERVICES["clickhouse"]["ports"])
    base = urlparse(env("loadgen")["CUTOVER_LOADGEN_BASE_URL"])
    assert (base.hostname, base.port) == ("simulator", int(env("simulator")["CUTOVER_SIMULATOR_PORT"]))
    assert not urlparse(env("dashboard")["CUTOVER_CLICKHOUSE_URL"]).scheme.startswith("chdb")


def test_the_dashboard_reads_as_a_select_only_user():
    import xml.etree.ElementTree as ElementTree

    url = urlparse(env("dashboard")["CUTOVER_CLICKHOUSE_URL"])
    mount = next(v for v in SERVICES["clickhouse"]["volumes"] if "users.d" in v)
    users = ElementTree.parse(REPO / mount.split(":")[0]).getroot().find("users")
    user = users.find(url.username)
    assert user is not None and user.findtext("password") == url.password
    grants = [q.text for q in user.find("grants").findall("query")]
    assert grants == [f"GRANT SELECT ON {env('dashboard')['CUTOVER_CLICKHOUSE_DATABASE']}.*"]
    assert url.username != env("clickhouse")["CLICKHOUSE_USER"], "the writers' user must not be the dashboard's"


def test_the_dockerfile_ships_every_package():
    dockerfile = (REPO / "Dockerfile").read_text()
    pyproject = (REPO / "pyproject.toml").read_text()
    packages = re.findall(r'"(\w+)\*"', pyproject.split("[tool.setuptools.packages.find]")[1].split("[")[0])
    for package in packages:
        assert f"COPY {package} ./{package}" in dockerfile
    assert 'ENTRYPOINT ["cutover"]' in dockerfile


def test_prometheus_scrapes_the_metrics_ports_the_services_serve():
    prometheus = SERVICES["prometheus"]
    assert prometheus["image"].startswith("prom/prometheus:")
    mount = next(v for v in prometheus["volumes"] if v.startswith("./deploy/prometheus/prometheus.yml:"))
    config = yaml.safe_load((REPO / mount.split(":")[0]).read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    processor = jobs["cutover-processor"]["dns_sd_configs"][0]
    assert processor["names"] == ["processor"]
    assert str(processor["port"]) == env("processor")["CUTOVER_PROCESSOR_METRICS_PORT"]
    assert processor["port"] == ProcessorSettings().processor_metrics_port
    assert jobs["cutover-collect"]["static_configs"][0]["targets"] == [
        f"collect:{env('collect')['CUTOVER_COLLECTOR_METRICS_PORT']}"
    ]
    assert int(env("collect")["CUTOVER_COLLECTOR_METRICS_PORT"]) == CollectorSettings().collector_metrics_port
