import math
import random

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.metrics.v1.metrics_pb2 import MetricsData

from processors.decode import FIELD, decode, message_text
from tests.processor_workload import http_span, make_calls, request_bytes


def field(row, name):
    return row[FIELD[name]]


def test_one_row_per_genai_span_with_exact_values_and_non_genai_spans_skipped():
    calls = make_calls(40, seed=3)
    raw = request_bytes(calls, [http_span(calls[0].trace_id, b"\x01" * 8, calls[0].start_ns)])
    decoded = decode(raw, partition=2, offset=99)
    assert decoded.error == ""
    assert decoded.spans == 41 and decoded.skipped_non_genai == 1
    assert len(decoded.rows) == 40
    for call, row in zip(calls, decoded.rows, strict=True):
        assert field(row, "span_id") == call.span_id.hex() and field(row, "trace_id") == call.trace_id.hex()
        assert field(row, "start_time") == call.start_ns // 1000
        assert field(row, "latency_ms") == call.latency_ns / 1e6
        assert field(row, "model") == call.model and field(row, "service") == "support-bot"
        assert field(row, "environment") == "test" and field(row, "operation") == "chat"
        assert (field(row, "input_tokens"), field(row, "cached_input_tokens")) == (
            call.input_tokens,
            call.cached_tokens,
        )
        assert (field(row, "output_tokens"), field(row, "reasoning_tokens")) == (
            call.output_tokens,
            call.reasoning_tokens,
        )
        assert field(row, "api_refusal") == call.api_refusal
        assert field(row, "finish_reason") == call.finish_reason
        assert field(row, "is_error") == bool(call.error_type)
        assert field(row, "is_timeout") == ("Timeout" in call.error_type)
        assert (field(row, "kafka_partition"), field(row, "kafka_offset")) == (2, 99)
        if call.ttft_s is None:
            assert field(row, "ttft_ms") is None
        else:
            assert field(row, "ttft_ms") == call.ttft_s * 1000
        tps = field(row, "output_tokens_per_s")
        if call.error_type:
            assert tps is None
        else:
            generation_ms = call.latency_ms - (call.ttft_s * 1000 if call.ttft_s is not None else 0)
            assert math.isclose(tps, call.output_tokens * 1000 / generation_ms, rel_tol=1e-12)


def test_content_is_extracted_from_genai_message_json():
    calls = make_calls(40, seed=3)
    captured = [c for c in calls if c.output_text]
    assert captured
    row = decode(request_bytes(captured)).rows[0]
    assert field(row, "content_captured") is True
    assert field(row, "output_text") == "Paris is the capital of France."
    assert field(row, "input_text") == "Capital of France?"
    assert message_text("not json at all") == "not json at all"
    assert message_text('[{"role": "assistant", "content": "old style"}]') == "old style"


def test_random_truncated_and_foreign_bytes_are_errors_with_reasons():
    raw = request_bytes(make_calls(5, seed=1))
    rng = random.Random(5)
    assert decode(None).error.startswith("empty message")
    truncated = decode(raw[: len(raw) // 2])
    assert truncated.error.startswith("undecodable") and truncated.rows == []
    assert all(decode(rng.randbytes(200)).error for _ in range(50))
    assert "holds no spans" in decode(b"").error
    foreign = MetricsData()
    foreign.resource_metrics.add().resource.attributes.add(key="service.name").value.string_value = "x"
    assert decode(foreign.SerializeToString()).error  # parses under another schema, still rejected


def test_invalid_genai_spans_are_reported_and_valid_ones_kept():
    calls = make_calls(6, seed=2)
    request = ExportTraceServiceRequest.FromString(request_bytes(calls))
    spans = request.resource_spans[0].scope_spans[0].spans
    spans[0].span_id = b"\x01\x02"  # wrong length
    spans[1].end_time_unix_nano = spans[1].start_time_unix_nano - 1
    for kv in spans[2].attributes:
        if kv.key == "gen_ai.usage.cache_read.input_tokens":
            kv.value.int_value = 10**9  # more cached than input
    decoded = decode(request.SerializeToString())
    assert len(decoded.rows) == 3
    assert "3 of 6 spans not written" in decoded.error
    assert "span 0102" in decoded.error and "end time before start time" in decoded.error and "cached" in decoded.error
