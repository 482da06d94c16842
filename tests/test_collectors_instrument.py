"""collectors.instrument on the real openai SDK, the official instrumentor and the real Kafka broker.

The OpenAI-compatible server here is a fixture that answers fixed completions (and refuses
when the prompt says "refuse"), so every attribute can be asserted exactly.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import openai
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from collectors.instrument import Instrumentation, instrument
from collectors.labels import call_labels
from collectors.otlp_kafka import sarama_partition
from collectors.settings import CollectorSettings
from cutover import kafka_clients, semconv
from cutover.kafka_clients import KafkaConnection

REFUSAL_TEXT = "I'm sorry, I can't help with that."
ANSWER = "Paris is the capital of France."
USAGE = {
    "prompt_tokens": 20,
    "completion_tokens": 12,
    "total_tokens": 32,
    "prompt_tokens_details": {"cached_tokens": 8},
    "completion_tokens_details": {"reasoning_tokens": 5},
}


class _OpenAIFixture(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        return None

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path.endswith("/chat/completions"):
            prompt = body["messages"][-1]["content"]
            refuse = "refuse" in prompt
            if body.get("stream"):
                return self._stream_chat(body, refuse)
            message = (
                {"role": "assistant", "content": None, "refusal": REFUSAL_TEXT}
                if refuse
                else {"role": "assistant", "content": ANSWER, "refusal": None}
            )
            return self._json(
                {
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body["model"] + "-2026-01-01",
                    "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                    "usage": USAGE,
                }
            )
        if self.path.endswith("/responses"):
            refuse = "refuse" in json.dumps(body["input"])
            part = (
                {"type": "refusal", "refusal": REFUSAL_TEXT}
                if refuse
                else {"type": "output_text", "text": ANSWER, "annotations": []}
            )
            response = {
                "id": "resp_1",
                "object": "response",
                "created_at": int(time.time()),
                "model": body["model"],
                "status": "completed",
                "output": [
                    {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed", "content": [part]}
                ],
                "parallel_tool_calls": True,
                "tool_choice": "auto",
                "tools": [],
                "usage": {
                    "input_tokens": 20,
                    "input_tokens_details": {"cached_tokens": 8},
                    "output_tokens": 12,
                    "output_tokens_details": {"reasoning_tokens": 5},
                    "total_tokens": 32,
                },
            }
            if body.get("stream"):
                return self._stream_response(response, part)
            return self._json(response)
        self.send_error(404)

    def _json(self, document: dict) -> None:
        payload = json.dumps(document).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _stream_response(self, response: dict, part: dict) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        refuse = part["type"] == "refusal"
        kind = "refusal" if refuse else "output_text"
        where = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
        events: list[dict[str, object]] = [
            {"type": "response.created", "response": {**response, "status": "in_progress", "output": [], "usage": None}}
        ]
        events += [
            {"type": f"response.{kind}.delta", "delta": word + " ", **where}
            for word in (part.get("refusal") or part["text"]).split(" ")
        ]
        events += [
            {"type": f"response.{kind}.done", kind if refuse else "text": part.get("refusal") or part["text"], **where}
        ]
        events += [{"type": "response.completed", "response": response}]
        for number, event in enumerate(events):
            time.sleep(0.01)
            self.wfile.write(
                f"event: {event['type']}\ndata: {json.dumps({**event, 'sequence_number': number})}\n\n".encode()
            )
        self.wfile.flush()

    def _stream_chat(self, body: dict, refuse: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        base = {
            "id": "chatcmpl-2",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body["model"],
        }
        field = "refusal" if refuse else "content"
        words = (REFUSAL_TEXT if refuse else ANSWER).split(" ")
        chunks = [
            {"index": 0, "delta": {"role": "assistant", "content": None if refuse else ""}, "finish_reason": None}
        ]
        chunks += [{"index": 0, "delta": {field: word + " "}, "finish_reason": None} for word in words]
        chunks += [{"index": 0, "delta": {}, "finish_reason": "stop"}]
        for choice in chunks:
            time.sleep(0.01)
            self.wfile.write(f"data: {json.dumps({**base, 'choices': [choice]})}\n\n".encode())
        if (body.get("stream_options") or {}).get("include_usage"):
            self.wfile.write(f"data: {json.dumps({**base, 'choices': [], 'usage': USAGE})}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()


@pytest.fixture(scope="module")
def openai_base_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OpenAIFixture)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


@pytest.fixture
def memory() -> Iterator[Instrumentation]:
    """instrument() with the SDK's in-memory exporter, for exact attribute checks."""
    inst = instrument(
        service_name="svc-test", environment="test", settings=CollectorSettings(), exporter=InMemorySpanExporter()
    )
    yield inst
    inst.shutdown()


