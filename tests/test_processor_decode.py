import math
import random

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.metrics.v1.metrics_pb2 import MetricsData
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from processors.decode import DECODED_FIELDS, FIELD, decode, message_text
from tests.processor_workload import _kv, http_span, make_calls, request_bytes


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
        assert field(row, "end_time") == (call.start_ns + call.latency_ns) // 1000
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


# --- every field by name, and each convention's real attribute set -------------------------------

START_NS = 1_780_000_000 * 10**9  # 2026-05-28


def one_span_request(
    attributes: dict[str, object],
    *,
    latency_ns: int = 1_500_000_000,
    error: bool = False,
    events: tuple[tuple[str, int, dict[str, object]], ...] = (),
    name: str = "chat",
    span_id: bytes = b"\x0a" * 8,
    resource: dict[str, object] | None = None,
) -> bytes:
    """An ExportTraceServiceRequest of one span with exactly these attributes (and events: name, ns after start)."""
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.extend(
        [_kv(k, v) for k, v in (resource or {"service.name": "app", "deployment.environment.name": "prod"}).items()]
    )
    span = Span(
        trace_id=b"\x0b" * 16, span_id=span_id, name=name, start_time_unix_nano=START_NS,
        end_time_unix_nano=START_NS + latency_ns, attributes=[_kv(k, v) for k, v in attributes.items()],
        status=Status(code=Status.STATUS_CODE_ERROR if error else Status.STATUS_CODE_UNSET),
    )  # fmt: skip
    for event_name, at_ns, event_attributes in events:
        span.events.add(
            name=event_name,
            time_unix_nano=START_NS + at_ns,
            attributes=[_kv(k, v) for k, v in event_attributes.items()],
        )
    resource_spans.scope_spans.add().spans.append(span)
    return request.SerializeToString()


def decoded_row(raw: bytes) -> dict[str, object]:
    decoded = decode(raw, partition=3, offset=7)
    assert decoded.error == "" and len(decoded.rows) == 1, decoded
    return dict(zip(DECODED_FIELDS, decoded.rows[0], strict=True))


def test_every_decoded_field_by_name():
    raw = one_span_request(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-5.5",
            "gen_ai.response.model": "gpt-5.5-2026-04-23",
            "gen_ai.usage.input_tokens": 1200,
            "gen_ai.usage.output_tokens": 300,
            "gen_ai.usage.cache_read.input_tokens": 200,
            "gen_ai.usage.reasoning.output_tokens": 100,
            "gen_ai.response.time_to_first_chunk": 0.5,
            "gen_ai.response.finish_reasons": ["stop"],
            "cutover.task": "rag",
            "cutover.client.timeout_s": 30.0,
            "cutover.shadow.pair_id": "pair-1",
            "cutover.shadow.role": "shadow",
            "cutover.refusal": True,
            "gen_ai.input.messages": '[{"role": "user", "parts": [{"type": "text", "content": "Q?"}]}]',
            "gen_ai.output.messages": '[{"role": "assistant", "parts": [{"type": "text", "content": "A."}]}]',
            "cutover.context": "ctx",
            "cutover.reference_answer": "ref",
        }
    )
    expected = {
        "trace_id": "0b" * 16, "span_id": "0a" * 8, "start_time": START_NS // 1000, "service": "app",
        "environment": "prod", "operation": "chat", "model": "gpt-5.5", "response_model": "gpt-5.5-2026-04-23",
        "provider": "openai", "task": "rag", "latency_ms": 1500.0, "ttft_ms": 500.0,
        "output_tokens_per_s": 300 * 1000 / 1000.0, "input_tokens": 1200, "cached_input_tokens": 200,
        "output_tokens": 300, "reasoning_tokens": 100, "is_error": False, "error_type": "", "finish_reason": "stop",
        "api_refusal": True, "client_timeout_s": 30.0, "is_timeout": False, "shadow_pair_id": "pair-1",
        "shadow_role": "shadow", "content_captured": True, "input_text": "Q?", "output_text": "A.",
        "context_text": "ctx", "reference_answer": "ref", "kafka_partition": 3, "kafka_offset": 7,
        "tokens_reported": True, "end_time": (START_NS + 1_500_000_000) // 1000,
    }  # fmt: skip
    assert set(expected) == set(DECODED_FIELDS)  # a new decoded field must be checked here too
    assert decoded_row(raw) == expected


