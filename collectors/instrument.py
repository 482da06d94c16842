"""One call that makes an application's OpenAI traffic flow into llm-cutover.

    from collectors.instrument import instrument
    inst = instrument(service_name="checkout-assistant", environment="prod")
    ...
    inst.shutdown()   # flushes what is still buffered

It builds an SDK `TracerProvider` (resource `service.name`, `deployment.environment.name`,
plus `OTEL_RESOURCE_ATTRIBUTES`), adds `CutoverSpanProcessor` and a bounded batch processor in
front of the Kafka span exporter (or the exporter you pass, e.g. an OTLP/HTTP exporter to
`cutover collect`), and enables the official `opentelemetry-instrumentation-genai-openai`
instrumentor on it, with our response probe beneath it (see `collectors.response_probe`)
and, when content is captured with a `redact` function, our redaction completion hook.
The provider becomes the global one unless the process already set one.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from opentelemetry import metrics, trace
from opentelemetry.instrumentation.genai.openai import OpenAIInstrumentor
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.util.genai.environment_variables import OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT

from collectors import response_probe
from collectors.kafka_exporter import CountingBatchSpanProcessor, KafkaSpanExporter
from collectors.redaction import Redaction, RedactionHook, Redactor
from collectors.settings import CollectorSettings
from collectors.span_processor import CutoverSpanProcessor
from cutover import semconv
from cutover.settings import load

log = logging.getLogger(__name__)

DROPPED_METRIC = "cutover.exporter.spans.dropped"

_lock = threading.Lock()
_active: Instrumentation | None = None


@dataclass
class Instrumentation:
    tracer_provider: TracerProvider
    exporter: SpanExporter
    span_processor: CutoverSpanProcessor
    batch_processor: CountingBatchSpanProcessor

    @property
    def dropped(self) -> int:
        """Spans lost on the way to Kafka: batch queue full, or refused/unacknowledged by Kafka."""
        return self.batch_processor.dropped + int(getattr(self.exporter, "dropped", 0))

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.tracer_provider.force_flush(timeout_millis)

    def shutdown(self) -> None:
        """Stop instrumenting OpenAI and flush every buffered span (bounded by the exporter timeout)."""
        global _active
        with _lock:
            if _active is not self:
                return
            OpenAIInstrumentor().uninstrument()
            response_probe.uninstall()
            _active = None
        self.tracer_provider.shutdown()

    def _observe_dropped(self, _options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(self.dropped)


def instrument(
    service_name: str | None = None,
    environment: str | None = None,
    capture_content: bool | None = None,
    redact: Redactor | None = None,
    settings: CollectorSettings | None = None,
    exporter: SpanExporter | None = None,
) -> Instrumentation:
    """Instrument OpenAI calls in this process; a second call returns the active instrumentation."""
    global _active
    settings = settings or load(CollectorSettings)
    with _lock:
        if _active is not None:
            log.warning("collectors.instrument() called again; keeping the active instrumentation")
            return _active
        capture = settings.capture_content if capture_content is None else capture_content
        resource = Resource.create(
            {
                semconv.SERVICE_NAME: service_name or settings.service_name,
                semconv.ENVIRONMENT: environment or settings.environment,
            }
        )
        provider = TracerProvider(resource=resource)
        redaction = Redaction(redact)
        span_processor = CutoverSpanProcessor(capture_content=capture, redaction=redaction)
        batch = CountingBatchSpanProcessor(
            exporter or KafkaSpanExporter(settings),
            max_queue_size=settings.exporter_queue_size,
            max_export_batch_size=min(512, settings.exporter_queue_size),
            # The SDK's default 5 s would be most of a call's way to the dashboard at low traffic.
            schedule_delay_millis=settings.exporter_schedule_delay_s * 1000,
        )
        provider.add_span_processor(span_processor)
        provider.add_span_processor(batch)
        if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
            trace.set_tracer_provider(provider)

        response_probe.install()
        _instrument_openai(provider, capture, RedactionHook(redaction) if capture and redaction.active else None)
        _active = Instrumentation(provider, batch.exporter, span_processor, batch)
    metrics.get_meter(__name__).create_observable_counter(
        DROPPED_METRIC,
        callbacks=[_active._observe_dropped],
        unit="{span}",
        description="Spans llm-cutover's exporter dropped (queue full, Kafka down or slow).",
    )
    return _active


def _instrument_openai(provider: TracerProvider, capture: bool, hook: RedactionHook | None) -> None:
    # The instrumentor reads its content mode from the environment once, when it builds its
    # handler; set it for that moment only so our setting wins and the process env is untouched.
    previous = os.environ.get(OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT)
    os.environ[OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT] = "span_only" if capture else "no_content"
    try:
        # A completion hook makes the instrumentor build message content, so pass one only when
        # content is captured anyway.
        OpenAIInstrumentor().instrument(tracer_provider=provider, completion_hook=hook)
    finally:
        if previous is None:
            del os.environ[OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT]
        else:
            os.environ[OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT] = previous
