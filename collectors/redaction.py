"""The redaction hook: runs over every piece of captured content before a span can be exported.

The OpenAI instrumentor writes prompt and response content onto the span just before it
ends and then calls its completion hook with the span, still writable (in this SDK the
span processor's `_on_ending` already sees it frozen). `RedactionHook` is that completion
hook: it rewrites the content attributes through the application's `redact` function.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from opentelemetry.util.genai.completion_hook import CompletionHook

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


class Redaction:
    """Applies the application's hook; if the hook fails the text is withheld, never exported as is."""

    def __init__(self, redact: Redactor | None) -> None:
        self._redact = redact

    @property
    def active(self) -> bool:
        return self._redact is not None

    def __call__(self, text: str) -> str:
        if self._redact is None:
            return text
        try:
            return str(self._redact(text))
        except Exception:
            log.exception("the redaction hook failed; the content is withheld from the span")
            return REDACTION_FAILED


class RedactionHook(CompletionHook):
    def __init__(self, redaction: Redaction) -> None:
        self._redaction = redaction

    def on_completion(self, *, span: Any = None, **_content: Any) -> None:
        attributes = getattr(span, "attributes", None)
        if not attributes or not span.is_recording():
            return
        for key in CONTENT_ATTRIBUTES:
            value = attributes.get(key)
            if isinstance(value, str):
                span.set_attribute(key, self._redaction(value))
