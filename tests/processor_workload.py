"""A GenAI span workload with known ground truth, as OTLP protobuf messages on Kafka.

Used by the processor tests and `bench/processor.py`: every call's latency, tokens, error
and refusal are chosen here, so tests compare ClickHouse against exact expected values.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from cutover import kafka_clients, semconv
from cutover.kafka_clients import KafkaConnection

MODELS = ("gpt-5.4", "gpt-5.5", "mystery-model")  # the last one is not in the price book


@dataclass
class Call:
    trace_id: bytes
    span_id: bytes
    model: str
    start_ns: int
    latency_ns: int
    ttft_s: float | None
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    reasoning_tokens: int
    api_refusal: bool = False
    finish_reason: str = "stop"
    error_type: str = ""
    client_timeout_s: float | None = None
    task: str = "knowledge"
    output_text: str = ""
    provider: str = "openai"

    @property
    def latency_ms(self) -> float:
        return self.latency_ns / 1e6

    @property
    def in_histograms(self) -> bool:
        """Counted in latency distributions: successes and timeouts, not fast failures."""
        return not self.error_type or "Timeout" in self.error_type


def _kv(key: str, value: object) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    if isinstance(value, list):
        return KeyValue(
            key=key, value=AnyValue(array_value=ArrayValue(values=[AnyValue(string_value=v) for v in value]))
        )
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


def span_of(call: Call) -> Span:
    attributes = [
        _kv(semconv.OPERATION, "chat"),
        _kv(semconv.PROVIDER, call.provider),
        _kv(semconv.REQUEST_MODEL, call.model),
        _kv(semconv.RESPONSE_MODEL, call.model),
        _kv(semconv.INPUT_TOKENS, call.input_tokens),
        _kv(semconv.OUTPUT_TOKENS, call.output_tokens),
        _kv(semconv.CACHE_READ_INPUT_TOKENS, call.cached_tokens),
        _kv(semconv.REASONING_OUTPUT_TOKENS, call.reasoning_tokens),
        _kv(semconv.FINISH_REASONS, [call.finish_reason]),
        _kv(semconv.TASK, call.task),
        _kv("http.route", "/v1/chat/completions"),  # an attribute the processor ignores
    ]
    if call.ttft_s is not None:
        attributes.append(_kv(semconv.TIME_TO_FIRST_CHUNK, call.ttft_s))
    if call.api_refusal:
        attributes.append(_kv(semconv.REFUSAL, True))
    if call.client_timeout_s is not None:
        attributes.append(_kv(semconv.CLIENT_TIMEOUT, call.client_timeout_s))
    if call.error_type:
        attributes.append(_kv(semconv.ERROR_TYPE, call.error_type))
    if call.output_text:
        attributes.append(
            _kv(
                semconv.INPUT_MESSAGES,
                json.dumps([{"role": "user", "parts": [{"type": "text", "content": "Capital of France?"}]}]),
            )
        )
        attributes.append(
            _kv(
                semconv.OUTPUT_MESSAGES,
                json.dumps(
                    [
                        {
                            "role": "assistant",
                            "parts": [{"type": "text", "content": call.output_text}],
                            "finish_reason": call.finish_reason,
                        }
                    ]
                ),
            )
        )
    return Span(
        trace_id=call.trace_id,
        span_id=call.span_id,
        name=f"chat {call.model}",
        kind=Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=call.start_ns,
        end_time_unix_nano=call.start_ns + call.latency_ns,
        attributes=attributes,
        status=Status(code=Status.STATUS_CODE_ERROR if call.error_type else Status.STATUS_CODE_UNSET),
    )


def http_span(trace_id: bytes, span_id: bytes, start_ns: int) -> Span:
    """A non-GenAI span of the same trace, as the SDK exports alongside the model calls."""
    return Span(
        trace_id=trace_id, span_id=span_id, name="GET /answer", start_time_unix_nano=start_ns,
        end_time_unix_nano=start_ns + 5_000_000, attributes=[_kv("http.request.method", "GET")],
    )  # fmt: skip


def request_bytes(calls: list[Call], extra_spans: Sequence[Span] = (), service: str = "support-bot") -> bytes:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.extend([_kv(semconv.SERVICE_NAME, service), _kv(semconv.ENVIRONMENT, "test")])
    scope = resource_spans.scope_spans.add()
    scope.scope.name = "opentelemetry.instrumentation.genai.openai"
    scope.spans.extend([span_of(c) for c in calls])
    scope.spans.extend(extra_spans)
    return request.SerializeToString()


def make_calls(n: int, seed: int = 7, start_ns: int | None = None, spread_s: float = 1200.0) -> list[Call]:
    """n calls over `spread_s` seconds ending a few minutes ago, with lognormal latencies per model."""
    rng = random.Random(seed)
    first = start_ns if start_ns is not None else time.time_ns() - int((spread_s + 300) * 1e9)
    calls = []
    for i in range(n):
        model = MODELS[i % 3] if i % 10 else MODELS[i % 2]
        median_s = {"gpt-5.4": 1.2, "gpt-5.5": 0.9, "mystery-model": 2.0}[model]
        latency_ns = max(1_000_000, int(rng.lognormvariate(0, 0.6) * median_s * 1e9))
        stream = i % 2 == 0
        ttft_s = round(latency_ns / 1e9 * rng.uniform(0.05, 0.4), 6) if stream else None
        input_tokens = rng.randint(50, 20_000)
        output_tokens = rng.randint(1, 4_000)
        call = Call(
            trace_id=rng.randbytes(16),
            span_id=rng.randbytes(8),
            model=model,
            start_ns=first + int(rng.uniform(0, spread_s) * 1e9),
            latency_ns=latency_ns,
            ttft_s=ttft_s,
            input_tokens=input_tokens,
            cached_tokens=rng.randint(0, input_tokens) if i % 3 == 0 else 0,
            output_tokens=output_tokens,
            reasoning_tokens=rng.randint(0, output_tokens) if i % 4 == 0 else 0,
            task=("coding", "knowledge", "rag")[i % 3],
        )
        if i % 17 == 0:
            call.api_refusal = True
        elif i % 23 == 0:
            call.finish_reason = "content_filter"
        elif i % 29 == 0:
            call.error_type, call.latency_ns, call.output_tokens, call.reasoning_tokens = (
                "RateLimitError",
                30_000_000,
                0,
                0,
            )
        elif i % 31 == 0:
            call.error_type, call.client_timeout_s = "APITimeoutError", 2.0
            call.latency_ns, call.output_tokens, call.reasoning_tokens, call.ttft_s = 2_000_000_000, 0, 0, None
        elif i % 37 == 0:
            call.output_text = "Paris is the capital of France."
        calls.append(call)
    return calls


def messages(calls: list[Call], per_message: int = 20) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) Kafka messages of `per_message` calls each, plus one HTTP span per message."""
    for at in range(0, len(calls), per_message):
        chunk = calls[at : at + per_message]
        extra = [http_span(chunk[0].trace_id, bytes(8 - len(str(at))) + str(at).encode(), chunk[0].start_ns)]
        yield chunk[0].trace_id.hex().encode(), request_bytes(chunk, extra)


def produce(
    bootstrap: str, topic: str, items: Sequence[tuple[bytes | None, bytes]], compression_type: str | None = None
) -> None:
    producer = kafka_clients.producer(
        KafkaConnection.plaintext(bootstrap),
        "test",
        acks="all",
        linger_ms=20,
        max_request_size=16_777_216,
        compression_type=compression_type,
    )
    for key, value in items:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()
