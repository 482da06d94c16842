"""OTLP protobuf (`ExportTraceServiceRequest`) -> one decoded call row per GenAI span, whatever convention sent it.

This is the processor's hot path. The upb parser decodes ~1.3M spans/s; building a dict of
attributes per span would cost 15x that, so each span's attributes are walked once with the
key -> slot table of `processors.conventions` (every convention's keys for one field share a
slot) and the values go straight into one tuple per call (`DECODED_FIELDS` order, defined in
`processors.columns`). Enrichment (`processors.enrich`) adds the derived columns afterwards,
column-wise. The call record is that typed tuple, not a pydantic model: validating one model
per call runs at ~90k calls/s, which would halve the decoder's ~110k spans/s (measured together).

What counts as invalid (the whole message goes to the DLQ with the reason; the valid
calls of a partly-invalid message are still written, which is safe because writes are
idempotent and a DLQ replay collapses onto them):
- bytes that do not parse as an `ExportTraceServiceRequest` (random, truncated);
- a parse with unknown top-level fields or without a single span (protobuf of another
  type, an empty or foreign payload);
- a GenAI span without a 16-byte trace id / 8-byte span id, with no model, with a start
  time outside 2000..2200 or an end before its start, a negative or > 10^8 token count,
  cached input tokens above input tokens or reasoning tokens above output tokens (our
  token conventions: input includes cached, output includes reasoning), a negative or
  non-finite time to first chunk or stream duration, or an attribute that cannot be read
  (malformed message JSON): each invalidates its own span only;
- a span that looks like an LLM call (token, provider, finish reason or message attributes
  of a known convention) but names no model or operation: it cannot be mapped, so it is
  reported by its name rather than silently skipped.
Other spans (no GenAI attribute, or an OpenInference span of a kind other than LLM) are
skipped and counted, never validated. A call with no token count at all has
`tokens_reported` false, so it is never priced at $0.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from google.protobuf.message import DecodeError
from google.protobuf.unknown_fields import UnknownFieldSet
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from cutover import semconv
from processors import conventions as cv
from processors.columns import DECODED_FIELDS, FIELD

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["DECODED_FIELDS", "FIELD", "Decoded", "decode", "error_class", "is_timeout_error", "message_text"]

_STATUS_ERROR = 2  # opentelemetry.proto.trace.v1.Status.STATUS_CODE_ERROR
_MIN_START_NS = 946_684_800 * 10**9  # 2000-01-01
_MAX_START_NS = 7_258_118_400 * 10**9  # 2200-01-01
# No model's context comes near 10^8 tokens; above it a cost could overflow Decimal(18, 12)
# ($10^6), which ClickHouse would refuse for the whole batch.
_MAX_TOKENS = 10**8
_MAX_TIMEOUT_S = 1e9  # beyond Float32's exact range and any real client timeout
_LEGACY_ENVIRONMENT = "deployment.environment"
_INDEXED_PREFIXES = tuple(cv.INDEXED_MESSAGES)
# Slots that make a span look like a model call even without a model or operation.
_CALL_EVIDENCE = (
    cv.PROVIDER, cv.INPUT_TOKENS, cv.OUTPUT_TOKENS, cv.CACHED, cv.REASONING, cv.TTFT_S, cv.FINISH,
    cv.INPUT_MESSAGES, cv.OUTPUT_MESSAGES, cv.STREAM_TTFT_S, cv.INDEXED_MARK,
)  # fmt: skip
_EVIDENCE_NAMES = {slot: key for key, slot in reversed(cv.ATTRIBUTE_SLOTS.items())}


@dataclass
class Decoded:
    """What one Kafka message yields: call rows, counts of spans not written, and why it is invalid."""

    rows: list[tuple] = field(default_factory=list)
    # The calls already enriched, as insert-table rows, instead of `rows` (by a decode worker).
    table: pa.Table | None = None
    spans: int = 0
    skipped_non_genai: int = 0
    merged: int = 0  # request spans whose call is the row of their stream result span (Logfire)
    error: str = ""


class _Invalid(Exception):
    """A span that cannot become a call row; the message names it in its DLQ reason."""


def _number(value: AnyValue) -> float | None:
    """An AnyValue read as a number, whichever of int/double/string the exporter chose."""
    kind = value.WhichOneof("value")
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        return value.double_value
    if kind == "string_value":
        try:
            return float(value.string_value)
        except ValueError:
            return None
    return None


def _int(value: AnyValue) -> int:
    number = value.int_value
    if number or value.WhichOneof("value") == "int_value":
        return number
    other = _number(value)
    return -1 if other is None or not math.isfinite(other) else int(other)


def _text(value: AnyValue) -> str:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "array_value":
        return ",".join(_text(v) for v in value.array_value.values)
    if kind is None:
        return ""
    return str(getattr(value, kind))


def _truthy(value: AnyValue) -> bool:
    return value.bool_value or value.string_value.lower() == "true"


def _first(value: AnyValue) -> str:
    """First finish reason: of a string array, a JSON array string (Logfire), or the string itself."""
    if value.WhichOneof("value") == "array_value":
        values = value.array_value.values
        return values[0].string_value if values else ""
    text = value.string_value
    if text.startswith("["):
        try:
            reasons = json.loads(text)
        except (ValueError, RecursionError):
            return text
        return reasons[0] if isinstance(reasons, list) and reasons and isinstance(reasons[0], str) else ""
    return text


def _json_object(raw: str) -> dict[str, object]:
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def message_text(raw: str) -> str:
    """The text of GenAI `input/output.messages` JSON: text parts joined by blank lines.

    Accepts the semconv shape (`parts: [{type, content}]`) and the older `content` string;
    anything that is not such JSON is kept verbatim, so captured content is never lost.
    """
    try:
        messages = json.loads(raw)
    except (ValueError, RecursionError):
        return raw
    if not isinstance(messages, list):
        return raw
    texts: list[str] = []
    for message in messages:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        parts = message.get("parts")
        for part in parts if isinstance(parts, list) else ():
            if isinstance(part, dict) and isinstance(part.get("content"), str):
                texts.append(part["content"])
    return "\n\n".join(texts)


def _output_finish_reason(raw: str) -> str:
    try:
        messages = json.loads(raw)
    except (ValueError, RecursionError):
        return ""
    for message in messages if isinstance(messages, list) else ():
        reason = message.get("finish_reason") if isinstance(message, dict) else None
        if isinstance(reason, str):
            return reason
    return ""


def _usage_details(raw: str) -> tuple[int, int]:
    """(cached input, reasoning) tokens of an OpenAI usage object's JSON (Logfire's `gen_ai.usage.raw`)."""
    usage = _json_object(raw)
    counts = []
    for details, key in (("prompt_tokens_details", "cached_tokens"), ("completion_tokens_details", "reasoning_tokens")):
        inner = usage.get(details)
        value = inner.get(key) if isinstance(inner, dict) else None
        counts.append(value if isinstance(value, int) and not isinstance(value, bool) else 0)
    return counts[0], counts[1]


def _response_refusal(raw: str) -> str:
    """The API refusal text of a chat completion's JSON (OpenInference's `output.value`), or ""."""
    response = _json_object(raw)
    choices = response.get("choices")
    first = choices[0] if isinstance(choices, list) and choices else None
    message = first.get("message") if isinstance(first, dict) else None
    refusal = message.get("refusal") if isinstance(message, dict) else None
    return refusal if isinstance(refusal, str) else ""


def _indexed_messages(attributes: Iterable[KeyValue]) -> tuple[str, str, str, bool]:
    """(input text, output text, finish reason, API refusal?) of indexed message attributes (older semconv, OpenInference)."""
    parts: dict[bool, list[tuple[int, int, str]]] = {True: [], False: []}
    finish = ""
    refused = False
    for kv in attributes:
        key = kv.key
        prefix = next((p for p in _INDEXED_PREFIXES if key.startswith(p)), "")
        if not prefix:
            continue
        index, _, rest = key[len(prefix) :].partition(".")
        if not index.isdigit():
            continue
        if rest in cv.INDEXED_TEXT:
            parts[cv.INDEXED_MESSAGES[prefix]].append((int(index), -1, kv.value.string_value))
        elif rest == cv.INDEXED_REFUSAL and not cv.INDEXED_MESSAGES[prefix]:
            parts[False].append((int(index), -1, kv.value.string_value))
            refused = refused or bool(kv.value.string_value)
        elif rest.startswith(cv.INDEXED_TEXT_PARTS[0]) and rest.endswith(cv.INDEXED_TEXT_PARTS[1]):
            part = rest[len(cv.INDEXED_TEXT_PARTS[0]) : -len(cv.INDEXED_TEXT_PARTS[1])]
            if part.isdigit():
                parts[cv.INDEXED_MESSAGES[prefix]].append((int(index), int(part), kv.value.string_value))
        elif rest == cv.INDEXED_FINISH and not finish and not cv.INDEXED_MESSAGES[prefix]:
            finish = kv.value.string_value
    joined = ["\n\n".join(text for _, _, text in sorted(parts[side]) if text) for side in (True, False)]
    return joined[0], joined[1], finish, refused


def _first_chunk_s(span: Span) -> float | None:
    """Seconds from the span's start to its first first-chunk event, where a library records TTFT so."""
    times = [e.time_unix_nano for e in span.events if e.name in cv.FIRST_CHUNK_EVENTS]
    return (min(times) - span.start_time_unix_nano) / 1e9 if times else None