def test_older_genai_semconv_as_openllmetry_0_47_sends_it():
    row = decoded_row(
        one_span_request(
            {
                "llm.request.type": "chat",
                "gen_ai.system": "openai",
                "gen_ai.request.model": "gpt-5.4",
                "gen_ai.response.model": "gpt-5.4-2026-03-05",
                "llm.is_streaming": False,
                "gen_ai.usage.prompt_tokens": 40,
                "gen_ai.usage.completion_tokens": 12,
                "llm.usage.total_tokens": 52,
                "gen_ai.prompt.0.role": "system",
                "gen_ai.prompt.0.content": "Be brief.",
                "gen_ai.prompt.1.role": "user",
                "gen_ai.prompt.1.content": "Capital of France?",
                "gen_ai.completion.0.role": "assistant",
                "gen_ai.completion.0.content": "Paris.",
                "gen_ai.completion.0.finish_reason": "stop",
                "gen_ai.openai.api_base": "http://127.0.0.1/v1/",
            }
        )
    )
    assert (row["operation"], row["provider"], row["model"]) == ("chat", "openai", "gpt-5.4")
    assert (row["input_tokens"], row["output_tokens"], row["tokens_reported"]) == (40, 12, True)
    assert row["input_text"] == "Be brief.\n\nCapital of France?" and row["output_text"] == "Paris."
    assert row["finish_reason"] == "stop" and row["content_captured"] is True and row["ttft_ms"] is None

    # 0.47 names reasoning under `llm.usage.*` and sends an API refusal's text as `refusal`.
    refused = decoded_row(
        one_span_request(
            {
                "llm.request.type": "chat", "gen_ai.system": "openai", "gen_ai.request.model": "gpt-5.4",
                "gen_ai.usage.prompt_tokens": 24, "gen_ai.usage.completion_tokens": 7,
                "llm.usage.reasoning_tokens": 2, "gen_ai.prompt.0.content": "Q?",
                "gen_ai.completion.0.role": "assistant", "gen_ai.completion.0.refusal": "I can't assist with that.",
            }
        )
    )  # fmt: skip
    assert (refused["reasoning_tokens"], refused["output_text"]) == (2, "I can't assist with that.")
    assert refused["api_refusal"] is True


def test_openllmetry_cache_reasoning_and_ttft_from_the_first_chunk_event():
    chunk = "llm.content.completion.chunk"
    row = decoded_row(
        one_span_request(
            {
                "llm.request.type": "chat",
                "gen_ai.system": "openai",
                "gen_ai.request.model": "gpt-5.5",
                "gen_ai.response.model": "gpt-5.5",
                "llm.is_streaming": True,
                "gen_ai.usage.input_tokens": 900,
                "gen_ai.usage.output_tokens": 80,
                "gen_ai.usage.cache_read_input_tokens": 512,
                "gen_ai.usage.reasoning_tokens": 30,
                "llm.usage.total_tokens": 980,
                "gen_ai.completion.0.finish_reason": "stop",
            },
            events=((chunk, 250_000_000, {}), (chunk, 300_000_000, {}), (chunk, 900_000_000, {})),
        )
    )
    assert (row["cached_input_tokens"], row["reasoning_tokens"]) == (512, 30)
    assert row["ttft_ms"] == 250.0 and row["finish_reason"] == "stop"
    assert math.isclose(row["output_tokens_per_s"], 80 * 1000 / 1250.0)

    # 0.62 marks a stream with `gen_ai.is_streaming` and each chunk with `gen_ai.content.completion.chunk`.
    newer = {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-5.5",
        "gen_ai.is_streaming": True, "gen_ai.usage.input_tokens": 24, "gen_ai.usage.output_tokens": 80,
    }  # fmt: skip
    chunks = [("gen_ai.content.completion.chunk", t, {}) for t in (60_000_000, 90_000_000)]
    assert decoded_row(one_span_request(newer, events=chunks))["ttft_ms"] == 60.0


