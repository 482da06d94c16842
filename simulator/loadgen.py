"""The load generator: drives an OpenAI-compatible endpoint through the instrumented `openai` SDK.

Every call is planned from (seed, call index) alone, so a seeded run asks the same questions,
streams the same calls and mirrors the same ones whatever the timing; the nonce header makes
the simulator's answers follow the same plan.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import openai
from pydantic import BaseModel

from collectors.instrument import Instrumentation, instrument
from collectors.labels import call_labels, current_labels
from collectors.shadow import ShadowMirror
from simulator.server import NONCE_HEADER
from simulator.settings import LoadgenSettings
from simulator.workload import TASK_CLASSES, Corpus, Task, load_corpus

log = logging.getLogger(__name__)

SERVICE_NAME = "loadgen"
Api = Literal["chat", "responses"]


@dataclass(frozen=True, slots=True)
class CallPlan:
    index: int
    task: Task
    stream: bool
    api: Api
    shadow: bool
    nonce: str


class CallPlanner:
    """Call `index` -> what to ask, how, and whether to mirror it."""

    def __init__(self, settings: LoadgenSettings, corpus: Corpus) -> None:
        self.settings = settings
        self.corpus = corpus
        mix = settings.mix
        self._classes = [name for name in TASK_CLASSES if name in mix]
        self._weights = [mix[name] for name in self._classes]

    def plan(self, index: int) -> CallPlan:
        digest = hashlib.blake2b(f"{self.settings.loadgen_seed}\x1f{index}".encode(), digest_size=8).digest()
        rng = random.Random(int.from_bytes(digest, "big"))
        task_class = rng.choices(self._classes, self._weights)[0]
        task = rng.choice(self.corpus.tasks[task_class])
        stream = rng.random() < self.settings.loadgen_stream_fraction
        api: Api = "responses" if rng.random() < self.settings.loadgen_responses_fraction else "chat"
        shadow = rng.random() < self.settings.loadgen_shadow
        return CallPlan(index, task, stream, api, shadow, f"{self.settings.loadgen_seed}:{index}")


class ModelSummary(BaseModel):
    calls: int = 0
    ok: int = 0
    api_refusals: int = 0
    streamed: int = 0
    errors: dict[str, int] = {}
    latency_ms: dict[str, float] = {}  # p50/p95/p99 of successful calls (the latest 50,000)


class ShadowSummary(BaseModel):
    model: str
    fraction: float
    sampled: int
    mirrored: int
    dropped: int


class Summary(BaseModel):
    """What a run did; `spans_expected` = primary calls + mirrored shadow calls."""

    base_url: str
    primary_model: str
    calls: int
    elapsed_s: float  # the whole run, including the last calls and the flush to Kafka
    rate_per_s: float  # calls started per second while starting them (the achieved target rate)
    tasks: dict[str, int]
    models: dict[str, ModelSummary]
    errors: int  # failed calls, primary and shadow
    shadow: ShadowSummary
    spans_expected: int
    spans_dropped: int


@dataclass(frozen=True, slots=True)
class CallResult:
    model: str
    api_refusal: bool
    error: str | None
    latency_s: float


LATENCY_WINDOW = 50_000  # latest successful calls per model behind the summary's percentiles


class _ModelTally:
    def __init__(self) -> None:
        self.calls = self.ok = self.api_refusals = self.streamed = 0
        self.errors: Counter[str] = Counter()
        self.latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)  # bounded: runs may last days

    def summary(self) -> ModelSummary:
        ok = sorted(self.latencies)
        latency = (
            {f"p{q}": round(ok[min(len(ok) - 1, int(q / 100 * len(ok)))] * 1000, 1) for q in (50, 95, 99)} if ok else {}
        )
        return ModelSummary(
            calls=self.calls,
            ok=self.ok,
            api_refusals=self.api_refusals,
            streamed=self.streamed,
            errors=dict(self.errors),
            latency_ms=latency,
        )


class _Tally:
    """Thread-safe counters of finished calls."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._models: dict[str, _ModelTally] = defaultdict(_ModelTally)
        self.tasks: Counter[str] = Counter()
        self.primary_done = 0
        self.primary_errors = 0

    def add(self, result: CallResult, plan: CallPlan, primary: bool) -> None:
        with self._lock:
            model = self._models[result.model]
            model.calls += 1
            model.streamed += plan.stream
            model.api_refusals += result.api_refusal
            if result.error is None:
                model.ok += 1
                model.latencies.append(result.latency_s)
            else:
                model.errors[result.error] += 1
            if primary:
                self.primary_done += 1
                self.primary_errors += result.error is not None
                self.tasks[plan.task.task] += 1

    def models(self) -> dict[str, ModelSummary]:
        with self._lock:
            return {name: model.summary() for name, model in self._models.items()}


