"""An OpenTelemetry SDK `SpanExporter` that writes spans to Kafka like the Collector's kafkaexporter.

Meant to run behind a `BatchSpanProcessor`: `export` encodes with the OTLP exporters' own
`encode_spans`, splits by trace id (`collectors.otlp_kafka`) and hands the records to the
producer without waiting for acknowledgements. Bytes handed to the producer and not yet
acknowledged are bounded by `CUTOVER_EXPORTER_BUFFER_BYTES` (kafka-python's own buffer is
unbounded). `send` may block the batch processor's thread (never the application's) for up
to a second while it fetches topic metadata, once per batch at most; when Kafka is down
or slow, records that do not fit, or that Kafka has not acknowledged within
`CUTOVER_EXPORTER_TIMEOUT_S`, are dropped and counted in `dropped`. Nothing here raises into
the application.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Callable, Sequence

from kafka.errors import KafkaTimeoutError
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from collectors import metrics
from collectors.otlp_kafka import LazyProducer, new_producer, split_by_trace
from collectors.settings import CollectorSettings
from cutover.settings import load

log = logging.getLogger(__name__)

# How long `send` may wait for topic metadata on the exporting thread: a fresh topic's first
# lookup takes a few hundred milliseconds.
MAX_BLOCK_MS = 1000


class KafkaSpanExporter(SpanExporter):
    def __init__(self, settings: CollectorSettings | None = None, *, topic: str | None = None) -> None:
        self._settings = settings or load(CollectorSettings)
        self.topic = topic or self._settings.spans_topic
        self._producer = LazyProducer(
            lambda: new_producer(
                self._settings,
                max_block_ms=MAX_BLOCK_MS,
                timeout_s=self._settings.exporter_timeout_s,
                role="span-exporter",
            )
        )
        self._lock = threading.Lock()
        self._dropped = 0
        self._sent = 0
        self._pending_bytes = 0
        self._shutdown = False

    @property
    def dropped(self) -> int:
        """Spans that never reached Kafka (buffer full, broker down past the timeout, shut down)."""
        return self._dropped

    @property
    def sent(self) -> int:
        """Spans Kafka acknowledged."""
        return self._sent

    def _count_dropped(self, spans: int, reason: str) -> None:
        with self._lock:
            first = self._dropped == 0
            self._dropped += spans
            metrics.EXPORTER_DROPPED.inc(spans)
            total = self._dropped
        # One warning per thousand drops keeps a long outage visible without flooding the app's log.
        if first or total // 1000 != (total - spans) // 1000:
            log.warning("dropped %d spans bound for Kafka topic %s so far (latest: %s)", total, self.topic, reason)

    def _count_sent(self, spans: int, size: int) -> None:
        with self._lock:
            self._sent += spans
            self._pending_bytes -= size

    def _count_failed(self, spans: int, size: int, error: BaseException) -> None:
        with self._lock:
            self._pending_bytes -= size
        self._count_dropped(spans, f"{type(error).__name__}: {error}")

    def _reserve(self, size: int) -> bool:
        with self._lock:
            if self._pending_bytes + size > self._settings.exporter_buffer_bytes:
                return False
            self._pending_bytes += size
            return True

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown:
            self._count_dropped(len(spans), "exporter shut down")
            return SpanExportResult.FAILURE
        try:
            messages = split_by_trace(encode_spans(spans))
        except Exception as error:  # an unencodable attribute must cost its batch, never the app
            self._count_dropped(len(spans), f"encoding failed: {error}")
            return SpanExportResult.FAILURE
        producer = self._producer.get()
        if producer is None:
            self._count_dropped(len(spans), self._producer.last_error or "Kafka unavailable")
            return SpanExportResult.FAILURE
        result = SpanExportResult.SUCCESS
        unreachable = False
        for message in messages:
            size = len(message.value)
            if unreachable:
                self._count_dropped(message.spans, "Kafka unreachable")
                continue
            if not self._reserve(size):
                self._count_dropped(message.spans, f"{self._settings.exporter_buffer_bytes} bytes await Kafka already")
                result = SpanExportResult.FAILURE
                continue
            try:
                future = producer.send(self.topic, key=message.key, value=message.value)
            except Exception as error:  # counted, whatever the client raises
                # Metadata did not come in time: the rest of this batch would wait just as long.
                unreachable = isinstance(error, KafkaTimeoutError)
                self._count_failed(message.spans, size, error)
                result = SpanExportResult.FAILURE
                continue
            future.add_callback(lambda _meta, n=message.spans, size=size: self._count_sent(n, size))
            future.add_errback(lambda error, n=message.spans, size=size: self._count_failed(n, size, error))
        return result

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._producer.flush(min(timeout_millis / 1000, self._settings.exporter_timeout_s))

    def shutdown(self, timeout_millis: float = 30000) -> None:
        if self._shutdown:
            return
        self._shutdown = True
        timeout_s = min(timeout_millis / 1000, self._settings.exporter_timeout_s)
        self._producer.flush(timeout_s)
        self._producer.close(timeout_s)


class CountingBatchSpanProcessor(BatchSpanProcessor):
    """A `BatchSpanProcessor` that also counts the spans its full queue drops.

    The SDK only logs those drops (its metric needs an opt-in env var), so the count is kept
    from public calls: spans handed in minus spans handed to the exporter is the queue depth.
    It can be off by a span that ends in the instant between the worker taking a batch off
    the queue and handing it to the exporter.
    """

    def __init__(
        self,
        exporter: SpanExporter,
        max_queue_size: int,
        *,
        schedule_delay_millis: float | None = None,
        max_export_batch_size: int | None = None,
        export_timeout_millis: float | None = None,
    ) -> None:
        self._max_queue = max_queue_size
        self._submitted = 0
        self._exported = 0
        self._queue_dropped = 0
        self._count_lock = threading.Lock()
        super().__init__(
            _Tally(exporter, self._on_export),
            max_queue_size=max_queue_size,
            schedule_delay_millis=schedule_delay_millis,
            max_export_batch_size=max_export_batch_size,
            export_timeout_millis=export_timeout_millis,
        )
        self.exporter = exporter

    def _on_export(self, spans: int) -> None:
        with self._count_lock:
            self._exported += spans

    @property
    def dropped(self) -> int:
        return self._queue_dropped

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is not None and span.context.trace_flags.sampled:
            with self._count_lock:
                if self._submitted - self._exported >= self._max_queue:
                    self._queue_dropped += 1
                    self._exported += 1  # the SDK evicts one queued span to make room
                self._submitted += 1
        super().on_end(span)


class _Tally(SpanExporter):
    def __init__(self, exporter: SpanExporter, on_export: Callable[[int], None]) -> None:
        self._exporter = exporter
        self._on_export = on_export

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self._on_export(len(spans))
        return self._exporter.export(spans)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._exporter.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30000) -> None:
        # The base class's `shutdown` takes no timeout; some exporters (OTLP's) add one.
        shutdown: Callable[..., None] = self._exporter.shutdown
        if "timeout_millis" in inspect.signature(shutdown).parameters:
            shutdown(timeout_millis=timeout_millis)
        else:
            shutdown()