def test_openlit_ttft_is_read_only_for_streamed_calls():
    common = {
        "gen_ai.system": "openai", "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-5.5",
        "gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": 20, "gen_ai.usage.cost": 0.0001,
        "gen_ai.response.finish_reasons": ["stop"],
    }  # fmt: skip
    streamed = {**common, "gen_ai.request.is_stream": True, "gen_ai.server.time_to_first_token": 0.4}
    assert decoded_row(one_span_request(streamed))["ttft_ms"] == 400.0
    plain = {**common, "gen_ai.request.is_stream": False, "gen_ai.server.time_to_first_token": 1.5}
    assert decoded_row(one_span_request(plain))["ttft_ms"] is None
    # 1.45 names the flag `gen_ai.request.stream`.
    newer = {**common, "gen_ai.request.stream": True, "gen_ai.server.time_to_first_token": 0.09}
    assert decoded_row(one_span_request(newer))["ttft_ms"] == 90.0
    newer_plain = {**common, "gen_ai.request.stream": False, "gen_ai.server.time_to_first_token": 0.5}
    assert decoded_row(one_span_request(newer_plain))["ttft_ms"] is None


def test_openinference_llm_spans_map_and_other_kinds_are_skipped():
    params = '{"model": "gpt-5.5", "stream": true, "temperature": 0}'
    row = decoded_row(
        one_span_request(
            {
                "openinference.span.kind": "LLM",
                "llm.model_name": "gpt-5.5-2026-04-23",
                "llm.system": "openai",
                "llm.provider": "openai",
                "llm.invocation_parameters": params,
                "llm.token_count.prompt": 700,
                "llm.token_count.completion": 60,
                "llm.token_count.total": 760,
                "llm.token_count.prompt_details.cache_read": 128,
                "llm.token_count.completion_details.reasoning": 20,
                "llm.input_messages.0.message.role": "user",
                "llm.input_messages.0.message.content": "Hi?",
                "llm.output_messages.0.message.role": "assistant",
                "llm.output_messages.0.message.contents.0.message_content.type": "text",
                "llm.output_messages.0.message.contents.0.message_content.text": "Hello",
                "llm.output_messages.0.message.contents.1.message_content.text": "there.",
                "llm.finish_reason": "stop",
                "input.value": params,
                "output.mime_type": "application/json",
            },
            events=[("First Token Stream Event", 120_000_000, {})],
            name="ChatCompletion",
        )
    )
    assert (row["model"], row["provider"], row["input_tokens"], row["output_tokens"]) == (
        "gpt-5.5-2026-04-23",
        "openai",
        700,
        60,
    )
    assert (row["cached_input_tokens"], row["reasoning_tokens"], row["ttft_ms"]) == (128, 20, 120.0)
    assert row["input_text"] == "Hi?" and row["output_text"] == "Hello\n\nthere." and row["finish_reason"] == "stop"

    # An error span names its model only in the invocation parameters; the error type comes from the event.
    failed = decoded_row(
        one_span_request(
            {"openinference.span.kind": "LLM", "llm.system": "openai", "llm.invocation_parameters": params},
            error=True,
            events=[("exception", 30_000_000, {"exception.type": "openai.RateLimitError", "exception.message": "429"})],
        )
    )
    assert (failed["model"], failed["is_error"], failed["error_type"]) == ("gpt-5.5", True, "RateLimitError")
    assert failed["tokens_reported"] is False

    # An API refusal's text is only in the response JSON (`output.value`).
    response = '{"choices": [{"message": {"refusal": "I can\'t assist with that.", "role": "assistant"}}]}'
    refused = decoded_row(
        one_span_request(
            {"openinference.span.kind": "LLM", "llm.model_name": "gpt-5.4", "llm.token_count.prompt": 24,
             "llm.token_count.completion": 7, "llm.output_messages.0.message.role": "assistant",
             "output.value": response},
        )
    )  # fmt: skip
    assert (refused["output_text"], refused["api_refusal"]) == ("I can't assist with that.", True)

    chain = decode(one_span_request({"openinference.span.kind": "CHAIN", "input.value": "x"}))
    assert (chain.rows, chain.skipped_non_genai, chain.error) == ([], 1, "")


