"""`cutover collect` as a real subprocess between the stock OTel SDK exporter and the real broker."""

from __future__ import annotations

import base64
import gzip
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf import json_format
from google.rpc.status_pb2 import Status
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from collectors.otlp_kafka import sarama_partition, split_by_trace
from cutover import kafka_clients
from cutover.kafka_clients import KafkaConnection
from cutover.local_kafka import free_port, port_open

MAX_BODY = 64 * 1024


def start_collect(env: dict[str, str], log: Path, max_body: int = MAX_BODY) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = dict(
        env,
        CUTOVER_COLLECT_PORT=str(port),
        CUTOVER_COLLECT_MAX_BODY_BYTES=str(max_body),
        CUTOVER_COLLECT_STATS_INTERVAL_S="1",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "cutover.cli", "collect"], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 60
    while not port_open("127.0.0.1", port):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"cutover collect did not start: {log.read_text()}")
        time.sleep(0.1)
    return process, f"http://127.0.0.1:{port}/v1/traces"


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture
def collect(cutover_env, topic, tmp_path) -> Iterator[str]:
    process, url = start_collect(dict(cutover_env, CUTOVER_SPANS_TOPIC=topic), tmp_path / "collect.log")
    yield url
    stop(process)


def post(
    url: str, body: bytes, content_type: str = "application/x-protobuf", **headers: str
) -> tuple[int, bytes, dict]:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type, **headers})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read(), dict(error.headers)


