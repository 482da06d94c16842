"""End to end: the stock OTel SDK OTLP/HTTP exporter -> `cutover collect` -> real Kafka ->
processor -> chDB -> dashboard (AppTest), with the counts equal at every hop."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind
from opentelemetry.util.types import AttributeValue
from streamlit.testing.v1 import AppTest

from cutover import kafka_clients, semconv, store
from cutover.kafka_clients import KafkaConnection
from cutover.local_kafka import free_port, port_open
from dashboards import context
from dashboards.settings import DashboardSettings
from processors.service import ProcessorService
from processors.settings import ProcessorSettings

APP = str(Path(__file__).resolve().parents[1] / "dashboards" / "app.py")
CALLS = 240


def send_calls_through_the_stock_sdk(endpoint: str) -> tuple[Counter, int]:
    """An app instrumented by any GenAI instrumentation: one CLIENT span per call, plus HTTP spans."""
    provider = TracerProvider(resource=Resource.create({semconv.SERVICE_NAME: "checkout", semconv.ENVIRONMENT: "prod"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint), max_export_batch_size=64))
    tracer = provider.get_tracer("e2e-app")
    per_model: Counter = Counter()
    other_spans = 0
    for i in range(CALLS):
        model = "gpt-5.5" if i % 4 == 0 else "gpt-5.4"
        with tracer.start_as_current_span("checkout request"):
            other_spans += 1
            attributes: dict[str, AttributeValue] = {
                semconv.OPERATION: "chat",
                semconv.PROVIDER: "openai",
                semconv.REQUEST_MODEL: model,
                semconv.RESPONSE_MODEL: f"{model}-2026-04-23",
                semconv.INPUT_TOKENS: 100 + i,
                semconv.OUTPUT_TOKENS: 20 + i % 50,
                semconv.FINISH_REASONS: ("stop",),
                semconv.TASK: "coding" if i % 2 else "knowledge",
            }
            with tracer.start_as_current_span(f"chat {model}", kind=SpanKind.CLIENT, attributes=attributes):
                time.sleep(0.001)
        per_model[model] += 1
    assert provider.force_flush(30_000)
    provider.shutdown()
    return per_model, other_spans


def spans_on_topic(bootstrap: str, topic: str) -> tuple[int, int]:
    consumer = kafka_clients.consumer(
        KafkaConnection.plaintext(bootstrap), "test", topic, auto_offset_reset="earliest", consumer_timeout_ms=5000
    )
    genai = other = 0
    for record in consumer:
        request = ExportTraceServiceRequest.FromString(record.value)
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    if any(a.key == semconv.OPERATION for a in span.attributes):
                        genai += 1
                    else:
                        other += 1
    consumer.close()
    return genai, other


def test_counts_are_equal_at_every_hop(
    kafka_bootstrap, topic, ch_client, ch_database, chdb_path, cutover_env, monkeypatch, tmp_path
):
    port = free_port()
    env = dict(cutover_env, CUTOVER_SPANS_TOPIC=topic, CUTOVER_COLLECT_PORT=str(port))
    log = (tmp_path / "collect.log").open("w")
    collect = subprocess.Popen([sys.executable, "-m", "cutover.cli", "collect"], env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while not port_open("127.0.0.1", port):
            assert collect.poll() is None and time.monotonic() < deadline, (tmp_path / "collect.log").read_text()
            time.sleep(0.2)
        # hop 1: the application's SDK
        per_model, other_spans = send_calls_through_the_stock_sdk(f"http://127.0.0.1:{port}/v1/traces")
    finally:
        collect.terminate()
        collect.wait(30)
        log.close()
    assert sum(per_model.values()) == CALLS

    # hop 2: Kafka
    assert spans_on_topic(kafka_bootstrap, topic) == (CALLS, other_spans)

    # hop 3: the processor into ClickHouse
    settings = ProcessorSettings(
        kafka_bootstrap=kafka_bootstrap,
        spans_topic=topic,
        dlq_topic=f"{topic}_dlq",
        consumer_group=f"e2e-{topic}",
        clickhouse_url=f"chdb://{chdb_path}",
        clickhouse_database=ch_database,
        batch_max_wait_s=0.3,
    )
    service = ProcessorService(settings, client=ch_client)
    service.start()
    try:
        deadline = time.monotonic() + 120
        while service.stats.calls_written + service.stats.skipped_non_genai < CALLS + other_spans:
            assert service.failure is None and time.monotonic() < deadline, service.stats.as_dict()
            time.sleep(0.2)
    finally:
        service.stop()
    assert service.stats.calls_written == CALLS and service.stats.skipped_non_genai == other_spans
    assert service.stats.dlq == 0
    stored = dict(
        ch_client.query(f"SELECT model, count() FROM {ch_database}.llm_calls FINAL GROUP BY model").result_rows
    )
    assert stored == dict(per_model)

    # hop 4: the dashboard's Overview shows the same counts per model
    dsn = f"chdb://{chdb_path}"
    monkeypatch.setitem(store._clients, dsn, ch_client)
    monkeypatch.setattr(context, "_settings", DashboardSettings(clickhouse_url=dsn, clickhouse_database=ch_database))
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    headers = [h.value.removesuffix(" (B)") for h in at.subheader]
    assert sorted(headers) == sorted(per_model)
    shown = [m.value for m in at.metric if m.label == "calls"]
    assert dict(zip(headers, shown, strict=True)) == {model: f"{count:,}" for model, count in per_model.items()}
