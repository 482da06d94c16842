"""`cutover collect`: an OTLP/HTTP trace and log receiver that writes to Kafka like the Collector's kafkaexporter.

`POST /v1/traces` (to the spans topic, one message per trace) and `POST /v1/logs` (GenAI content
events as log records, to the logs topic, one message per request like the kafkaexporter's
`otlp_proto` logs) take `application/x-protobuf` or `application/json` (OTLP/JSON: hex ids),
optionally gzip-encoded, and answers only after Kafka has acknowledged every record of the
request: 200 with an `ExportTraceServiceResponse`; 400 (malformed, with the reason), 413 (over
`CUTOVER_COLLECT_MAX_BODY_BYTES`, also after gunzip, or a trace over Kafka's message size), 415 (other content types or encodings);
503 with `Retry-After` when Kafka cannot take the data in `CUTOVER_COLLECT_ACK_TIMEOUT_S`, so
the sender's OTLP exporter retries. Error bodies are `google.rpc.Status` in the request's
encoding, as the OTLP/HTTP spec asks. A request answered 503 may have been partly written;
the retry then writes those records again, and the processors' tables deduplicate them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from google.rpc.status_pb2 import Status
from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError, MessageSizeTooLargeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest, ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from collectors import metrics
from collectors.otlp_kafka import LazyProducer, TraceMessage, new_producer, split_by_trace
from collectors.settings import CollectorSettings
from cutover import metrics_http
from cutover.logs import setup_logging

log = logging.getLogger(__name__)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
RETRY_AFTER_S = 2
# gRPC status codes carried in google.rpc.Status.
_INVALID_ARGUMENT, _UNAVAILABLE, _RESOURCE_EXHAUSTED, _INTERNAL = 3, 14, 8, 13


@dataclass
class Rejection(Exception):
    status: int
    reason: str


RequestT = TypeVar("RequestT", ExportTraceServiceRequest, ExportLogsServiceRequest)


def decode(body: bytes, media_type: str, kind: type[RequestT]) -> RequestT:
    """Parse an OTLP protobuf or OTLP/JSON body; `Rejection(400)` says what is wrong."""
    if media_type == PROTOBUF:
        try:
            return kind.FromString(body)
        except DecodeError as error:
            raise Rejection(400, f"body is not an OTLP {kind.__name__}: {error}") from None
    try:
        document = json.loads(body)
        if not isinstance(document, dict):
            raise ValueError("the top level must be an object")
        _hex_ids_to_base64(document)
        return json_format.ParseDict(document, kind(), ignore_unknown_fields=True)
    except (ValueError, json_format.ParseError) as error:
        raise Rejection(400, f"body is not OTLP/JSON: {error}") from None


def _hex_ids_to_base64(document: dict[str, Any]) -> None:
    """OTLP/JSON writes trace and span ids as hex, protobuf JSON expects base64 for bytes fields."""

    def convert(holder: dict[str, Any], *keys: str) -> None:
        for key in keys:
            value = holder.get(key)
            if isinstance(value, str) and value:
                try:
                    holder[key] = base64.b64encode(bytes.fromhex(value)).decode()
                except ValueError:
                    raise ValueError(f"{key} {value!r} is not hex") from None

    for resource_spans in document.get("resourceSpans") or document.get("resource_spans") or ():
        for scope_spans in resource_spans.get("scopeSpans") or resource_spans.get("scope_spans") or ():
            for span in scope_spans.get("spans") or ():
                convert(span, "traceId", "trace_id", "spanId", "span_id", "parentSpanId", "parent_span_id")
                for link in span.get("links") or ():
                    convert(link, "traceId", "trace_id", "spanId", "span_id")
    for resource_logs in document.get("resourceLogs") or document.get("resource_logs") or ():
        for scope_logs in resource_logs.get("scopeLogs") or resource_logs.get("scope_logs") or ():
            for record in scope_logs.get("logRecords") or scope_logs.get("log_records") or ():
                convert(record, "traceId", "trace_id", "spanId", "span_id")


def gunzip(body: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as error:
        raise Rejection(400, f"body is not valid gzip: {error}") from None
    if len(data) > limit:
        raise Rejection(413, f"body exceeds {limit} bytes after gunzip")
    if not inflater.eof:
        raise Rejection(400, "gzip body is truncated")
    return data


class Receiver:
    def __init__(self, settings: CollectorSettings) -> None:
        self.settings = settings
        self.producer = LazyProducer(
            lambda: new_producer(settings, max_block_ms=1000, timeout_s=settings.collect_ack_timeout_s, role="collect")
        )
        self.counts: Counter[str] = Counter()

    async def traces(self, request: Request) -> Response:
        return await self._export(
            request, ExportTraceServiceRequest, split_by_trace, self.settings.spans_topic, ExportTraceServiceResponse()
        )

    async def logs(self, request: Request) -> Response:
        return await self._export(
            request, ExportLogsServiceRequest, _whole_logs, self.settings.logs_topic, ExportLogsServiceResponse()
        )

    async def _export(
        self,
        request: Request,
        kind: type[RequestT],
        split: Callable[[RequestT], list[TraceMessage]],
        topic: str,
        response: Message,
    ) -> Response:
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        as_json = media_type == JSON
        try:
            if media_type not in (PROTOBUF, JSON):
                raise Rejection(415, f"Content-Type must be {PROTOBUF} or {JSON}, got {media_type or 'none'!r}")
            body = await self._body(request)
            parsed = await asyncio.to_thread(decode, body, media_type, kind)
            messages = await asyncio.to_thread(split, parsed)
            await self._produce(messages, topic)
        except Rejection as rejection:
            self.counts[str(rejection.status)] += 1
            metrics.REQUESTS.labels(status=str(rejection.status)).inc()
            if rejection.status >= 500:
                log.warning("answering %d: %s", rejection.status, rejection.reason)
            return _status(rejection, as_json)
        count = "logs" if kind is ExportLogsServiceRequest else "spans"
        spans = sum(message.spans for message in messages)
        self.counts.update({"200": 1, count: spans, "messages": len(messages)})
        metrics.REQUESTS.labels(status="200").inc()
        if count == "spans":
            metrics.SPANS.inc(spans)
        metrics.MESSAGES.inc(len(messages))
        if as_json:
            return Response(json_format.MessageToJson(response), media_type=JSON)
        return Response(response.SerializeToString(), media_type=PROTOBUF)

    async def _body(self, request: Request) -> bytes:
        limit = self.settings.collect_max_body_bytes
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("identity", "gzip"):
            raise Rejection(415, f"Content-Encoding must be gzip or identity, got {encoding!r}")
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise Rejection(413, f"body of {declared} bytes exceeds {limit}")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise Rejection(413, f"body exceeds {limit} bytes")
            chunks.append(chunk)
        body = b"".join(chunks)
        return gunzip(body, limit) if encoding == "gzip" else body

    async def _produce(self, messages: list[TraceMessage], topic: str) -> None:
        if not messages:
            return
        producer = await asyncio.to_thread(self.producer.get)
        if producer is None:
            raise Rejection(503, f"Kafka unavailable: {self.producer.last_error}")
        loop = asyncio.get_running_loop()
        acks = [loop.create_future() for _ in messages]
        await asyncio.to_thread(self._send_all, producer, topic, messages, acks, loop)
        try:
            async with asyncio.timeout(self.settings.collect_ack_timeout_s):
                outcomes = await asyncio.gather(*acks, return_exceptions=True)
        except TimeoutError:
            raise Rejection(503, f"Kafka did not acknowledge within {self.settings.collect_ack_timeout_s}s") from None
        for outcome in outcomes:
            if isinstance(outcome, MessageSizeTooLargeError):
                raise Rejection(413, f"a trace exceeds the Kafka producer's message size limit: {outcome}")
            if isinstance(outcome, BaseException):
                status = 503 if getattr(outcome, "retriable", False) else 500
                raise Rejection(status, f"Kafka refused the data: {type(outcome).__name__}: {outcome}")

    def _send_all(
        self,
        producer: KafkaProducer,
        topic: str,
        messages: list[TraceMessage],
        acks: list[asyncio.Future[None]],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        for index, (message, ack) in enumerate(zip(messages, acks, strict=True)):
            try:
                future = producer.send(topic, key=message.key, value=message.value)
            except KafkaTimeoutError as error:
                # No topic metadata in time: the rest of the request would wait just as long in vain.
                for pending in acks[index:]:
                    loop.call_soon_threadsafe(_settle, pending, error)
                return
            except KafkaError as error:  # this record only (e.g. too large); the others still go
                loop.call_soon_threadsafe(_settle, ack, error)
                continue
            future.add_callback(lambda _meta, ack=ack: loop.call_soon_threadsafe(_settle, ack, None))
            future.add_errback(lambda error, ack=ack: loop.call_soon_threadsafe(_settle, ack, error))

    async def report(self, interval_s: float) -> None:
        """Log what was accepted and rejected since the last line, when anything happened."""
        last: Counter[str] = Counter()
        while True:
            await asyncio.sleep(interval_s)
            delta = self.counts - last
            last = self.counts.copy()
            if delta:
                rejected = (
                    " ".join(f"{code}:{delta[code]}" for code in sorted(delta) if code.isdigit() and code != "200")
                    or "none"
                )
                log.info(
                    "last %.0fs: %d requests accepted, %d spans and %d log records -> %d Kafka messages; rejected %s",
                    interval_s,
                    delta["200"],
                    delta["spans"],
                    delta["logs"],
                    delta["messages"],
                    rejected,
                )

    async def close(self) -> None:
        await asyncio.to_thread(self.producer.close, self.settings.collect_ack_timeout_s)


def _whole_logs(request: ExportLogsServiceRequest) -> list[TraceMessage]:
    """A log request as one Kafka message (unkeyed), as the kafkaexporter writes `otlp_proto` logs."""
    records = sum(len(scope.log_records) for resource in request.resource_logs for scope in resource.scope_logs)
    return [TraceMessage(b"", request.SerializeToString(), records)] if records else []


def _settle(ack: asyncio.Future[None], error: BaseException | None) -> None:
    if ack.done():
        return
    if error is None:
        ack.set_result(None)
    else:
        ack.set_exception(error)


def _status(rejection: Rejection, as_json: bool) -> Response:
    code = {400: _INVALID_ARGUMENT, 413: _RESOURCE_EXHAUSTED, 415: _INVALID_ARGUMENT, 503: _UNAVAILABLE}.get(
        rejection.status, _INTERNAL
    )
    status = Status(code=code, message=rejection.reason)
    headers = {"Retry-After": str(RETRY_AFTER_S)} if rejection.status == 503 else None
    if as_json:
        return Response(
            json_format.MessageToJson(status), status_code=rejection.status, media_type=JSON, headers=headers
        )
    return Response(status.SerializeToString(), status_code=rejection.status, media_type=PROTOBUF, headers=headers)


def create_app(settings: CollectorSettings) -> Starlette:
    receiver = Receiver(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        reporter = (
            asyncio.create_task(receiver.report(settings.collect_stats_interval_s))
            if settings.collect_stats_interval_s
            else None
        )
        yield
        if reporter is not None:
            reporter.cancel()
        await receiver.close()

    return Starlette(
        routes=[
            Route("/v1/traces", receiver.traces, methods=["POST"]),
            Route("/v1/logs", receiver.logs, methods=["POST"]),
        ],
        lifespan=lifespan,
    )


def serve(settings: CollectorSettings) -> None:
    import uvicorn

    setup_logging()
    metrics_http.serve(settings.collector_metrics_port)

    print(
        f"cutover collect: OTLP/HTTP on http://{settings.collect_host}:{settings.collect_port}/v1/traces "
        f"and /v1/logs -> Kafka {settings.kafka_bootstrap} ({settings.kafka_security_protocol}) "
        f"topics {settings.spans_topic}, {settings.logs_topic}",
        flush=True,
    )
    uvicorn.run(
        create_app(settings),
        host=settings.collect_host,
        port=settings.collect_port,
        log_level="warning",
        access_log=False,
    )
