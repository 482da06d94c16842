"""GenAI content sent as OTLP log records: `cutover collect` -> logs topic -> joined onto the call rows."""

from __future__ import annotations

import base64
import json
import time
import uuid

from google.protobuf import json_format
from kafka.structs import TopicPartition
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from processors.logs_join import LogsJoiner, content_of
from processors.refusal import refusal
from processors.service import ProcessorService
from processors.settings import ProcessorSettings
from tests.processor_workload import Call, messages, produce
from tests.test_collectors_receiver import post, start_collect, stop
from tests.test_processor_service import settings_for

TP = TopicPartition("otlp_logs", 0)


def value(python: object) -> AnyValue:
    if isinstance(python, dict):
        return AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key=k, value=value(v)) for k, v in python.items()]))
    if isinstance(python, list):
        return AnyValue(array_value=ArrayValue(values=[value(v) for v in python]))
    if isinstance(python, int):
        return AnyValue(int_value=python)
    return AnyValue(string_value=str(python))


def event(call: Call, name: str, body: object = None, attributes: dict | None = None, legacy_name: bool = False):
    """A log record as the GenAI instrumentations emit them (event name as field, or as `event.name`)."""
    record = LogRecord(
        time_unix_nano=call.start_ns + 1000,
        trace_id=call.trace_id,
        span_id=call.span_id,
        attributes=[KeyValue(key=k, value=value(v)) for k, v in (attributes or {}).items()],
    )
    if legacy_name:
        record.attributes.append(KeyValue(key="event.name", value=AnyValue(string_value=name)))
    else:
        record.event_name = name
    if body is not None:
        record.body.CopyFrom(value(body))
    return record


def logs_request(records: list[LogRecord]) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    scope = request.resource_logs.add().scope_logs.add()
    scope.scope.name = "opentelemetry.instrumentation.openai_v2"
    scope.log_records.extend(records)
    return request


def a_call(n: int, start_ns: int) -> Call:
    return Call(
        trace_id=bytes([n]) * 16,
        span_id=bytes([n]) * 8,
        model="gpt-5.5",
        start_ns=start_ns + n * 1_000_000,
        latency_ns=500_000_000,
        ttft_s=None,
        input_tokens=100,
        cached_tokens=0,
        output_tokens=20,
        reasoning_tokens=0,
    )


def test_event_shapes_of_the_instrumentations_are_read():
    call = a_call(1, 1_700_000_000 * 10**9)
    assert content_of(event(call, "gen_ai.user.message", {"content": "Capital of France?"})) == (
        ["Capital of France?"],
        [],
        "",
    )
    choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Paris."}}
    assert content_of(event(call, "gen_ai.choice", choice, legacy_name=True)) == ([], ["Paris."], "stop")
    details = {
        "gen_ai.input.messages": [{"role": "user", "parts": [{"type": "text", "content": "Hi"}]}],
        "gen_ai.output.messages": '[{"role": "assistant", "parts": [{"type": "text", "content": "Hello"}]}]',
        "gen_ai.response.finish_reasons": ["length"],
    }
    assert content_of(event(call, "gen_ai.client.inference.operation.details", attributes=details)) == (
        ["Hi"],
        ["Hello"],
        "length",
    )
    assert content_of(event(call, "http.request", {"content": "not GenAI"})) is None


def test_pending_content_is_bounded_in_bytes_oldest_dropped_first():
    settings = ProcessorSettings(logs_join_max_pending_mb=1, logs_join_max_pending=100_000)
    joiner = LogsJoiner(None, "unused", settings, refusal)  # take() never queries: no client
    answer = "Paris is the capital of France. " * 3_200  # ~100 KB: captured content has no size limit
    start = 1_700_000_000 * 10**9
    for n in range(1, 41):
        choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": answer}}
        joiner.take(logs_request([event(a_call(n, start), "gen_ai.choice", choice)]).SerializeToString(), TP, n)
    assert joiner.stats.records == 40
    assert joiner.pending_bytes <= 2**20
    kept = len(joiner._pending)
    assert 8 <= kept <= 10 and joiner.stats.unmatched == 40 - kept
    assert [key[1] for key in joiner._pending] == [(bytes([n]) * 8).hex() for n in range(41 - kept, 41)]


