"""OpenAI wire format: the JSON bodies and SSE events the `openai` SDK parses, built from an Outcome."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from simulator.outcomes import Outcome

ERRORS: dict[str, tuple[int, dict[str, Any]]] = {
    "rate_limited": (
        429,
        {
            "message": "Rate limit reached for {model} in organization org-simulator on tokens per min (TPM): "
            "Limit 2000000, Used 1999310, Requested 1450. Please try again in 1s.",
            "type": "tokens",
            "param": None,
            "code": "rate_limit_exceeded",
        },
    ),
    "server_error": (
        500,
        {
            "message": "The server had an error while processing your request. Sorry about that!",
            "type": "server_error",
            "param": None,
            "code": None,
        },
    ),
    "stall": (
        500,
        {
            "message": "The server timed out while processing your request.",
            "type": "server_error",
            "param": None,
            "code": "timeout",
        },
    ),
}


def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def fault_error(outcome: Outcome, model: str) -> tuple[int, dict[str, Any]]:
    status, template = ERRORS[outcome.fault or "server_error"]
    return status, {"error": {**template, "message": template["message"].format(model=model)}}


def sse(data: dict[str, Any] | str, event: str | None = None) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return (f"event: {event}\n" if event else "").encode() + f"data: {payload}\n\n".encode()


def pieces(text: str) -> list[str]:
    """Split an answer into stream deltas of about one word each (whitespace kept, so they join back)."""
    if not text:
        return []
    out, start = [], 0
    for i in range(1, len(text)):
        if text[i] == " " and text[i - 1] != " ":
            out.append(text[start:i])
            start = i
    out.append(text[start:])
    return out


# -- Chat Completions --------------------------------------------------------------------------


def chat_usage(o: Outcome) -> dict[str, Any]:
    return {
        "prompt_tokens": o.input_tokens,
        "completion_tokens": o.output_tokens,
        "total_tokens": o.input_tokens + o.output_tokens,
        "prompt_tokens_details": {"cached_tokens": o.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": o.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def chat_completion(o: Outcome, model: str, created: int) -> dict[str, Any]:
    api_refusal = o.refusal == "api"
    message: dict[str, Any] = {
        "role": "assistant",
        "content": None if api_refusal else o.text,
        "refusal": o.text if api_refusal else None,
        "annotations": [],
    }
    return {
        "id": f"chatcmpl-{o.request_id}",
        "object": "chat.completion",
        "created": created,
        "model": model,
        "system_fingerprint": "fp_simulator",
        "service_tier": "default",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": o.finish_reason}],
        "usage": chat_usage(o),
    }


def chat_chunks(o: Outcome, model: str, created: int, include_usage: bool) -> Iterator[dict[str, Any]]:
    """The chunks of a streamed completion: role, one delta per piece, finish, then usage if asked."""
    field = "refusal" if o.refusal == "api" else "content"
    base = {
        "id": f"chatcmpl-{o.request_id}",
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": "fp_simulator",
        "service_tier": "default",
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        body = {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if include_usage:
            body["usage"] = None
        return body

    yield chunk({"role": "assistant", field: "", "refusal" if field == "content" else "content": None})
    for piece in pieces(o.text):
        yield chunk({field: piece})
    yield chunk({}, o.finish_reason)
    if include_usage:
        yield {**base, "choices": [], "usage": chat_usage(o)}


# -- Responses ---------------------------------------------------------------------------------


def responses_usage(o: Outcome) -> dict[str, Any]:
    return {
        "input_tokens": o.input_tokens,
        "input_tokens_details": {"cached_tokens": o.cached_tokens},
        "output_tokens": o.output_tokens,
        "output_tokens_details": {"reasoning_tokens": o.reasoning_tokens},
        "total_tokens": o.input_tokens + o.output_tokens,
    }


def _message_item(o: Outcome, text: str, status: str) -> dict[str, Any]:
    part = (
        {"type": "refusal", "refusal": text}
        if o.refusal == "api"
        else {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    )
    return {"id": f"msg_{o.request_id}", "type": "message", "status": status, "role": "assistant", "content": [part]}


def response_object(o: Outcome, model: str, created: float, status: str = "completed") -> dict[str, Any]:
    done = status == "completed"
    output: list[dict[str, Any]] = []
    if done:
        if o.reasoning_tokens:
            output.append({"id": f"rs_{o.request_id}", "type": "reasoning", "summary": []})
        output.append(_message_item(o, o.text, "completed"))
    incomplete = done and o.finish_reason == "length"
    return {
        "id": f"resp_{o.request_id}",
        "object": "response",
        "created_at": created,
        "status": "incomplete" if incomplete else status,
        "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
        "error": None,
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": responses_usage(o) if done else None,
    }


def response_events(o: Outcome, model: str, created: float) -> Iterator[tuple[str, dict[str, Any]]]:
    """The (event type, body) sequence of a streamed response, sequence numbers included."""
    seq = iter(range(1 << 30))
    item_id = f"msg_{o.request_id}"
    index = 1 if o.reasoning_tokens else 0
    refusal = o.refusal == "api"

    def event(kind: str, **body: Any) -> tuple[str, dict[str, Any]]:
        return kind, {"type": kind, "sequence_number": next(seq), **body}

    yield event("response.created", response=response_object(o, model, created, "in_progress"))
    yield event("response.in_progress", response=response_object(o, model, created, "in_progress"))
    if o.reasoning_tokens:
        reasoning = {"id": f"rs_{o.request_id}", "type": "reasoning", "summary": []}
        yield event("response.output_item.added", output_index=0, item=reasoning)
        yield event("response.output_item.done", output_index=0, item=reasoning)
    yield event(
        "response.output_item.added", output_index=index, item={**_message_item(o, "", "in_progress"), "content": []}
    )
    empty = _message_item(o, "", "in_progress")["content"][0]
    yield event("response.content_part.added", item_id=item_id, output_index=index, content_index=0, part=empty)
    kind = "response.refusal.delta" if refusal else "response.output_text.delta"
    for piece in pieces(o.text):
        extra: dict[str, list[object]] = {} if refusal else {"logprobs": []}
        yield event(kind, item_id=item_id, output_index=index, content_index=0, delta=piece, **extra)
    if refusal:
        yield event("response.refusal.done", item_id=item_id, output_index=index, content_index=0, refusal=o.text)
    else:
        yield event(
            "response.output_text.done", item_id=item_id, output_index=index, content_index=0, text=o.text, logprobs=[]
        )
    done_item = _message_item(o, o.text, "completed")
    yield event(
        "response.content_part.done", item_id=item_id, output_index=index, content_index=0, part=done_item["content"][0]
    )
    yield event("response.output_item.done", output_index=index, item=done_item)
    final = response_object(o, model, created)
    yield event("response.incomplete" if final["status"] == "incomplete" else "response.completed", response=final)
