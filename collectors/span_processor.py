"""Our span processor: adds to GenAI spans what the official OpenAI instrumentor cannot know.

- on start: the application's `call_labels` (task, client timeout, shadow pair, free labels)
  and, with content capture on, the reference answer and RAG context after redaction;
- while ending (`_on_ending`, the span is still writable): the redaction hook over the
  message content the instrumentor recorded.

`cutover.refusal` is not set here: see `collectors.response_probe` for why it cannot be.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from collectors.labels import current_labels
from cutover import semconv

log = logging.getLogger(__name__)

Redactor = Callable[[str], str]

# Attributes that carry prompt or response text when content capture is on.
CONTENT_ATTRIBUTES = (
    semconv.INPUT_MESSAGES,
    semconv.OUTPUT_MESSAGES,
    "gen_ai.system_instructions",
    "gen_ai.tool.call.arguments",
    "gen_ai.tool.call.result",
)
REDACTION_FAILED = "[redaction failed]"


class CutoverSpanProcessor(SpanProcessor):
    def __init__(self, *, capture_content: bool = False, redact: Redactor | None = None) -> None:
        self.capture_content = capture_content
        self._redact = redact

    def redacted(self, text: str) -> str:
        """The hook's output; on a hook error the text is withheld, never exported unredacted."""
        if self._redact is None:
            return text
        try:
            return str(self._redact(text))
        except Exception:
            log.exception("the redaction hook failed; the content is withheld from the span")
            return REDACTION_FAILED

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if semconv.OPERATION not in (span.attributes or {}):
            return
        labels = current_labels()
        if labels is None:
            return
        span.set_attributes(labels.attributes())
        if self.capture_content:
            span.set_attributes({key: self.redacted(value) for key, value in labels.content().items()})

    def _on_ending(self, span: Span) -> None:
        attributes = span.attributes or {}
        if semconv.OPERATION not in attributes or not self.capture_content or self._redact is None:
            return
        for key in CONTENT_ATTRIBUTES:
            value = attributes.get(key)
            if isinstance(value, str):
                span.set_attribute(key, self.redacted(value))

    def on_end(self, span: ReadableSpan) -> None:
        return None

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
