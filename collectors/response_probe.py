"""Marks GenAI spans with what only the OpenAI response object shows: refusals and the client timeout.

Why a probe and not a hook: `opentelemetry-instrumentation-genai-openai` folds `message.refusal`
(chat), refusal deltas (chat streams) and `refusal` content parts (Responses API) into ordinary
`TextPart`s, so its completion hook, its output-message attributes and our `_on_ending` all see
a refusal exactly like an answer. The distinction exists only on the SDK's response objects.
So this probe sits *beneath* the instrumentor on the same four `create` methods (installed
first, it is what the instrumentor wraps): it runs inside the instrumentor's span, reads the
response or each stream chunk as it passes, and sets `cutover.refusal` (true/false once the
whole response was seen) and `cutover.client.timeout_s` (the timeout in force, unless
`call_labels` set one). It creates no spans, records nothing else and never changes what the
application gets back; everything else on the span comes from the official instrumentor.
Not covered (no refusal attribute): `parse()`, `responses.stream()` and raw-response streams.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Self

import wrapt
from opentelemetry import trace
from opentelemetry.instrumentation.utils import unwrap

from cutover import semconv

log = logging.getLogger(__name__)

_TARGETS = (
    ("openai.resources.chat.completions", "Completions", False),
    ("openai.resources.chat.completions", "AsyncCompletions", True),
    ("openai.resources.responses.responses", "Responses", False),
    ("openai.resources.responses.responses", "AsyncResponses", True),
)
_REFUSAL_EVENTS = frozenset({"response.refusal.delta", "response.refusal.done"})
# The instrumentor ends a Responses API stream's span on these events, before the stream stops.
_FINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})
_installed = False


def install() -> None:
    """Wrap the `create` methods; call before `OpenAIInstrumentor().instrument()`."""
    global _installed
    if _installed:
        return
    for module, owner, is_async in _TARGETS:
        wrapt.wrap_function_wrapper(module, f"{owner}.create", _probe_async if is_async else _probe)
    _installed = True


def uninstall() -> None:
    """Remove the probe; call after `OpenAIInstrumentor().uninstrument()`."""
    global _installed
    if not _installed:
        return
    import importlib

    for module, owner, _ in _TARGETS:
        unwrap(getattr(importlib.import_module(module), owner), "create")
    _installed = False


def _genai_span() -> trace.Span | None:
    span = trace.get_current_span()
    attributes = getattr(span, "attributes", None)
    if not span.is_recording() or not attributes or semconv.OPERATION not in attributes:
        return None
    return span


def _timeout_in_force(instance: Any, kwargs: dict[str, Any]) -> float | None:
    timeout = kwargs.get("timeout")
    if not isinstance(timeout, (int, float)) and not hasattr(timeout, "read"):
        timeout = getattr(getattr(instance, "_client", None), "timeout", None)
    if isinstance(timeout, (int, float)) and not isinstance(timeout, bool):
        return float(timeout)
    read = getattr(timeout, "read", None)  # an httpx Timeout: the read timeout is what a slow generation hits
    return float(read) if isinstance(read, (int, float)) else None


def _before(span: trace.Span, instance: Any, kwargs: dict[str, Any]) -> None:
    if semconv.CLIENT_TIMEOUT in (getattr(span, "attributes", None) or {}):
        return
    timeout = _timeout_in_force(instance, kwargs)
    if timeout is not None:
        span.set_attribute(semconv.CLIENT_TIMEOUT, timeout)


def refused(item: Any) -> bool:
    """Whether a chat completion, Responses API response, chat chunk or Responses event is a refusal."""
    for choice in getattr(item, "choices", None) or ():
        part = getattr(choice, "message", None) or getattr(choice, "delta", None)
        if getattr(part, "refusal", None):
            return True
    if getattr(item, "type", None) in _REFUSAL_EVENTS:
        return True
    for output in getattr(item, "output", None) or ():
        if getattr(output, "type", None) == "message" and any(
            getattr(content, "type", None) == "refusal" for content in getattr(output, "content", None) or ()
        ):
            return True
    return False


def _after(span: trace.Span, result: Any, streaming: bool) -> Any:
    raw = hasattr(result, "http_response")  # `with_raw_response`: parse() is cached, so reading it is free
    if streaming:
        if raw:
            return result
        if hasattr(result, "__aiter__"):
            return _AsyncRefusalStream(result, span)
        return _RefusalStream(result, span)
    span.set_attribute(semconv.REFUSAL, refused(result.parse() if raw else result))
    return result


def _probe(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    span = _genai_span()
    if span is None:
        return wrapped(*args, **kwargs)
    _before(span, instance, kwargs)
    result = wrapped(*args, **kwargs)
    try:
        return _after(span, result, bool(kwargs.get("stream")))
    except Exception:
        log.debug("refusal probe could not read the response", exc_info=True)
        return result


async def _probe_async(
    wrapped: Callable[..., Awaitable[Any]], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    span = _genai_span()
    if span is None:
        return await wrapped(*args, **kwargs)
    _before(span, instance, kwargs)
    result = await wrapped(*args, **kwargs)
    try:
        return _after(span, result, bool(kwargs.get("stream")))
    except Exception:
        log.debug("refusal probe could not read the response", exc_info=True)
        return result


class _StreamWatch:
    """Refusal bookkeeping shared by the sync and async stream proxies."""

    _self_span: trace.Span
    _self_refused: bool

    def _seen(self, item: Any) -> None:
        if not self._self_refused and refused(item):
            self._self_refused = True
            self._self_span.set_attribute(semconv.REFUSAL, True)
        elif getattr(item, "type", None) in _FINAL_EVENTS:
            self._finished()

    def _finished(self) -> None:
        if self._self_span.is_recording():
            self._self_span.set_attribute(semconv.REFUSAL, self._self_refused)


class _RefusalStream(_StreamWatch, wrapt.ObjectProxy):
    def __init__(self, stream: Any, span: trace.Span) -> None:
        super().__init__(stream)
        self._self_span = span
        self._self_iterator = iter(stream)
        self._self_refused = False

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> Any:
        try:
            item = next(self._self_iterator)
        except StopIteration:
            self._finished()
            raise
        self._seen(item)
        return item

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: Any) -> Any:
        return self.__wrapped__.__exit__(*exc_info)


class _AsyncRefusalStream(_StreamWatch, wrapt.ObjectProxy):
    def __init__(self, stream: Any, span: trace.Span) -> None:
        super().__init__(stream)
        self._self_span = span
        self._self_iterator = stream.__aiter__()
        self._self_refused = False

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Any:
        try:
            item = await self._self_iterator.__anext__()
        except StopAsyncIteration:
            self._finished()
            raise
        self._seen(item)
        return item

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: Any) -> Any:
        return await self.__wrapped__.__aexit__(*exc_info)
