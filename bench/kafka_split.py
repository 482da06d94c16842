"""Cost of putting spans on Kafka the kafkaexporter way, next to the bare protobuf work it adds to.

    .venv/bin/python bench/kafka_split.py [--spans 100000] [--per-trace 2]

Measures in one run, pinned to one CPU, on SDK spans shaped like an instrumented app's
(an app span and GenAI spans per trace, GenAI attributes, one resource):
  1. bare upb parse of 512-span `ExportTraceServiceRequest`s (what every consumer pays),
  2. `cutover collect`'s hot path: parse + `split_by_trace` (one message per trace and scope),
  3. the SDK's `encode_spans` of 512 spans (what the stock OTLP exporter pays per batch),
  4. our Kafka span exporter's hot path: `encode_spans` + `split_by_trace`,
and prints spans/s of each and the ratios.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans  # noqa: E402
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

from collectors.otlp_kafka import split_by_trace  # noqa: E402
from cutover import semconv  # noqa: E402

BATCH = 512  # the SDK's default export batch


def make_spans(count: int, per_trace: int) -> list[ReadableSpan]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create({"service.name": "bench", "deployment.environment.name": "bench"})
    )
    provider.add_span_processor(SimpleSpanProcessor(memory))
    app, genai = provider.get_tracer("app"), provider.get_tracer("opentelemetry.instrumentation.genai.openai", "1.3b0")
    attributes = {
        semconv.OPERATION: "chat",
        semconv.PROVIDER: "openai",
        semconv.REQUEST_MODEL: "gpt-5.5",
        semconv.RESPONSE_MODEL: "gpt-5.5-2026-01-01",
        semconv.INPUT_TOKENS: 1200,
        semconv.OUTPUT_TOKENS: 300,
        semconv.CACHE_READ_INPUT_TOKENS: 800,
        semconv.REASONING_OUTPUT_TOKENS: 120,
        semconv.TASK: "rag",
        semconv.REFUSAL: False,
    }
    for _ in range(count // per_trace):
        with app.start_as_current_span("request"):
            for _ in range(per_trace - 1):
                genai.start_span("chat gpt-5.5", attributes=attributes).end()
    provider.shutdown()
    return list(memory.get_finished_spans())


def timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spans", type=int, default=100_000)
    parser.add_argument("--per-trace", type=int, default=2)
    args = parser.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

    spans = make_spans(args.spans, args.per_trace)
    batches = [spans[i : i + BATCH] for i in range(0, len(spans), BATCH)]
    bodies = [encode_spans(batch).SerializeToString() for batch in batches]
    total = len(spans)

    parse_s = timed(lambda: [ExportTraceServiceRequest.FromString(body) for body in bodies])
    collect_s = timed(lambda: [split_by_trace(ExportTraceServiceRequest.FromString(body)) for body in bodies])
    encode_s = timed(lambda: [encode_spans(batch) for batch in batches])
    export_s = timed(lambda: [split_by_trace(encode_spans(batch)) for batch in batches])
    messages = sum(len(split_by_trace(ExportTraceServiceRequest.FromString(body))) for body in bodies)

    def rate(seconds: float) -> str:
        return f"{total / seconds:>12,.0f} spans/s"

    print(
        f"{total:,} spans, {args.per_trace} per trace, in {len(bodies)} requests of {BATCH} -> {messages:,} Kafka messages; one core"
    )
    print(f"bare protobuf parse            {rate(parse_s)}")
    print(f"collect: parse + split         {rate(collect_s)}   {parse_s / collect_s:6.1%} of bare parse")
    print(f"SDK encode_spans               {rate(encode_s)}")
    print(f"exporter: encode + split       {rate(export_s)}   {encode_s / export_s:6.1%} of encode alone")


if __name__ == "__main__":
    main()