def _exception_type(span: Span) -> str:
    for event in span.events:
        if event.name == cv.EXCEPTION_EVENT:
            for kv in event.attributes:
                if kv.key == cv.EXCEPTION_TYPE:
                    return kv.value.string_value
    return ""


def error_class(error_type: str) -> str:
    """`RateLimitError` of "<class 'openai.RateLimitError'>" or `openai.RateLimitError`; others as they are."""
    if error_type.startswith("<class '") and error_type.endswith("'>"):
        error_type = error_type[8:-2]
    if "." in error_type:
        path = error_type.split(".")
        if all(part.isidentifier() for part in path):
            return path[-1]
    return error_type


def is_timeout_error(error_type: str) -> bool:
    """openai's `APITimeoutError`, httpx/asyncio timeouts, or a plain `timeout` error type."""
    return "timeout" in error_type.lower()


def _unmapped(found: list[AnyValue | None]) -> str:
    """Why a span without model or operation still looks like a model call, or "" if it does not."""
    for slot in _CALL_EVIDENCE:
        if found[slot] is not None:
            return _EVIDENCE_NAMES[slot]
    return ""


def decode(raw: bytes | None, partition: int = 0, offset: int = 0) -> Decoded:
    """Decode one Kafka message value; never raises on bad input (see `Decoded.error`)."""
    out = Decoded()
    if raw is None:
        out.error = "empty message (null value): not an OTLP ExportTraceServiceRequest"
        return out
    try:
        request = ExportTraceServiceRequest.FromString(raw)
    except (DecodeError, ValueError) as error:
        out.error = f"undecodable: not OTLP protobuf ExportTraceServiceRequest ({error})"
        return out
    unknown = len(UnknownFieldSet(request))
    if unknown:
        out.error = f"wrong schema: {unknown} unknown top-level protobuf field(s), not an ExportTraceServiceRequest"
        return out
    problems: list[str] = []
    append = out.rows.append
    slots_get = cv.ATTRIBUTE_SLOTS.get
    unset: list[AnyValue | None] = [None] * cv.SLOT_COUNT
    spans_seen = skipped = merged = 0
    kafka_partition, kafka_offset = partition, offset
    for resource_spans in request.resource_spans:
        service = environment = ""
        for kv in resource_spans.resource.attributes:
            key = kv.key
            if key == semconv.SERVICE_NAME:
                service = kv.value.string_value
            elif key == semconv.ENVIRONMENT or (key == _LEGACY_ENVIRONMENT and not environment):
                environment = kv.value.string_value
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans_seen += 1
                # One store per attribute (the last of a repeated key wins); typed reads below.
                found = unset.copy()
                for kv in span.attributes:
                    slot = slots_get(kv.key)
                    if slot is not None:
                        found[slot] = kv.value
                (
                    operation_v, model_v, response_model_v, provider_v, input_v, output_v, cached_v,
                    reasoning_v, ttfc_v, finish_v, error_type_v, refusal_v, task_v, client_timeout_v,
                    pair_v, role_v, input_raw_v, output_raw_v, context_v, reference_v, stream_ttft_v,
                    is_stream_v, kind_v, params_v, duration_v, template_v, indexed_v, response_json_v,
                    usage_json_v,
                ) = found  # fmt: skip
                try:
                    if kind_v is not None and kind_v.string_value not in cv.CALL_SPAN_KINDS:
                        skipped += 1  # an OpenInference chain, tool, retriever ... span
                        continue
                    model = "" if model_v is None else model_v.string_value
                    if not model and params_v is not None:
                        requested = _json_object(params_v.string_value).get("model")
                        model = requested if isinstance(requested, str) else ""
                    if operation_v is None and not model and response_model_v is None and kind_v is None:
                        evidence = _unmapped(found)
                        if evidence:
                            raise _Invalid(f"{span.name!r} looks like an LLM call ({evidence}) but names no model")
                        skipped += 1
                        continue
                    start = span.start_time_unix_nano
                    end = span.end_time_unix_nano
                    if template_v is not None:  # Logfire
                        if template_v.string_value.startswith(cv.LOGFIRE_STREAM_RESULT):
                            duration_s = None if duration_v is None else _number(duration_v)
                            if duration_s is None or not (0 <= duration_s < 86_400):
                                raise _Invalid(f"stream duration {duration_s} s")
                            start = end - int(duration_s * 1e9)
                        elif (
                            # Logfire 5.x keeps only the model in `request_data`, so a stream's request
                            # span is told by what it lacks: usage, output and an error (a failed stream
                            # has no result span, so its request span is the call).
                            input_v is None
                            and output_v is None
                            and output_raw_v is None
                            and error_type_v is None
                            and span.status.code != _STATUS_ERROR
                        ):
                            merged += 1  # its stream's result span carries the call
                            continue
                    operation = "" if operation_v is None else operation_v.string_value
                    response_model = "" if response_model_v is None else response_model_v.string_value
                    provider = "" if provider_v is None else provider_v.string_value
                    tokens_reported = input_v is not None or output_v is not None
                    # A non-zero int_value is the common case; `_int` reads zeros and other kinds.
                    input_tokens = 0 if input_v is None else input_v.int_value or _int(input_v)
                    output_tokens = 0 if output_v is None else output_v.int_value or _int(output_v)
                    cached_input_tokens = 0 if cached_v is None else cached_v.int_value or _int(cached_v)
                    reasoning_tokens = 0 if reasoning_v is None else reasoning_v.int_value or _int(reasoning_v)
                    if usage_json_v is not None and (reasoning_v is None or cached_v is None):
                        cached_raw, reasoning_raw = _usage_details(usage_json_v.string_value)
                        cached_input_tokens = cached_input_tokens if cached_v is not None else cached_raw
                        reasoning_tokens = reasoning_tokens if reasoning_v is not None else reasoning_raw
                    ttfc = None if ttfc_v is None else _number(ttfc_v)
                    # Reading `span.events` costs ~3% of a span's decode: only for conventions that
                    # record the first chunk as an event (OpenLLMetry marks streams, OpenInference its kind).
                    if ttfc is None and (is_stream_v is not None or kind_v is not None):
                        if stream_ttft_v is not None:
                            ttfc = _number(stream_ttft_v) if is_stream_v is not None and _truthy(is_stream_v) else None
                        else:
                            ttfc = _first_chunk_s(span)
                    finish_reason = "" if finish_v is None else _first(finish_v)
                    error_type = "" if error_type_v is None else _text(error_type_v)
                    api_refusal = refusal_v is not None and _truthy(refusal_v)
                    task = "" if task_v is None else task_v.string_value
                    client_timeout_s = None if client_timeout_v is None else _number(client_timeout_v)
                    shadow_pair_id = "" if pair_v is None else _text(pair_v)
                    shadow_role = "" if role_v is None else role_v.string_value
                    input_raw = "" if input_raw_v is None else input_raw_v.string_value
                    output_raw = "" if output_raw_v is None else output_raw_v.string_value
                    context_text = "" if context_v is None else context_v.string_value
                    reference_answer = "" if reference_v is None else reference_v.string_value
                    trace_bytes = span.trace_id
                    span_bytes = span.span_id
                    model = model or response_model
                    if len(trace_bytes) != 16 or len(span_bytes) != 8:
                        raise _Invalid(
                            f"trace id of {len(trace_bytes)} bytes / span id of {len(span_bytes)} bytes (need 16/8)"
                        )
                    if not model:
                        raise _Invalid("no gen_ai.request.model or gen_ai.response.model")
                    if not _MIN_START_NS <= start < _MAX_START_NS:
                        raise _Invalid(f"start time {start} ns outside 2000..2200")
                    if end < start:
                        raise _Invalid("end time before start time")
                    if not (
                        0 <= cached_input_tokens <= input_tokens <= _MAX_TOKENS
                        and 0 <= reasoning_tokens <= output_tokens <= _MAX_TOKENS
                    ):
                        raise _Invalid(
                            f"token counts input={input_tokens} cached={cached_input_tokens} output={output_tokens} "
                            f"reasoning={reasoning_tokens} (need 0 <= cached <= input, 0 <= reasoning <= output <= 10^8)"
                        )
                    if ttfc is not None and not (ttfc >= 0 and math.isfinite(ttfc)):
                        raise _Invalid(f"time to first chunk {ttfc} s")
                    latency_ms = (end - start) / 1e6
                    ttft_ms = ttfc * 1000.0 if ttfc is not None else None
                    is_error = span.status.code == _STATUS_ERROR or bool(error_type)
                    if is_error and not error_type and span.events:
                        error_type = _exception_type(span)
                    if error_type:
                        if "." in error_type or error_type[0] == "<":  # qualified or repr'd class name
                            error_type = error_class(error_type)
                    elif is_error:
                        error_type = "_OTHER"
                    is_timeout = is_error and is_timeout_error(error_type)
                    if client_timeout_s is not None:
                        if not 0 < client_timeout_s < _MAX_TIMEOUT_S:  # also NaN
                            client_timeout_s = None
                        elif latency_ms >= client_timeout_s * 1000.0:
                            is_timeout = True
                    output_tokens_per_s = None
                    if output_tokens and not is_error:
                        generation_ms = latency_ms - ttft_ms if ttft_ms is not None else latency_ms
                        if generation_ms > 0:
                            output_tokens_per_s = output_tokens * 1000.0 / generation_ms
                    input_text = message_text(input_raw) if input_raw else ""
                    output_text = message_text(output_raw) if output_raw else ""
                    if not finish_reason and output_raw:
                        finish_reason = _output_finish_reason(output_raw)
                    content_captured = bool(input_raw or output_raw)
                    if indexed_v is not None:
                        indexed_input, indexed_output, indexed_finish, indexed_refusal = _indexed_messages(
                            span.attributes
                        )
                        api_refusal = api_refusal or indexed_refusal
                        input_text = input_text or indexed_input
                        output_text = output_text or indexed_output
                        finish_reason = finish_reason or indexed_finish
                        content_captured = bool(input_text or output_text)
                    if not output_text and response_json_v is not None:
                        output_text = _response_refusal(response_json_v.string_value)
                        api_refusal = api_refusal or bool(output_text)
                        content_captured = content_captured or bool(output_text)
                    start_time = start // 1000
                    end_time = end // 1000
                    operation = operation or "unknown"
                    trace_id = trace_bytes.hex()
                    span_id = span_bytes.hex()
                except _Invalid as problem:
                    problems.append(f"span {span.span_id.hex() or '?'}: {problem}")
                    continue
                except Exception as error:  # a malformed attribute must cost only its own span
                    problems.append(f"span {span.span_id.hex() or '?'}: unreadable ({type(error).__name__}: {error})")
                    continue
                # DECODED_FIELDS order, by name (tests/test_processor_decode.py checks it).
                append(
                    (
                        trace_id, span_id, start_time, service, environment, operation, model, response_model,
                        provider, task, latency_ms, ttft_ms, output_tokens_per_s, input_tokens,
                        cached_input_tokens, output_tokens, reasoning_tokens, is_error, error_type,
                        finish_reason, api_refusal, client_timeout_s, is_timeout, shadow_pair_id, shadow_role,
                        content_captured, input_text, output_text, context_text, reference_answer,
                        kafka_partition, kafka_offset, tokens_reported, end_time,
                    )
                )  # fmt: skip
    out.spans = spans_seen
    out.skipped_non_genai = skipped
    out.merged = merged
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        out.error = f"invalid GenAI span(s), {len(problems)} of {spans_seen} spans not written: {shown}"
    elif not spans_seen:
        out.error = "wrong schema: parses as ExportTraceServiceRequest but holds no spans"
    return out
