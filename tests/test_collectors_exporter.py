"""The Kafka span exporter and the kafkaexporter-compatible split, on the real broker."""

from __future__ import annotations

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from collectors.instrument import instrument
from collectors.kafka_exporter import KafkaSpanExporter
from collectors.otlp_kafka import sarama_partition, split_by_trace, trace_key
from collectors.settings import CollectorSettings
from cutover import kafka_clients
from cutover.kafka_clients import KafkaConnection
from cutover.local_kafka import free_port
from tests.test_collectors_receiver import make_spans


def _request() -> ExportTraceServiceRequest:
    """Two resources; trace A spans both scopes of resource 1 and appears in resource 2."""
    request = ExportTraceServiceRequest()
    a, b = bytes.fromhex("0a" * 16), bytes.fromhex("0b" * 16)
    for service, scopes in (("r1", {"s1": [a, b, a], "s2": [a]}), ("r2", {"s1": [b, a]})):
        resource_spans = request.resource_spans.add(schema_url="https://opentelemetry.io/schemas/1.30.0")
        resource_spans.resource.attributes.add(key="service.name").value.string_value = service
        for scope, traces in scopes.items():
            scope_spans = resource_spans.scope_spans.add(schema_url="scope-schema")
            scope_spans.scope.name = scope
            for number, trace_id in enumerate(traces):
                scope_spans.spans.add(
                    trace_id=trace_id, span_id=bytes([number + 1]) * 8, name=f"{service}/{scope}/{number}"
                )
    return request


def test_split_matches_batchpersignal_split_traces():
    messages = split_by_trace(_request())
    decoded = [ExportTraceServiceRequest.FromString(message.value) for message in messages]
    # one message per resource x scope x trace, in first-seen order
    assert [
        (
            m.key[:2],
            d.resource_spans[0].resource.attributes[0].value.string_value,
            d.resource_spans[0].scope_spans[0].scope.name,
        )
        for m, d in zip(messages, decoded, strict=True)
    ] == [
        (b"0a", "r1", "s1"),
        (b"0b", "r1", "s1"),
        (b"0a", "r1", "s2"),
        (b"0b", "r2", "s1"),
        (b"0a", "r2", "s1"),
    ]
    first = decoded[0].resource_spans[0]
    assert [span.name for span in first.scope_spans[0].spans] == ["r1/s1/0", "r1/s1/2"]
    assert (
        first.schema_url == "https://opentelemetry.io/schemas/1.30.0"
        and first.scope_spans[0].schema_url == "scope-schema"
    )
    assert [message.spans for message in messages] == [2, 1, 1, 1, 1]
    assert messages[0].key == b"0a" * 16
    # the hand-framed bytes are exactly what protobuf serialises for the same message
    source = _request().resource_spans[0]
    expected = ExportTraceServiceRequest()
    resource_spans = expected.resource_spans.add(resource=source.resource, schema_url=source.schema_url)
    scope_spans = resource_spans.scope_spans.add(scope=source.scope_spans[0].scope, schema_url="scope-schema")
    scope_spans.spans.extend([source.scope_spans[0].spans[0], source.scope_spans[0].spans[2]])
    assert messages[0].value == expected.SerializeToString()


def test_keys_and_partitions_follow_the_kafkaexporter():
    assert (
        trace_key(bytes(16)) == b""
        and trace_key(bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736")) == b"4bf92f3577b34da6a3ce929d0e0e4736"
    )
    # Sarama's FNV-1a hash partitioner: fnv1a32(b"a") = 0xe40c292c, negative as int32
    assert sarama_partition(b"a", 1000) == abs(0xE40C292C - (1 << 32)) % 1000
    assert sarama_partition(b"", 7) == 0x811C9DC5 % 7


def test_exporter_writes_what_it_encodes(kafka_bootstrap, topic):
    spans = make_spans()
    exporter = KafkaSpanExporter(CollectorSettings(kafka_bootstrap=kafka_bootstrap, spans_topic=topic))
    exporter.export(spans)
    exporter.shutdown()
    assert (exporter.sent, exporter.dropped) == (len(spans), 0)
    consumer = kafka_clients.consumer(
        KafkaConnection.plaintext(kafka_bootstrap),
        "test",
        topic,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    got = sorted((record.key, record.value) for record in consumer)
    consumer.close()
    assert got == sorted((message.key, message.value) for message in split_by_trace(encode_spans(spans)))


def test_every_span_is_exported_or_counted_when_kafka_is_unreachable():
    settings = CollectorSettings(
        kafka_bootstrap=f"127.0.0.1:{free_port()}", exporter_queue_size=8, exporter_timeout_s=1
    )
    inst = instrument(settings=settings)  # the real batch processor, queue of 8, in front of an unreachable Kafka
    try:
        tracer = TracerProvider(resource=Resource.create({})).get_tracer("unused")  # not ours: must not be counted
        tracer.start_span("other").end()
        app = inst.tracer_provider.get_tracer("app")
        for i in range(200):
            app.start_span(f"work {i}").end()
    finally:
        inst.shutdown()
    assert inst.batch_processor.dropped > 0  # the queue overflowed while the exporter waited for Kafka
    assert inst.dropped == 200