def _client(base_url: str, timeout: float | openai.NotGiven = openai.NOT_GIVEN) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key="test", max_retries=0, timeout=timeout)


def _genai_spans(inst: Instrumentation) -> list[ReadableSpan]:
    assert inst.force_flush()
    assert isinstance(inst.exporter, InMemorySpanExporter)  # the `memory` fixture's
    spans = [span for span in inst.exporter.get_finished_spans() if semconv.OPERATION in (span.attributes or {})]
    return sorted(spans, key=lambda span: span.start_time or 0)  # a finished span has its start time


def _only_genai_span(inst: Instrumentation) -> dict:
    (span,) = _genai_spans(inst)
    return dict(span.attributes or {})


def test_chat_span_has_genai_conventions_labels_and_timeout(memory, openai_base_url):
    client = _client(openai_base_url, timeout=42.0)
    with call_labels(task="rag", shadow_pair_id="pair-1", shadow_role="primary", tenant="acme"):
        reply = client.chat.completions.create(
            model="gpt-5.4", messages=[{"role": "user", "content": "Capital of France?"}]
        )
    assert reply.choices[0].message.content == ANSWER
    attributes = _only_genai_span(memory)
    assert attributes[semconv.PROVIDER] == "openai"
    assert attributes[semconv.OPERATION] == "chat"
    assert attributes[semconv.REQUEST_MODEL] == "gpt-5.4"
    assert attributes[semconv.RESPONSE_MODEL] == "gpt-5.4-2026-01-01"
    assert attributes[semconv.INPUT_TOKENS] == 20 and attributes[semconv.OUTPUT_TOKENS] == 12
    assert attributes[semconv.CACHE_READ_INPUT_TOKENS] == 8
    assert attributes[semconv.REASONING_OUTPUT_TOKENS] == 5
    assert attributes[semconv.TASK] == "rag"
    assert attributes[semconv.SHADOW_PAIR_ID] == "pair-1" and attributes[semconv.SHADOW_ROLE] == "primary"
    assert attributes[semconv.LABEL_PREFIX + "tenant"] == "acme"
    assert attributes[semconv.CLIENT_TIMEOUT] == 42.0  # read from the client, not passed in the labels
    assert attributes[semconv.REFUSAL] is False
    # content capture is off by default: no prompts, responses or reference material on the span
    assert semconv.INPUT_MESSAGES not in attributes and semconv.OUTPUT_MESSAGES not in attributes


def test_label_timeout_and_nested_labels_override(memory, openai_base_url):
    client = _client(openai_base_url)
    with call_labels(task="coding", team="a"), call_labels(timeout_s=7.5, team="b"):
        client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "hi"}], timeout=99)
    attributes = _only_genai_span(memory)
    assert attributes[semconv.TASK] == "coding"
    assert attributes[semconv.CLIENT_TIMEOUT] == 7.5
    assert attributes[semconv.LABEL_PREFIX + "team"] == "b"


def test_api_refusal_sets_the_refusal_attribute(memory, openai_base_url):
    client = _client(openai_base_url)
    reply = client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "please refuse"}])
    assert reply.choices[0].message.refusal == REFUSAL_TEXT
    assert _only_genai_span(memory)[semconv.REFUSAL] is True