def test_logfire_stream_result_span_carries_the_call_and_its_request_span_is_merged():
    request_data = '{"messages": [{"role": "user", "content": "Hi"}], "model": "gpt-5.5", "stream": true}'
    request_span = {
        "logfire.msg_template": "Chat Completion with {request_data[model]!r}", "request_data": request_data,
        "gen_ai.request.model": "gpt-5.5", "gen_ai.system": "openai", "gen_ai.operation.name": "chat",
        "logfire.span_type": "span",
    }  # fmt: skip
    result_span = {
        "logfire.msg_template": "streaming response from {request_data[model]!r} took {duration:.2f}s",
        "request_data": request_data, "duration": 2.5, "gen_ai.request.model": "gpt-5.5",
        "gen_ai.system": "openai", "gen_ai.response.model": "gpt-5.5-2026-04-23",
        "gen_ai.usage.input_tokens": 50, "gen_ai.usage.output_tokens": 25,
        "gen_ai.response.finish_reasons": '["stop"]', "logfire.span_type": "log",
    }  # fmt: skip
    merged = decode(one_span_request(request_span, latency_ns=40_000_000))
    assert (merged.rows, merged.merged, merged.error) == ([], 1, "")
    usage = '{"prompt_tokens": 50, "completion_tokens": 25, "completion_tokens_details": {"reasoning_tokens": 9}}'
    row = decoded_row(one_span_request({**result_span, "gen_ai.usage.raw": usage}, latency_ns=0))
    assert (row["reasoning_tokens"], row["cached_input_tokens"]) == (9, 0)
    assert row["latency_ms"] == 2500.0 and row["start_time"] == (START_NS - 2_500_000_000) // 1000
    assert (row["input_tokens"], row["output_tokens"], row["finish_reason"]) == (50, 25, "stop")

    # Logfire 5.x keeps only the model in `request_data`: the request span is still merged.
    only_model = {**request_span, "request_data": '{"model":"gpt-5.5"}', "gen_ai.input.messages": "[]"}
    assert decode(one_span_request(only_model, latency_ns=10_000_000)).merged == 1

    # A stream refused at the request (429) has no result span: its request span is the call.
    failed = decoded_row(one_span_request(request_span, latency_ns=40_000_000, error=True))
    assert (failed["is_error"], failed["latency_ms"], failed["tokens_reported"]) == (True, 40.0, False)

    # A call that did not stream is one span with its usage, as for any other library.
    plain = {**request_span, "request_data": request_data.replace("true", "false"), "gen_ai.usage.input_tokens": 9}
    assert decoded_row(one_span_request({**plain, "gen_ai.usage.output_tokens": 3}))["latency_ms"] == 1500.0


def test_error_type_is_the_exception_class_name():
    base = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-5.5"}
    v2 = decoded_row(one_span_request({**base, "error.type": "<class 'openai.RateLimitError'>"}, error=True))
    assert v2["error_type"] == "RateLimitError"
    timeout = decoded_row(one_span_request({**base, "error.type": "openai.APITimeoutError"}, error=True))
    assert (timeout["error_type"], timeout["is_timeout"]) == ("APITimeoutError", True)
    event = decoded_row(
        one_span_request(base, error=True, events=[("exception", 5, {"exception.type": "httpx.ReadTimeout"})])
    )
    assert (event["error_type"], event["is_timeout"]) == ("ReadTimeout", True)
    assert decoded_row(one_span_request({**base, "error.type": "500"}, error=True))["error_type"] == "500"
    builtin = decoded_row(one_span_request({**base, "error.type": "<class 'TimeoutError'>"}, error=True))
    assert (builtin["error_type"], builtin["is_timeout"]) == ("TimeoutError", True)
    assert decoded_row(one_span_request(base, error=True))["error_type"] == "_OTHER"


# --- values ClickHouse could reject, malformed attributes, unmappable spans -----------------------


