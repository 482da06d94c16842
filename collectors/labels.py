"""Per-call labels the application sets around an OpenAI call; our span processor puts them on its span.

    with call_labels(task="rag", timeout_s=30.0, context=retrieved_text, tenant="acme"):
        client.chat.completions.create(...)

They travel in a contextvar, so they follow the call into threads started with
`contextvars.copy_context()` and into asyncio tasks. Nested blocks add to and override the
outer ones.
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cutover import semconv

_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_.]{0,63}$")


class CallLabels(BaseModel):
    """What the application knows about a call that the OpenAI instrumentor cannot see."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    task: str | None = Field(default=None, min_length=1, max_length=64)
    timeout_s: float | None = Field(default=None, gt=0)
    shadow_pair_id: str | None = Field(default=None, min_length=1, max_length=128)
    shadow_role: Literal["primary", "shadow"] | None = None
    reference_answer: str | None = None
    context: str | None = None
    extra: dict[str, str] = Field(default_factory=dict)

    @field_validator("extra")
    @classmethod
    def _keys(cls, extra: dict[str, str]) -> dict[str, str]:
        bad = [key for key in extra if not _LABEL_KEY.match(key)]
        if bad:
            raise ValueError(f"label names must be lowercase identifiers (a-z, 0-9, _, .): {bad}")
        return extra

    def merged(self, inner: CallLabels) -> CallLabels:
        fields = {name: value for name, value in inner if name != "extra" and value is not None}
        return self.model_copy(update={**fields, "extra": {**self.extra, **inner.extra}})

    def attributes(self) -> dict[str, str | float]:
        """The non-content attributes; `reference_answer` and `context` go through content capture."""
        attributes: dict[str, str | float] = {
            f"{semconv.LABEL_PREFIX}{key}": value for key, value in self.extra.items()
        }
        for key, value in (
            (semconv.TASK, self.task),
            (semconv.CLIENT_TIMEOUT, self.timeout_s),
            (semconv.SHADOW_PAIR_ID, self.shadow_pair_id),
            (semconv.SHADOW_ROLE, self.shadow_role),
        ):
            if value is not None:
                attributes[key] = value
        return attributes

    def content(self) -> dict[str, str]:
        return {
            key: value
            for key, value in ((semconv.REFERENCE_ANSWER, self.reference_answer), (semconv.CONTEXT, self.context))
            if value is not None
        }


_current: contextvars.ContextVar[CallLabels | None] = contextvars.ContextVar("cutover_call_labels", default=None)


def current_labels() -> CallLabels | None:
    return _current.get()


@contextmanager
def call_labels(
    *,
    task: str | None = None,
    timeout_s: float | None = None,
    shadow_pair_id: str | None = None,
    shadow_role: Literal["primary", "shadow"] | None = None,
    reference_answer: str | None = None,
    context: str | None = None,
    **extra_labels: str,
) -> Iterator[CallLabels]:
    """Label every GenAI span started inside the block; raises `pydantic.ValidationError` on bad labels."""
    labels = CallLabels(
        task=task,
        timeout_s=timeout_s,
        shadow_pair_id=shadow_pair_id,
        shadow_role=shadow_role,
        reference_answer=reference_answer,
        context=context,
        extra={key: str(value) for key, value in extra_labels.items()},
    )
    outer = _current.get()
    effective = outer.merged(labels) if outer is not None else labels
    token = _current.set(effective)
    try:
        yield effective
    finally:
        _current.reset(token)