@pytest.mark.parametrize("refuse", [False, True])
def test_streamed_chat_records_time_to_first_chunk_and_refusal(memory, openai_base_url, refuse):
    client = _client(openai_base_url)
    prompt = "please refuse" if refuse else "Capital of France?"
    stream = client.chat.completions.create(
        model="gpt-5.5",
        messages=[{"role": "user", "content": prompt}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text = "".join(
        (chunk.choices[0].delta.refusal or chunk.choices[0].delta.content or "") for chunk in stream if chunk.choices
    )
    assert text.strip() == (REFUSAL_TEXT if refuse else ANSWER)
    attributes = _only_genai_span(memory)
    assert attributes[semconv.TIME_TO_FIRST_CHUNK] > 0
    assert attributes[semconv.OUTPUT_TOKENS] == 12
    assert attributes[semconv.REFUSAL] is refuse


@pytest.mark.parametrize("refuse", [False, True])
def test_responses_api_refusal_part(memory, openai_base_url, refuse):
    client = _client(openai_base_url)
    response = client.responses.create(model="gpt-5.5", input="please refuse" if refuse else "Capital of France?")
    assert response.output[0].content[0].type == ("refusal" if refuse else "output_text")
    attributes = _only_genai_span(memory)
    assert attributes[semconv.CACHE_READ_INPUT_TOKENS] == 8 and attributes[semconv.REASONING_OUTPUT_TOKENS] == 5
    assert attributes[semconv.REFUSAL] is refuse


@pytest.mark.parametrize("refuse", [False, True])
def test_streamed_responses_api_refusal(memory, openai_base_url, refuse):
    client = _client(openai_base_url)
    stream = client.responses.create(
        model="gpt-5.5", input="please refuse" if refuse else "Capital of France?", stream=True
    )
    kinds = {event.type for event in stream}
    assert ("response.refusal.delta" in kinds) is refuse
    attributes = _only_genai_span(memory)
    assert attributes[semconv.TIME_TO_FIRST_CHUNK] > 0
    assert attributes[semconv.OUTPUT_TOKENS] == 12
    assert attributes[semconv.REFUSAL] is refuse


def test_async_client_and_async_stream(memory, openai_base_url):
    async def calls() -> str:
        client = openai.AsyncOpenAI(base_url=openai_base_url, api_key="test", max_retries=0)
        with call_labels(task="simple"):
            await client.chat.completions.create(
                model="gpt-5.5", messages=[{"role": "user", "content": "please refuse"}]
            )
            stream = await client.chat.completions.create(
                model="gpt-5.5", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            return "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])

    assert asyncio.run(calls()).strip() == ANSWER
    spans = _genai_spans(memory)
    assert [span.attributes[semconv.REFUSAL] for span in spans] == [True, False]
    assert all(span.attributes[semconv.TASK] == "simple" for span in spans)
    assert semconv.TIME_TO_FIRST_CHUNK in spans[1].attributes


def test_content_capture_runs_the_redaction_hook(openai_base_url):
    inst = instrument(
        capture_content=True,
        redact=lambda text: text.replace("France", "[COUNTRY]"),
        settings=CollectorSettings(),
        exporter=InMemorySpanExporter(),
    )
    try:
        client = _client(openai_base_url)
        with call_labels(task="rag", reference_answer="Paris, France", context="France is a country in Europe."):
            client.chat.completions.create(
                model="gpt-5.5", messages=[{"role": "user", "content": "Capital of France?"}]
            )
        attributes = _only_genai_span(inst)
    finally:
        inst.shutdown()
    assert "Capital of [COUNTRY]?" in attributes[semconv.INPUT_MESSAGES]
    assert "Paris is the capital of [COUNTRY]." in attributes[semconv.OUTPUT_MESSAGES]
    assert attributes[semconv.REFERENCE_ANSWER] == "Paris, [COUNTRY]"
    assert attributes[semconv.CONTEXT] == "[COUNTRY] is a country in Europe."
    assert not any("France" in str(value) for value in attributes.values())


def test_content_is_withheld_when_the_redaction_hook_fails(openai_base_url):
    def broken(text: str) -> str:
        raise RuntimeError("boom")

    inst = instrument(
        capture_content=True, redact=broken, settings=CollectorSettings(), exporter=InMemorySpanExporter()
    )
    try:
        with call_labels(reference_answer="secret"):
            reply = _client(openai_base_url).chat.completions.create(
                model="gpt-5.5", messages=[{"role": "user", "content": "secret?"}]
            )
        attributes = _only_genai_span(inst)
    finally:
        inst.shutdown()
    assert reply.choices[0].message.content == ANSWER  # the app is unaffected
    assert attributes[semconv.INPUT_MESSAGES] == attributes[semconv.REFERENCE_ANSWER] == "[redaction failed]"
    assert "secret" not in json.dumps({key: str(value) for key, value in attributes.items()})


def test_spans_reach_kafka_keyed_by_trace_id(kafka_bootstrap, topic, openai_base_url):
    settings = CollectorSettings(kafka_bootstrap=kafka_bootstrap, spans_topic=topic)
    inst = instrument(service_name="checkout", environment="staging", settings=settings)
    try:
        client = _client(openai_base_url)
        for i in range(6):
            with call_labels(task="knowledge"):
                client.chat.completions.create(model="gpt-5.4", messages=[{"role": "user", "content": f"question {i}"}])
    finally:
        inst.shutdown()
    assert inst.dropped == 0 and inst.exporter.sent == 6

    consumer = kafka_clients.consumer(
        KafkaConnection.plaintext(kafka_bootstrap),
        "test",
        topic,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    records = list(consumer)
    consumer.close()
    assert len(records) == 6
    for record in records:
        request = ExportTraceServiceRequest.FromString(record.value)
        (resource_spans,) = request.resource_spans
        resource = {kv.key: kv.value.string_value for kv in resource_spans.resource.attributes}
        assert resource[semconv.SERVICE_NAME] == "checkout" and resource[semconv.ENVIRONMENT] == "staging"
        (scope_spans,) = resource_spans.scope_spans
        (span,) = scope_spans.spans
        assert record.key == span.trace_id.hex().encode()
        assert record.partition == sarama_partition(record.key, 4)
        attributes = {kv.key: kv.value for kv in span.attributes}
        assert attributes[semconv.TASK].string_value == "knowledge"
        assert attributes[semconv.INPUT_TOKENS].int_value == 20
