"""Our span processor: adds to GenAI spans what the official OpenAI instrumentor cannot know.

On start of a GenAI span (the instrumentor sets `gen_ai.operation.name` at start) it adds the
application's `call_labels`: task, client timeout, shadow pair, free labels and, with content
capture on, the reference answer and RAG context after the redaction hook. Refusals and the
timeout read from the client come from `collectors.response_probe`; redaction of the
instrumentor's own content from `collectors.redaction.RedactionHook`.
"""

from __future__ import annotations

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from collectors.labels import current_labels
from collectors.redaction import Redaction
from cutover import semconv


class CutoverSpanProcessor(SpanProcessor):
    def __init__(self, *, capture_content: bool = False, redaction: Redaction | None = None) -> None:
        self.capture_content = capture_content
        self._redaction = redaction or Redaction(None)

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if semconv.OPERATION not in (span.attributes or {}):
            return
        labels = current_labels()
        if labels is None:
            return
        span.set_attributes(labels.attributes())
        if self.capture_content:
            span.set_attributes({key: self._redaction(value) for key, value in labels.content().items()})

    def on_end(self, span: ReadableSpan) -> None:
        return None

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