def make_spans() -> list[ReadableSpan]:
    """Three traces, nested spans, two instrumentation scopes, as an SDK records them."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create({"service.name": "svc-a", "deployment.environment.name": "test"})
    )
    provider.add_span_processor(SimpleSpanProcessor(memory))
    app, genai = (
        provider.get_tracer("app", "1.0"),
        provider.get_tracer("opentelemetry.instrumentation.genai.openai", "1.3b0"),
    )
    for i in range(3):
        with app.start_as_current_span(f"request {i}", attributes={"http.route": "/ask"}):
            with genai.start_as_current_span(
                "chat gpt-5.5", attributes={"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": 10 + i}
            ) as span:
                span.add_event("first token", {"n": i})
    provider.shutdown()
    return list(memory.get_finished_spans())


def consume(bootstrap: str, topic: str, expected: int) -> list:
    consumer = kafka_clients.consumer(
        KafkaConnection.plaintext(bootstrap), "test", topic, auto_offset_reset="earliest", consumer_timeout_ms=5000
    )
    records: list = []  # kafka-python's ConsumerRecords
    deadline = time.monotonic() + 30
    while len(records) < expected and time.monotonic() < deadline:
        records.extend(consumer)
    consumer.close()
    return records


def by_key(messages) -> dict[bytes, list[bytes]]:
    grouped: dict[bytes, list[bytes]] = defaultdict(list)
    for message in messages:
        grouped[message.key].append(message.value)
    return dict(grouped)


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
def test_stock_sdk_exporter_spans_arrive_on_kafka_unchanged(collect, kafka_bootstrap, topic, compression):
    spans = make_spans()
    assert (
        OTLPSpanExporter(endpoint=collect, timeout=30, compression=compression).export(spans)
        is SpanExportResult.SUCCESS
    )

    expected = split_by_trace(encode_spans(spans))
    assert len(expected) == 6  # 3 traces x 2 scopes, like the Collector's SplitTraces
    records = consume(kafka_bootstrap, topic, len(expected))
    assert by_key(records) == by_key(expected)  # same keys, byte-identical values, per-trace order kept
    for record in records:
        assert (
            record.key
            == ExportTraceServiceRequest.FromString(record.value)
            .resource_spans[0]
            .scope_spans[0]
            .spans[0]
            .trace_id.hex()
            .encode()
        )
        assert record.partition == sarama_partition(record.key, 4)


def _otlp_json(request: ExportTraceServiceRequest) -> dict:
    """OTLP/JSON as the spec writes it: camelCase, hex trace and span ids."""
    document = json_format.MessageToDict(request)
    for resource_spans in document["resourceSpans"]:
        for scope_spans in resource_spans["scopeSpans"]:
            for span in scope_spans["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    return document


def test_json_and_gzip_bodies_produce_the_same_messages(collect, kafka_bootstrap, topic):
    request = encode_spans(make_spans())
    status, body, headers = post(collect, json.dumps(_otlp_json(request)).encode(), "application/json")
    assert status == 200 and headers["content-type"].startswith("application/json")
    status, body, _ = post(collect, gzip.compress(request.SerializeToString()), **{"Content-Encoding": "gzip"})
    assert status == 200
    ExportTraceServiceResponse.FromString(body)
    expected = split_by_trace(request)
    records = consume(kafka_bootstrap, topic, 2 * len(expected))
    assert by_key(records) == {key: values * 2 for key, values in by_key(expected).items()}


@pytest.mark.parametrize(
    ("body", "content_type", "headers", "status", "reason"),
    [
        (b"\xff\xff\xff not protobuf", "application/x-protobuf", {}, 400, "not an OTLP ExportTraceServiceRequest"),
        (b"{not json", "application/json", {}, 400, "not OTLP/JSON"),
        (
            json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz", "spanId": "01"}]}]}]}).encode(),
            "application/json",
            {},
            400,
            "is not hex",
        ),
        (b"x" * (MAX_BODY + 1), "application/x-protobuf", {}, 413, "exceeds"),
        (
            gzip.compress(b"\0" * (MAX_BODY * 4)),
            "application/x-protobuf",
            {"Content-Encoding": "gzip"},
            413,
            "after gunzip",
        ),
        (b"\x1f\x8b garbage", "application/x-protobuf", {"Content-Encoding": "gzip"}, 400, "not valid gzip"),
        (b"", "text/plain", {}, 415, "Content-Type"),
        (b"", "application/x-protobuf", {"Content-Encoding": "br"}, 415, "Content-Encoding"),
    ],
)
def test_bad_requests_get_a_status_with_the_reason(collect, body, content_type, headers, status, reason):
    code, payload, _ = post(collect, body, content_type, **headers)
    assert code == status
    message = (
        json.loads(payload)["message"] if content_type == "application/json" else Status.FromString(payload).message
    )
    assert reason in message


def test_collect_logs_what_it_accepted_and_rejected(collect, tmp_path):
    assert post(collect, encode_spans(make_spans()).SerializeToString())[0] == 200
    assert post(collect, b"junk")[0] == 400
    log = tmp_path / "collect.log"
    deadline = time.monotonic() + 10
    while "requests accepted" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "1 requests accepted, 6 spans and 0 log records -> 6 Kafka messages; rejected 400:1" in log.read_text()


def test_empty_request_is_accepted_and_other_methods_are_not(collect):
    assert post(collect, b"")[0] == 200
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(collect, timeout=10)
    assert raised.value.code == 405


def test_a_trace_too_large_for_kafka_is_413_and_the_rest_still_lands(cutover_env, kafka_bootstrap, topic, tmp_path):
    process, url = start_collect(
        dict(cutover_env, CUTOVER_SPANS_TOPIC=topic), tmp_path / "collect.log", max_body=8 * 1024 * 1024
    )
    try:
        request = ExportTraceServiceRequest()
        scope_spans = request.resource_spans.add().scope_spans.add()
        huge = scope_spans.spans.add(trace_id=b"\x01" * 16, span_id=b"\x01" * 8, name="huge")
        huge.attributes.add(key="gen_ai.output.messages").value.string_value = "x" * 1_500_000  # over the 1 MB default
        scope_spans.spans.add(trace_id=b"\x02" * 16, span_id=b"\x02" * 8, name="small")
        status, payload, _ = post(url, request.SerializeToString())
    finally:
        stop(process)
    assert status == 413 and "message size limit" in Status.FromString(payload).message
    (record,) = consume(kafka_bootstrap, topic, 1)
    assert record.key == (b"\x02" * 16).hex().encode()
