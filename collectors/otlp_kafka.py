"""OTLP trace requests as the OpenTelemetry Collector's kafkaexporter puts them on Kafka.

With `encoding: otlp_proto` and `partition_traces_by_id: true` the kafkaexporter splits each
batch with `batchpersignal.SplitTraces` (one message per resource x scope x trace id, in first-seen
order, resource/scope and their schema URLs copied), serialises each part as an
`ExportTraceServiceRequest`, keys it with the trace id as 32 lowercase hex characters
(`traceutil.TraceIDToHexOrEmptyString`) and partitions keys with Sarama's FNV-1a hash. Our
Kafka span exporter and `cutover collect` both write through here, so every path onto the
topic produces the same messages on the same partitions.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from kafka import KafkaProducer
from kafka.cluster import ClusterMetadata
from kafka.errors import KafkaError
from kafka.partitioner.abc import Partitioner
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from collectors.settings import CollectorSettings
from cutover import kafka_clients
from cutover.kafka_clients import KafkaConnection

log = logging.getLogger(__name__)

_EMPTY_TRACE_ID = bytes(16)


@dataclass(frozen=True, slots=True)
class TraceMessage:
    """One Kafka record: the key, the serialised request and how many spans it carries."""

    key: bytes
    value: bytes
    spans: int


def trace_key(trace_id: bytes) -> bytes:
    """The kafkaexporter's message key: hex trace id, empty for an invalid (all-zero) id."""
    return b"" if trace_id in (b"", _EMPTY_TRACE_ID) else trace_id.hex().encode()


def split_by_trace(request: ExportTraceServiceRequest) -> list[TraceMessage]:
    """Split a request exactly like `batchpersignal.SplitTraces`, one message per trace part.

    Each resource, scope and span is serialised once and the parts are framed by hand:
    building a message object per trace and serialising it was 20x slower than the parse.
    """
    messages: list[TraceMessage] = []
    for resource_spans in request.resource_spans:
        resource = (
            _field(1, resource_spans.resource.SerializeToString()) if resource_spans.HasField("resource") else b""
        )
        resource_schema = _field(3, resource_spans.schema_url.encode()) if resource_spans.schema_url else b""
        for scope_spans in resource_spans.scope_spans:
            scope = _field(1, scope_spans.scope.SerializeToString()) if scope_spans.HasField("scope") else b""
            scope_schema = _field(3, scope_spans.schema_url.encode()) if scope_spans.schema_url else b""
            parts: dict[bytes, list[bytes]] = {}
            for span in scope_spans.spans:
                encoded = _field(2, span.SerializeToString())
                part = parts.get(span.trace_id)
                if part is None:
                    parts[span.trace_id] = [encoded]
                else:
                    part.append(encoded)
            for trace_id, spans in parts.items():
                scoped = _field(2, b"".join((scope, *spans, scope_schema)))
                value = _field(1, b"".join((resource, scoped, resource_schema)))
                messages.append(TraceMessage(trace_key(trace_id), value, len(spans)))
    return messages


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (numbers 1-15): tag, varint length, payload."""
    size = len(payload)
    if size < 0x80:
        return _TAGS[number] + _ONE_BYTE[size] + payload
    length = bytearray()
    while size > 0x7F:
        length.append(size & 0x7F | 0x80)
        size >>= 7
    length.append(size)
    return _TAGS[number] + bytes(length) + payload


_TAGS = {number: bytes((number << 3 | 2,)) for number in range(1, 16)}
_ONE_BYTE = [bytes((size,)) for size in range(0x80)]


def sarama_partition(key: bytes, partitions: int) -> int:
    """Sarama's default HashPartitioner: FNV-1a 32 of the key as int32, remainder, absolute value."""
    # Written by hand because kafka-python ships only murmur2 (the Java client's hash).
    digest = 0x811C9DC5
    for byte in key:
        digest = ((digest ^ byte) * 0x01000193) & 0xFFFFFFFF
    signed = digest - (1 << 32) if digest & 0x80000000 else digest
    return abs(signed) % partitions


class SaramaHashPartitioner(Partitioner):
    """Puts a trace on the partition the Collector's kafkaexporter would choose for it."""

    def partition(
        self,
        topic: str,
        key: object,
        serialized_key: bytes | None,
        value: object,
        serialized_value: bytes | None,
        cluster: ClusterMetadata,
    ) -> int:
        partitions: list[int] = sorted(cluster.partitions_for_topic(topic))
        if not serialized_key:
            available: list[int] = sorted(cluster.available_partitions_for_topic(topic)) or partitions
            return available[hash(serialized_value) % len(available)]
        return partitions[sarama_partition(serialized_key, len(partitions))]


def new_producer(settings: CollectorSettings, *, max_block_ms: int, timeout_s: float, role: str) -> KafkaProducer:
    """A producer that waits for all in-sync replicas and gives up on a record after `timeout_s`.

    `delivery_timeout_ms` bounds every record (retries included), so a record either lands or
    its future fails: nothing waits forever. The constructor must be allowed to bootstrap, so
    callers create producers off the application's threads.
    """
    timeout_ms = int(timeout_s * 1000)
    request_timeout_ms = max(1000, min(timeout_ms - 100, 30_000))
    return kafka_clients.producer(
        KafkaConnection.from_settings(settings),
        role,
        acks="all",
        linger_ms=5,
        compression_type=None,
        partitioner=SaramaHashPartitioner(),
        max_block_ms=max_block_ms,
        request_timeout_ms=request_timeout_ms,
        delivery_timeout_ms=max(timeout_ms, request_timeout_ms + 100),
        bootstrap_timeout_ms=max(timeout_ms, 1000),
        reconnect_backoff_max_ms=2000,
    )


class LazyProducer:
    """Builds the producer on first use, and again after a failed bootstrap at most every `retry_s`.

    A broker that is down when the application starts must not fail or stall the start: the
    first export (on the batch processor's thread) or request pays for the connection.
    """

    def __init__(self, factory: Callable[[], KafkaProducer], retry_s: float = 2.0) -> None:
        self._factory = factory
        self._retry_s = retry_s
        self._producer: KafkaProducer | None = None
        self._next_attempt = 0.0
        self._lock = threading.Lock()
        self.last_error: str = ""

    def get(self) -> KafkaProducer | None:
        with self._lock:
            if self._producer is None and time.monotonic() >= self._next_attempt:
                try:
                    self._producer = self._factory()
                    self.last_error = ""
                except Exception as error:  # whatever stops the client from starting, Kafka is unavailable
                    self.last_error = f"{type(error).__name__}: {error}"
                    self._next_attempt = time.monotonic() + self._retry_s
                    log.warning("Kafka unavailable (%s); retrying in %.0fs", self.last_error, self._retry_s)
            return self._producer

    def flush(self, timeout_s: float) -> bool:
        producer = self._producer
        if producer is None:
            return True
        try:
            producer.flush(timeout=timeout_s)
        except KafkaError:
            return False
        return True

    def close(self, timeout_s: float) -> None:
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            producer.close(timeout=timeout_s)