def _request(plan: CallPlan, corpus: Corpus, model: str) -> tuple[Api, dict[str, Any]]:
    system, user = corpus.messages(plan.task)
    headers = {NONCE_HEADER: plan.nonce}
    kwargs: dict[str, Any]  # keyword arguments of the SDK's `create`, which differ between the two APIs
    if plan.api == "responses":
        kwargs = {"model": model, "instructions": system["content"], "input": user["content"], "extra_headers": headers}
    else:
        kwargs = {"model": model, "messages": [system, user], "extra_headers": headers}
        if plan.stream:
            kwargs["stream_options"] = {"include_usage": True}
    if plan.stream:
        kwargs["stream"] = True
    return plan.api, kwargs


def _api_refusal(reply: Any, api: Api) -> bool:
    if api == "chat":
        return bool(reply.choices) and reply.choices[0].message.refusal is not None
    return any(
        getattr(part, "type", "") == "refusal" for item in reply.output for part in getattr(item, "content", []) or []
    )


def _drain(stream: Any, api: Api) -> bool:
    """Read a stream to its end; True if it carried an API refusal."""
    refused = False
    with stream:
        for event in stream:
            if api == "chat":
                refused = refused or any(c.delta.refusal for c in event.choices)
            else:
                refused = refused or event.type == "response.refusal.delta"
    return refused


class LoadGenerator:
    def __init__(self, settings: LoadgenSettings, client: openai.OpenAI, mirror: ShadowMirror) -> None:
        self.settings = settings
        self.corpus = load_corpus()
        self.planner = CallPlanner(settings, self.corpus)
        self.client = client
        self.mirror = mirror
        self.tally = _Tally()

    def execute(self, *, model: str, plan: CallPlan) -> CallResult:
        """One call to `model`, stream read to the end; the result is tallied, errors included."""
        api, kwargs = _request(plan, self.corpus, model)
        create = self.client.responses.create if api == "responses" else self.client.chat.completions.create
        started = time.perf_counter()
        try:
            reply = create(**kwargs)
            refused = _drain(reply, api) if plan.stream else _api_refusal(reply, api)
            result = CallResult(model, refused, None, time.perf_counter() - started)
        except Exception as error:  # every failure is a counted outcome of the run, never a lost call
            if not isinstance(error, openai.OpenAIError):
                log.warning("call %s to %s failed unexpectedly: %r", plan.index, model, error)
            result = CallResult(model, False, type(error).__name__, time.perf_counter() - started)
        labels = current_labels()
        self.tally.add(result, plan, primary=labels is None or labels.shadow_role != "shadow")
        return result

    def run_one(self, index: int) -> None:
        plan = self.planner.plan(index)
        task = plan.task
        with call_labels(
            task=task.task,
            timeout_s=self.settings.loadgen_timeout,
            reference_answer=task.correct_answer if task.task in ("knowledge", "rag") else None,
            context=task.context or None,
        ):
            self.mirror.call(self.execute, mirror=plan.shadow, model=self.settings.loadgen_model, plan=plan)

    def run(
        self,
        calls: int | None,
        duration: float | None,
        stop_event: threading.Event | None,
        on_call: Callable[[int, int], None] | None = None,
    ) -> tuple[int, float]:
        """Start calls at the target rate until `calls`, `duration` or `stop_event`.

        Returns (calls started, seconds spent starting them), the basis of the achieved rate.
        """
        rate = self.settings.loadgen_rate
        slots = threading.BoundedSemaphore(self.settings.loadgen_concurrency)
        stop = stop_event or threading.Event()
        started = time.monotonic()
        deadline = started + duration if duration is not None else float("inf")

        def one(index: int) -> None:
            try:
                self.run_one(index)
            finally:
                slots.release()
                if on_call is not None:
                    on_call(self.tally.primary_done, self.tally.primary_errors)

        index = 0
        with ThreadPoolExecutor(self.settings.loadgen_concurrency, thread_name_prefix="loadgen") as pool:
            while calls is None or index < calls:
                due = started + index / rate if rate > 0 else time.monotonic()
                if due >= deadline or stop.wait(max(0.0, due - time.monotonic())):
                    break
                if not _acquire(slots, stop, deadline):
                    break
                pool.submit(one, index)
                index += 1
            dispatched = time.monotonic() - started
        return index, dispatched