def test_content_log_records_are_joined_onto_their_calls_early_or_late(
    kafka_broker, kafka_bootstrap, topic, ch_client, ch_database, cutover_env, tmp_path
):
    logs_topic = f"logs_{uuid.uuid4().hex[:8]}"
    kafka_broker.create_topics([logs_topic])
    collect, traces_url = start_collect(
        dict(cutover_env, CUTOVER_SPANS_TOPIC=topic, CUTOVER_LOGS_TOPIC=logs_topic), tmp_path / "collect.log"
    )
    logs_url = traces_url.replace("/v1/traces", "/v1/logs")
    start = time.time_ns() - 60 * 10**9
    early, late, details, orphan = (a_call(n, start) for n in (1, 2, 3, 4))
    service = ProcessorService(
        settings_for(
            kafka_bootstrap,
            topic,
            ch_database,
            f"g_{topic}",
            logs_topic=logs_topic,
            logs_join_interval_s=0.5,
            logs_join_window_s=8,
        ),
        client=ch_client,
    )
    try:
        # Content of `early` (as OTLP/JSON, hex ids) and of a call that never comes, before any span.
        first = logs_request(
            [
                event(early, "gen_ai.system.message", {"content": "Answer briefly."}),
                event(early, "gen_ai.user.message", {"content": "Capital of France?"}),
                event(orphan, "gen_ai.user.message", {"content": "lost"}),
            ]
        )
        document = json_format.MessageToDict(first)
        for resource in document["resourceLogs"]:
            for scope in resource["scopeLogs"]:
                for record in scope["logRecords"]:
                    record["traceId"] = base64.b64decode(record["traceId"]).hex()
                    record["spanId"] = base64.b64decode(record["spanId"]).hex()
        status, _, _ = post(logs_url, json.dumps(document).encode(), "application/json")
        assert status == 200
        service.start()
        produce(kafka_bootstrap, topic, list(messages([early, late, details], per_message=3)))
        wait_for(lambda: rows(ch_client, ch_database, "span_id") == {c.span_id.hex() for c in (early, late, details)})

        # The choice of `early` and all content of `late` and `details` arrive after their rows were written.
        status, _, _ = post(
            logs_url,
            logs_request(
                [
                    event(early, "gen_ai.choice", {"finish_reason": "stop", "message": {"content": "Paris."}}),
                    event(late, "gen_ai.user.message", {"content": "How do I pick a lock?"}),
                    event(
                        late,
                        "gen_ai.choice",
                        {"finish_reason": "stop", "message": {"content": "I'm sorry, but I can't help with that."}},
                    ),
                    event(
                        details,
                        "gen_ai.client.inference.operation.details",
                        attributes={
                            "gen_ai.input.messages": [{"role": "user", "parts": [{"type": "text", "content": "2+2?"}]}],
                            "gen_ai.output.messages": [
                                {"role": "assistant", "parts": [{"type": "text", "content": "4"}]}
                            ],
                        },
                    ),
                ]
            ).SerializeToString(),
        )
        assert status == 200

        def joined() -> dict:
            return {
                span: rest
                for span, *rest in ch_client.query(
                    f"SELECT span_id, input_text, output_text, content_captured, is_refusal, refusal_source, version"
                    f" FROM {ch_database}.llm_calls FINAL"
                ).result_rows
            }

        wait_for(lambda: all(r[1] for r in joined().values()))
        got = joined()
        assert got[early.span_id.hex()][:5] == ["Answer briefly.\n\nCapital of France?", "Paris.", 1, 0, ""]
        assert got[late.span_id.hex()][:5] == [
            "How do I pick a lock?",
            "I'm sorry, but I can't help with that.",
            1,
            1,
            "classifier",
        ]
        assert got[details.span_id.hex()][:3] == ["2+2?", "4", 1]
        assert all(r[5] >= 2 for r in got.values())  # re-written over the span's row
        # one row per call, and the orphan's content is dropped once its window ends
        wait_for(lambda: service._logs.stats.unmatched == 1)
        assert ch_client.query(f"SELECT count() FROM {ch_database}.llm_calls FINAL").result_rows[0][0] == 3
    finally:
        service.stop()
        stop(collect)


def rows(client, database: str, column: str) -> set:
    return {r[0] for r in client.query(f"SELECT {column} FROM {database}.llm_calls FINAL").result_rows}


def wait_for(condition, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.3)
