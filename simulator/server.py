"""The OpenAI-compatible HTTP server: `/v1/chat/completions` and `/v1/responses`, streamed or not.

Async (starlette on uvicorn) so that thousands of calls can sleep through their simulated
latency at once on one core.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from simulator import wire
from simulator.judge import PlantedRecord, is_judge_request
from simulator.judge import verdict as judge_verdict
from simulator.outcomes import Outcome, Planner, estimate_tokens
from simulator.profiles import load_profiles
from simulator.settings import SimulatorSettings
from simulator.workload import load_corpus

NONCE_HEADER = "x-cutover-nonce"
READ_TIMEOUT_HEADER = "x-stainless-read-timeout"  # sent by the official SDKs
STALL_GRACE_S = 1.0
DISCONNECT_POLL_S = 0.25


class BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def _text(content: object) -> str:
    """Text of a message's content: a string or a list of text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _chat_messages(body: dict[str, Any]) -> list[tuple[str, str]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty array", "messages")
    return [(str(m.get("role", "")), _text(m.get("content"))) for m in messages if isinstance(m, dict)]


def _responses_messages(body: dict[str, Any]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if isinstance(body.get("instructions"), str):
        out.append(("system", body["instructions"]))
    items = body.get("input")
    if isinstance(items, str):
        out.append(("user", items))
    elif isinstance(items, list):
        out.extend((str(i.get("role", "user")), _text(i.get("content"))) for i in items if isinstance(i, dict))
    else:
        raise BadRequest("'input' must be a string or an array of input items", "input")
    return out


class Simulator:
    """Request handling state: the planner, the nonce fallback counters and outcome tallies."""

    def __init__(self, settings: SimulatorSettings) -> None:
        self.settings = settings
        self.planner = Planner(load_profiles(settings.simulator_profiles), load_corpus(), settings.simulator_seed)
        self._seen: Counter[bytes] = Counter()  # one small entry per distinct request
        self.tally: Counter[tuple[str, str]] = Counter()
        self.planted = PlantedRecord()  # the answers it planted wrong facts into, for its judge

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/v1/responses", self.responses, methods=["POST"]),
                Route("/v1/models", self.models, methods=["GET"]),
                Route("/health", self.health, methods=["GET"]),
            ]
        )

    async def models(self, request: Request) -> Response:
        data = [
            {"id": m, "object": "model", "created": 0, "owned_by": "cutover-simulator"}
            for m in self.planner.profiles.models
        ]
        return JSONResponse({"object": "list", "data": data})

    async def health(self, request: Request) -> Response:
        return JSONResponse(
            {
                "status": "ok",
                "seed": self.settings.simulator_seed,
                "models": list(self.planner.profiles.models),
                "outcomes": [{"model": m, "outcome": o, "count": n} for (m, o), n in sorted(self.tally.items())],
            }
        )

    async def chat(self, request: Request) -> Response:
        return await self._serve(request, _chat_messages, self._chat_reply)

    async def responses(self, request: Request) -> Response:
        return await self._serve(request, _responses_messages, self._responses_reply)

    async def _serve(
        self,
        request: Request,
        read_messages: Callable[[dict[str, Any]], list[tuple[str, str]]],
        reply: Callable[[dict[str, Any], Outcome, str, dict[str, str]], Awaitable[Response]],
    ) -> Response:
        try:
            body = json.loads(await request.body())
            if not isinstance(body, dict):
                raise BadRequest("the request body must be a JSON object")
            model = body.get("model")
            if not isinstance(model, str) or not model:
                raise BadRequest("'model' is required", "model")
            messages = read_messages(body)
            limit = body.get("max_completion_tokens") or body.get("max_tokens") or body.get("max_output_tokens")
            if limit is not None and (not isinstance(limit, int) or limit < 1):
                raise BadRequest("the output token limit must be a positive integer", "max_tokens")
        except (json.JSONDecodeError, UnicodeDecodeError):
            return JSONResponse(wire.error_body("the request body is not valid JSON", "invalid_request_error"), 400)
        except BadRequest as error:
            return JSONResponse(wire.error_body(str(error), "invalid_request_error", param=error.param), 400)
        if model not in self.planner.profiles.models:
            message = f"The model `{model}` does not exist or you do not have access to it."
            return JSONResponse(wire.error_body(message, "invalid_request_error", "model_not_found"), 404)

        outcome = self.planner.plan(model, messages, self._nonce(request, model, messages), limit)
        if outcome.hallucinated and outcome.task_id:
            self.planted.add(outcome.text, outcome.task_id)
        if is_judge_request(messages) and not outcome.fault:
            text = judge_verdict(messages, self.planted, self.planner.corpus)
            outcome = replace(
                outcome,
                refusal=None,
                text=text,
                finish_reason="stop",
                output_tokens=outcome.reasoning_tokens + estimate_tokens(text),
            )
        self.tally[(model, outcome.fault or (f"refusal_{outcome.refusal}" if outcome.refusal else "ok"))] += 1
        headers = {"x-request-id": f"req_{outcome.request_id}"}
        if outcome.fault == "stall":
            if await self._stall(request):
                return Response(status_code=499)  # the client gave up; nobody reads this
        elif outcome.fault:
            await self._sleep(outcome.overhead_s)
        if outcome.fault:
            status, error_body = wire.fault_error(outcome, model)
            if outcome.fault == "rate_limited":
                headers["retry-after"] = "1"
            return JSONResponse(error_body, status, headers=headers)
        return await reply(body, outcome, model, headers)

    async def _chat_reply(self, body: dict[str, Any], o: Outcome, model: str, headers: dict[str, str]) -> Response:
        created = int(time.time())
        if not body.get("stream"):
            await self._sleep(o.duration_s)
            return JSONResponse(wire.chat_completion(o, model, created), headers=headers)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        chunks = list(wire.chat_chunks(o, model, created, include_usage))
        return self._stream(o, [wire.sse(c) for c in chunks] + [wire.sse("[DONE]")], headers)

    async def _responses_reply(self, body: dict[str, Any], o: Outcome, model: str, headers: dict[str, str]) -> Response:
        created = time.time()
        if not body.get("stream"):
            await self._sleep(o.duration_s)
            return JSONResponse(wire.response_object(o, model, created), headers=headers)
        events = [wire.sse(data, kind) for kind, data in wire.response_events(o, model, created)]
        return self._stream(o, events, headers)

    def _stream(self, o: Outcome, frames: list[bytes], headers: dict[str, str]) -> StreamingResponse:
        """Send the first frame after the time to first token, then spread the rest over the generation time."""
        gap = o.generate_s / max(1, len(frames) - 1)

        async def frames_in_time() -> AsyncIterator[bytes]:
            await self._sleep(o.time_to_first_token_s)
            for i, frame in enumerate(frames):
                if i:
                    await self._sleep(gap)
                yield frame

        return StreamingResponse(frames_in_time(), media_type="text/event-stream", headers=headers)

    async def _sleep(self, seconds: float) -> None:
        if seconds > 0 and self.settings.simulator_time_scale > 0:
            await asyncio.sleep(seconds * self.settings.simulator_time_scale)

    async def _stall(self, request: Request) -> bool:
        """Say nothing until the client's read timeout has passed; True if the client hung up."""
        try:
            limit = float(request.headers[READ_TIMEOUT_HEADER]) + STALL_GRACE_S
        except (KeyError, ValueError):
            limit = self.settings.simulator_max_stall_s
        deadline = time.monotonic() + min(limit, self.settings.simulator_max_stall_s)
        while time.monotonic() < deadline:
            if await request.is_disconnected():
                return True
            await asyncio.sleep(min(DISCONNECT_POLL_S, max(0.0, deadline - time.monotonic())))
        return await request.is_disconnected()

    def _nonce(self, request: Request, model: str, messages: list[tuple[str, str]]) -> str:
        if nonce := request.headers.get(NONCE_HEADER):
            return nonce
        key = hashlib.blake2b(f"{model}\x1f{messages!r}".encode(), digest_size=16).digest()
        self._seen[key] += 1
        return f"#{self._seen[key]}"


def _config(settings: SimulatorSettings, simulator: Simulator) -> uvicorn.Config:
    return uvicorn.Config(
        simulator.app(),
        host=settings.simulator_host,
        port=settings.simulator_port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=2,
        lifespan="off",
    )


def serve(settings: SimulatorSettings) -> None:
    """Run the simulator in the foreground until interrupted."""
    uvicorn.Server(_config(settings, Simulator(settings))).run()


class SimulatorThread:
    """The simulator in a background thread of this process (tests, benchmarks, the demo)."""

    def __init__(self, settings: SimulatorSettings) -> None:
        self.settings = settings
        self.simulator = Simulator(settings)
        self._server = uvicorn.Server(_config(settings, self.simulator))
        self._thread = threading.Thread(target=self._server.run, name="cutover-simulator", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://{self.settings.simulator_host}:{self.settings.simulator_port}/v1"

    def start(self, timeout: float = 10.0) -> SimulatorThread:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the simulator did not start on {self.base_url}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> SimulatorThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