def _acquire(slots: threading.BoundedSemaphore, stop: threading.Event, deadline: float) -> bool:
    """Wait for a free call slot; False when the run ends first."""
    while not slots.acquire(timeout=0.1):
        if stop.is_set() or time.monotonic() >= deadline:
            return False
    return True


def run_loadgen(
    settings: LoadgenSettings,
    calls: int | None = None,
    duration: float | None = None,
    stop_event: threading.Event | None = None,
    *,
    capture_content: bool | None = None,
    instrumentation: Instrumentation | None = None,
    on_call: Callable[[int, int], None] | None = None,
) -> Summary:
    """Run until `calls` primary calls, `duration` seconds or `stop_event`; every span is on Kafka on return.

    Without `instrumentation` the run instruments the process itself (service `loadgen`; content
    capture from `capture_content`, else `CUTOVER_CAPTURE_CONTENT`) and shuts it down at the end;
    an application that is already instrumented passes its own, which is flushed, not shut down.
    `on_call(primary calls done, primary errors)` runs after each primary call (progress bars).
    """
    if calls is None and duration is None and stop_event is None:
        raise ValueError("give calls, duration or a stop_event, or the load never ends")
    owned = instrumentation is None
    instrumentation = instrumentation or instrument(service_name=SERVICE_NAME, capture_content=capture_content)
    client = openai.OpenAI(
        base_url=settings.loadgen_base_url,
        api_key=os.environ.get("OPENAI_API_KEY", "simulator"),
        max_retries=0,  # one call, one span: retries would hide the error rates under comparison
        timeout=settings.loadgen_timeout,
    )
    mirror = ShadowMirror(
        settings.loadgen_shadow_model,
        settings.loadgen_shadow,
        max_workers=settings.loadgen_shadow_workers,
        max_queue=settings.loadgen_shadow_queue,
    )
    generator = LoadGenerator(settings, client, mirror)
    began = time.monotonic()
    try:
        started, dispatching = generator.run(calls, duration, stop_event, on_call)
    finally:
        mirror.close(wait=True)
        client.close()
        instrumentation.force_flush()
        dropped = instrumentation.dropped
        if owned:
            instrumentation.shutdown()
    elapsed = time.monotonic() - began
    shadow = mirror.stats
    models = generator.tally.models()
    return Summary(
        base_url=settings.loadgen_base_url,
        primary_model=settings.loadgen_model,
        calls=started,
        elapsed_s=round(elapsed, 3),
        rate_per_s=round((started - 1) / dispatching, 2) if started > 1 and dispatching > 0 else 0.0,
        tasks=dict(generator.tally.tasks),
        models=models,
        errors=sum(sum(m.errors.values()) for m in models.values()),
        shadow=ShadowSummary(
            model=settings.loadgen_shadow_model,
            fraction=settings.loadgen_shadow,
            sampled=shadow.sampled,
            mirrored=shadow.mirrored,
            dropped=shadow.dropped,
        ),
        spans_expected=started + shadow.mirrored,
        spans_dropped=dropped,
    )
