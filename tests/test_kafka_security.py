"""Every client through the one factory, against the session broker's SCRAM and mutual-TLS listeners."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import SpanExportResult

from collectors.kafka_exporter import KafkaSpanExporter
from collectors.otlp_kafka import split_by_trace
from collectors.settings import CollectorSettings
from cutover import kafka_clients
from cutover.kafka_clients import KafkaConnection
from cutover.local_kafka import BrokerError, round_trip
from cutover.settings import CutoverSettings
from processors.service import ProcessorService
from processors.settings import ProcessorSettings
from tests.processor_workload import make_calls, messages, produce
from tests.secure_kafka import SecureListeners
from tests.test_collectors_receiver import by_key, consume, make_spans, start_collect, stop


def fields(env: dict[str, str]) -> dict[str, Any]:
    """Settings keyword arguments from `CUTOVER_*` variables (strings, which the settings validate)."""
    return {name.removeprefix("CUTOVER_").lower(): value for name, value in env.items()}


def connection(env: dict[str, str]) -> KafkaConnection:
    return KafkaConnection.from_settings(CutoverSettings(**fields(env)))


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "SCRAM-SHA-256"])
def test_scram_listener_round_trip(kafka_broker, kafka_security: SecureListeners, mechanism):
    assert round_trip(connection(kafka_security.scram_env(mechanism)), timeout=60) > 0


def test_tls_listener_round_trip_with_a_client_certificate(kafka_broker, kafka_security: SecureListeners):
    assert round_trip(connection(kafka_security.tls_env()), timeout=60) > 0


def test_a_wrong_password_or_a_missing_client_certificate_is_refused(kafka_broker, kafka_security: SecureListeners):
    wrong = dict(kafka_security.scram_env(), CUTOVER_KAFKA_SASL_PASSWORD="not-the-password")
    with pytest.raises(BrokerError):
        round_trip(connection(wrong), timeout=8)
    anonymous = {k: v for k, v in kafka_security.tls_env().items() if "CERTFILE" not in k and "KEYFILE" not in k}
    with pytest.raises(BrokerError):
        round_trip(connection(anonymous), timeout=8)


def test_the_password_file_is_read_when_a_client_is_built(kafka_broker, kafka_security: SecureListeners, tmp_path):
    secret = tmp_path / "password"
    env = kafka_security.scram_env()
    secret.write_text(env.pop("CUTOVER_KAFKA_SASL_PASSWORD") + "\n")
    built = connection(dict(env, CUTOVER_KAFKA_SASL_PASSWORD_FILE=str(secret)))
    assert "scram-secret" not in repr(built)  # never logged by accident
    assert round_trip(built, timeout=60) > 0


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"CUTOVER_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "CUTOVER_KAFKA_SASL_USERNAME"),
        ({"CUTOVER_KAFKA_SASL_USERNAME": "u", "CUTOVER_KAFKA_SASL_PASSWORD": "p"}, "does not use SASL"),
        ({"CUTOVER_KAFKA_SECURITY_PROTOCOL": "SSL", "CUTOVER_KAFKA_SSL_CERTFILE": "{ca}"}, "go together"),
        ({"CUTOVER_KAFKA_SECURITY_PROTOCOL": "SSL", "CUTOVER_KAFKA_SSL_CAFILE": "/nonexistent.pem"}, "SSL_CAFILE"),
        ({"CUTOVER_KAFKA_SASL_MECHANISM": "GSSAPI"}, "CUTOVER_KAFKA_SASL_MECHANISM"),
    ],
)
def test_bad_security_settings_are_one_clear_line(kafka_security: SecureListeners, tmp_path, env, named):
    env = {k: v.format(ca=kafka_security.tls.ca) for k, v in env.items()}
    done = subprocess.run(
        [sys.executable, "-m", "cutover.cli", "check"],
        env={"PATH": "/usr/bin:/bin", "CUTOVER_HOME": str(tmp_path), **env},
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and named in done.stderr, done.stderr


def test_client_options_come_from_the_connection_only(kafka_security: SecureListeners):
    with pytest.raises(TypeError, match="security_protocol"):
        kafka_clients.producer(connection(kafka_security.tls_env()), "test", security_protocol="PLAINTEXT")
    scram = connection(dict(kafka_security.scram_env(), CUTOVER_KAFKA_CLIENT_ID="team-a")).options("processor")
    assert scram["client_id"] == "team-a-processor" and scram["sasl_mechanism"] == "SCRAM-SHA-512"
    assert "ssl_cafile" not in scram  # no TLS options on a SASL_PLAINTEXT connection
    tls = connection(kafka_security.tls_env()).options("collect")
    assert tls["ssl_cafile"] == str(kafka_security.tls.ca) and "sasl_mechanism" not in tls


@pytest.mark.parametrize("listener", ["scram", "tls"])
def test_the_processor_consumes_and_dead_letters_through_a_secured_listener(
    kafka_broker, kafka_security: SecureListeners, topic, ch_client, ch_database, listener
):
    calls = make_calls(300, seed=5)
    batch = list(messages(calls))
    produce(kafka_broker.bootstrap, topic, [*batch, (b"bad", b"not protobuf")])
    env = kafka_security.scram_env() if listener == "scram" else kafka_security.tls_env()
    kafka_broker.create_topics([f"{topic}_dlq"])
    settings = ProcessorSettings(
        **fields(env),
        spans_topic=topic,
        dlq_topic=f"{topic}_dlq",
        consumer_group=f"g_{topic}",
        clickhouse_database=ch_database,
        batch_max_wait_s=0.3,
        alert_interval_s=3600,
    )
    service = ProcessorService(settings, client=ch_client)
    service.start()
    try:
        deadline = time.monotonic() + 120
        while service.stats.messages < len(batch) + 1:
            assert service.failure is None and time.monotonic() < deadline, service.stats.as_dict()
            time.sleep(0.2)
    finally:
        service.stop()
    rows = ch_client.query(f"SELECT count() FROM {ch_database}.llm_calls FINAL").result_rows[0][0]
    assert rows == len(calls)
    letters = consume(kafka_broker.bootstrap, f"{topic}_dlq", 1)
    assert [letter.value for letter in letters] == [b"not protobuf"]


@pytest.mark.parametrize("listener", ["scram", "tls"])
def test_cutover_collect_produces_through_a_secured_listener(
    kafka_broker, kafka_security: SecureListeners, cutover_env, topic, tmp_path, listener
):
    env = kafka_security.scram_env() if listener == "scram" else kafka_security.tls_env()
    process, url = start_collect(dict(cutover_env, **env, CUTOVER_SPANS_TOPIC=topic), tmp_path / "collect.log")
    try:
        spans = make_spans()
        assert OTLPSpanExporter(endpoint=url, timeout=30).export(spans) is SpanExportResult.SUCCESS
    finally:
        stop(process)
    expected = split_by_trace(encode_spans(spans))
    assert by_key(consume(kafka_broker.bootstrap, topic, len(expected))) == by_key(expected)


def test_the_in_app_span_exporter_produces_through_the_scram_listener(
    kafka_broker, kafka_security: SecureListeners, topic
):
    spans = make_spans()
    exporter = KafkaSpanExporter(CollectorSettings(**fields(kafka_security.scram_env()), spans_topic=topic))
    exporter.export(spans)
    exporter.shutdown()
    assert (exporter.sent, exporter.dropped) == (len(spans), 0)
    expected = split_by_trace(encode_spans(spans))
    assert by_key(consume(kafka_broker.bootstrap, topic, len(expected))) == by_key(expected)