def test_edge_values_are_made_safe_or_invalidate_only_their_own_span():
    base = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-5.5", "gen_ai.usage.output_tokens": 10}
    instant = decoded_row(one_span_request(base, latency_ns=0))
    assert instant["latency_ms"] == 0.0 and instant["output_tokens_per_s"] is None
    zero_ttft = decoded_row(one_span_request({**base, "gen_ai.response.time_to_first_chunk": 0.0}))
    assert zero_ttft["ttft_ms"] == 0.0
    odd_timeout = decoded_row(one_span_request({**base, "cutover.client.timeout_s": float("inf")}))
    assert odd_timeout["client_timeout_s"] is None and odd_timeout["is_timeout"] is False
    assert decoded_row(one_span_request({**base, "cutover.client.timeout_s": "nan"}))["client_timeout_s"] is None

    bad = {
        b"\x01" * 8: {**base, "gen_ai.response.time_to_first_chunk": float("nan")},
        b"\x02" * 8: {**base, "gen_ai.response.time_to_first_chunk": float("inf")},
        b"\x03" * 8: {**base, "gen_ai.response.time_to_first_chunk": -0.1},
        b"\x04" * 8: {**base, "gen_ai.usage.input_tokens": 2**40},
        b"\x05" * 8: {**base, "gen_ai.usage.output_tokens": "1e400"},
        b"\x06" * 8: {**base, "gen_ai.usage.input_tokens": -3},
        b"\x07" * 8: {**base, "gen_ai.usage.output_tokens": 2 * 10**8},  # its cost could overflow Decimal(18, 12)
    }
    for span_id, attributes in bad.items():
        decoded = decode(one_span_request(attributes, span_id=span_id))
        assert decoded.rows == [] and f"span {span_id.hex()}" in decoded.error, attributes


def test_missing_token_counts_are_flagged_not_zero_billed():
    row = decoded_row(one_span_request({"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-5.5"}))
    assert row["tokens_reported"] is False and (row["input_tokens"], row["output_tokens"]) == (0, 0)
    only_input = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-5.5", "gen_ai.usage.input_tokens": 5}
    assert decoded_row(one_span_request(only_input))["tokens_reported"] is True


def test_malformed_content_costs_nothing_but_its_own_text_and_other_calls_land():
    calls = make_calls(6, seed=2)
    request = ExportTraceServiceRequest.FromString(request_bytes(calls))
    spans = request.resource_spans[0].scope_spans[0].spans
    deep = "[" * 100_000 + "]" * 100_000
    spans[0].attributes.append(_kv("gen_ai.output.messages", '[{"parts": 5}]'))
    spans[1].attributes.append(_kv("gen_ai.input.messages", deep))
    spans[2].attributes.append(_kv("gen_ai.response.finish_reasons", deep))
    spans[3].attributes.append(_kv("gen_ai.prompt.x.content", "not an index"))
    decoded = decode(request.SerializeToString())
    assert decoded.error == "" and len(decoded.rows) == 6
    rows = [dict(zip(DECODED_FIELDS, row, strict=True)) for row in decoded.rows]
    assert rows[0]["output_text"] == "" and rows[0]["content_captured"] is True
    assert rows[1]["input_text"] == deep  # kept verbatim, as any content that is not message JSON


def test_a_span_that_looks_like_an_llm_call_but_cannot_be_mapped_is_reported_by_name():
    calls = make_calls(3, seed=2)
    request = ExportTraceServiceRequest.FromString(request_bytes(calls))
    odd = request.resource_spans[0].scope_spans[0].spans.add(
        trace_id=b"\x0c" * 16, span_id=b"\x0d" * 8, name="my_llm_wrapper", start_time_unix_nano=START_NS,
        end_time_unix_nano=START_NS + 10,
    )  # fmt: skip
    odd.attributes.append(_kv("gen_ai.usage.input_tokens", 10))
    decoded = decode(request.SerializeToString())
    assert len(decoded.rows) == 3
    assert "'my_llm_wrapper' looks like an LLM call (gen_ai.usage.input_tokens)" in decoded.error
