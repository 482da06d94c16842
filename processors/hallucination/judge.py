"""The `llm_judge` check: an LLM reads a sample of answers with their evidence and says which claims it lacks.

Off by default (list `llm_judge` in CUTOVER_HALLUCINATION_CHECKS). The hallucination worker
`offer`s each batch it has written; offering never blocks: calls are sampled (by a hash of
the span id, so a replay samples the same calls), queued in a bounded queue, and judged by
`judge_concurrency` threads against any OpenAI-compatible endpoint (SDK timeouts and retries
with backoff). One writer thread stores each verdict in `hallucination_flags` like every
check's, and the judge's own tokens and cost in `judge_usage`, never in `llm_calls`. Spend is
priced with our price book and capped per UTC day; once the budget is spent the judge stops
until midnight and `judge_status` says so for the Quality page. A failed request is counted and
logged, never fatal. The judge's requests bypass the methods OpenTelemetry's GenAI
instrumentors patch (and instrumentation is suppressed around them), so even in an
instrumented process they never become application calls. Prompt: docs/llm-judge.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

import openai
from clickhouse_connect.driver.client import Client
from openai.types.chat import ChatCompletion
from opentelemetry.instrumentation.utils import suppress_instrumentation
from pydantic import BaseModel, Field, ValidationError

from processors.hallucination.worker import FLAG_COLUMNS, _micros
from processors.pricing import PriceBook
from processors.settings import ProcessorSettings

log = logging.getLogger("cutover.judge")

CHECK_NAME = "llm_judge"
PROMPT_VERSION = "cutover-llm-judge/1"
# The grounding prompt, after RAGAS faithfulness (split the answer into claims, check each
# against the context) and TruLens groundedness (support per statement, quoting the evidence).
SYSTEM_PROMPT = f"""You are a strict grounding judge ({PROMPT_VERSION}). You check whether an answer \
written by another AI model is supported by the evidence it was given. You never use your own \
knowledge: a claim the evidence does not state or directly imply is unsupported, even if it is true."""
USER_PROMPT = """Judge whether every factual claim in the ANSWER is supported by the EVIDENCE.

1. Break the ANSWER into short, self-contained factual claims (numbers, dates, names, identifiers, \
events, causes). Greetings, hedges, restatements of the question and refusals are not claims.
2. For each claim, decide whether the EVIDENCE states it or directly implies it. A claim that \
contradicts the EVIDENCE, or that the EVIDENCE does not mention, is unsupported.
3. Reply with one JSON object and nothing else:
{{"verdict": "supported" or "unsupported", "unsupported_claims": ["<exact words quoted from the ANSWER>", ...], \
"reason": "<one sentence naming what the evidence says instead, or that all claims are supported>"}}
"unsupported_claims" is empty exactly when the verdict is "supported".

<question>
{question}
</question>

<evidence>
{evidence}
</evidence>

<answer>
{answer}
</answer>"""
USAGE_COLUMNS = (
    "span_id",
    "trace_id",
    "start_time",
    "model",
    "judge_model",
    "status",
    "verdict",
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "cost_usd",
    "price_version",
    "latency_ms",
    "error",
)
STATUS_COLUMNS = ("day", "judge_model", "budget_usd", "spent_usd", "skipped_budget", "exhausted_at")


class Verdict(BaseModel):
    """The judge's reply (the JSON the prompt asks for)."""

    verdict: Literal["supported", "unsupported"]
    unsupported_claims: list[str] = Field(default_factory=list)
    reason: str = ""


@dataclass
class JudgeStats:
    offered: int = 0  # checked calls the worker handed over
    no_evidence: int = 0  # neither context nor reference answer: nothing to judge against
    sampled: int = 0  # chosen by the sample rate
    queue_full: int = 0  # sampled but not judged: the queue was full
    judged: int = 0  # verdicts stored
    flagged: int = 0
    failed: int = 0  # requests that failed after retries, or replies that were not a verdict
    skipped_budget: int = 0  # sampled after the day's budget was spent
    write_failures: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class _Job:
    call: Mapping[str, Any]
    sample_rate: float


def _in_sample(span_id: str, rate: float) -> bool:
    digest = hashlib.blake2b(span_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < rate * 2**64


def judge_messages(question: str, evidence: str, answer: str) -> list[dict[str, str]]:
    """The chat messages of one judge request (the prompt docs/llm-judge.md documents)."""
    user = USER_PROMPT.format(question=question.strip(), evidence=evidence.strip(), answer=answer.strip())
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def evidence_of(call: Mapping[str, Any], max_chars: int) -> str:
    """What the answer is judged against: the call's context and/or its reference answer."""
    parts = []
    if context := (call.get("context_text") or "").strip():
        parts.append(context[:max_chars])
    if reference := (call.get("reference_answer") or "").strip():
        parts.append(f"Reference answer: {reference}")
    return "\n\n".join(parts)


def parse_verdict(text: str) -> Verdict:
    """The verdict in a reply; tolerates a code fence around the JSON. Raises ValueError otherwise."""
    body = text.strip()
    if body.startswith("```"):
        body = body.strip("`").removeprefix("json").strip()
    start, end = body.find("{"), body.rfind("}")
    if start < 0 or end < start:
        raise ValueError(f"no JSON object in the judge's reply: {text[:120]!r}")
    try:
        return Verdict.model_validate(json.loads(body[start : end + 1]))
    except (json.JSONDecodeError, ValidationError) as error:
        raise ValueError(f"the judge's reply is not a verdict: {str(error).splitlines()[0]}") from None


def verdict_reason(verdict: Verdict) -> str:
    if verdict.verdict == "supported":
        return f"judge: supported. {verdict.reason}".strip()
    quoted = "; ".join(f"“{claim}”" for claim in verdict.unsupported_claims) or "(no claim quoted)"
    return f"judge: unsupported {quoted}. {verdict.reason}".strip()


class LLMJudge:
    """`start()`, `offer(rows)` (never blocks), `stop()`; stats in `.stats`, today's spend in `.spent_usd`."""

    def __init__(
        self,
        client: Client,
        database: str,
        settings: ProcessorSettings,
        prices: PriceBook,
        llm: openai.OpenAI | None = None,
    ) -> None:
        self.client = client
        self.database = database
        self.settings = settings
        self.prices = prices
        self.model = settings.judge_model
        if llm is None:  # the settings checked that the model is priced and the key variable set
            key = os.environ.get(settings.judge_api_key_env, "")
            llm = openai.OpenAI(
                base_url=settings.judge_base_url,
                api_key=key,
                timeout=settings.judge_timeout_s,
                max_retries=settings.judge_max_retries,
            )
        self.llm = llm
        self.stats = JudgeStats()
        self._queue: queue.Queue[_Job] = queue.Queue(settings.judge_queue_size)
        self._results: queue.Queue[tuple[tuple, tuple | None]] = queue.Queue()
        self._lock = threading.Lock()
        self._day = datetime.now(UTC).date()
        self._spent = Decimal(0)  # today's stored spend, all instances (re-read from judge_usage at each write)
        self._unwritten = Decimal(0)  # spent by this instance, not stored yet
        self._exhausted_at: datetime | None = None
        self._skipped_today = 0
        self._status_changed = False
        self._in_flight = 0
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    # lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self._refresh_spend()
        for i in range(self.settings.judge_concurrency):
            self._threads.append(threading.Thread(target=self._judge_loop, name=f"cutover-judge-{i}", daemon=True))
        self._threads.append(threading.Thread(target=self._write_loop, name="cutover-judge-writer", daemon=True))
        for thread in self._threads:
            thread.start()
        log.info(
            "llm_judge on: %s at %s, sample rate %.3f, budget $%.2f/day (spent today $%.4f)",
            self.model,
            self.settings.judge_base_url,
            self.settings.judge_sample_rate,
            self.settings.judge_daily_budget_usd,
            self._spent,
        )

    def stop(self, timeout: float = 30.0) -> None:
        """Judge what is queued for up to `timeout` s, write every result, then stop."""
        self.wait_idle(timeout)
        self._stopping.set()
        for thread in self._threads:
            thread.join(max(1.0, self.settings.judge_timeout_s))
        self._write_pending()
        log.info("llm_judge stopped: %s, spent today $%.4f", self.stats.as_dict(), self.spent_usd)

    def idle(self) -> bool:
        """Nothing queued, being judged, or waiting to be (or being) written."""
        return self._queue.unfinished_tasks == 0 and self._results.unfinished_tasks == 0 and self._in_flight == 0

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.idle() and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.idle()

    @property
    def spent_usd(self) -> float:
        with self._lock:
            return float(self._spent + self._unwritten)

    @property
    def exhausted(self) -> bool:
        self._roll_day()
        with self._lock:
            return self._spent + self._unwritten >= Decimal(str(self.settings.judge_daily_budget_usd))

    # intake ----------------------------------------------------------------------------------

    def offer(self, calls: Sequence[tuple[Mapping[str, Any], float]]) -> None:
        """Sample checked calls (with the rate each was checked at) for judging; never blocks."""
        rate = self.settings.judge_sample_rate
        for call, checked_rate in calls:
            self.stats.offered += 1
            if not (call.get("context_text") or call.get("reference_answer")):
                self.stats.no_evidence += 1
                continue
            if not _in_sample(str(call["span_id"]), rate):
                continue
            self.stats.sampled += 1
            if self.exhausted:
                self._skip_for_budget()
                continue
            try:
                self._queue.put_nowait(_Job(call, checked_rate * rate))
            except queue.Full:
                self.stats.queue_full += 1

    # judging ----------------------------------------------------------------------------------

    def _judge_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                job = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            with self._lock:
                self._in_flight += 1
            try:
                if self.exhausted:
                    self._skip_for_budget()
                else:
                    self._results.put(self._judge(job))
            except Exception:  # a judge bug must not kill its thread: counted and logged
                log.exception("llm_judge failed on span %s", job.call.get("span_id"))
                self.stats.failed += 1
            finally:
                with self._lock:
                    self._in_flight -= 1
                self._queue.task_done()

    def _judge(self, job: _Job) -> tuple[tuple, tuple | None]:
        """(usage row, flag row or None) of one judge request."""
        call = job.call
        messages = judge_messages(
            call.get("input_text") or "",
            evidence_of(call, self.settings.judge_max_evidence_chars),
            call.get("output_text") or "",
        )
        started = time.perf_counter()
        status, verdict, error = "ok", None, ""
        inp = cached = out = reasoning = 0
        try:
            # The SDK's generic `post` (same retries and timeout), not `chat.completions.create`: the
            # GenAI instrumentors patch `create` and ignore suppression, and a judge call traced as
            # an application call would be ingested and billed as one.
            with suppress_instrumentation():
                reply = self.llm.post(
                    "/chat/completions",
                    body={
                        "model": self.model,
                        "messages": messages,
                        "temperature": 0,
                        "response_format": {"type": "json_object"},
                    },
                    cast_to=ChatCompletion,
                )
            usage = reply.usage
            if usage is not None:
                inp, out = usage.prompt_tokens, usage.completion_tokens
                cached = (usage.prompt_tokens_details.cached_tokens or 0) if usage.prompt_tokens_details else 0
                details = usage.completion_tokens_details
                reasoning = (details.reasoning_tokens or 0) if details else 0
            verdict = parse_verdict(reply.choices[0].message.content or "")
        except openai.OpenAIError as failure:
            status, error = "failed", f"{type(failure).__name__}: {failure}"[:500]
        except ValueError as failure:
            status, error = "invalid", str(failure)[:500]
        latency_ms = (time.perf_counter() - started) * 1000
        cost, version = self.prices.cost(self.model, datetime.now(UTC).date(), inp, cached, out, reasoning)
        with self._lock:
            self._unwritten += cost or Decimal(0)
        if status != "ok":
            self.stats.failed += 1
            if self.stats.failed == 1 or self.stats.failed % 100 == 0:
                log.warning("llm_judge request failed (%d so far): %s", self.stats.failed, error)
        start = _micros(call["start_time"])
        usage_row = (
            call["span_id"],
            call.get("trace_id", ""),
            start,
            call.get("model", ""),
            self.model,
            status,
            verdict.verdict if verdict else "",
            inp,
            cached,
            out,
            cost,
            version,
            latency_ms,
            error,
        )
        if verdict is None:
            return usage_row, None
        flagged = verdict.verdict == "unsupported"
        flag_row = (
            call["span_id"],
            call.get("trace_id", ""),
            start,
            call.get("model", ""),
            call.get("task", ""),
            CHECK_NAME,
            1.0 if flagged else 0.0,
            int(flagged),
            verdict_reason(verdict)[:2000],
            job.sample_rate,
        )
        return usage_row, flag_row

    # budget ---------------------------------------------------------------------------------------

    def _roll_day(self) -> None:
        today = datetime.now(UTC).date()
        if today != self._day:
            with self._lock:
                self._day, self._spent = today, Decimal(0)
                self._exhausted_at, self._skipped_today = None, 0

    def _skip_for_budget(self) -> None:
        self.stats.skipped_budget += 1
        with self._lock:
            self._skipped_today += 1
            self._status_changed = True
            first = self._exhausted_at is None
            if first:
                self._exhausted_at = datetime.now(UTC)
        if first:
            log.warning(
                "llm_judge stopped for today: $%.4f of the $%.2f daily budget spent (CUTOVER_JUDGE_DAILY_BUDGET_USD)",
                self.spent_usd,
                self.settings.judge_daily_budget_usd,
            )

    def _refresh_spend(self) -> None:
        """Today's spend as stored (every instance's), so a restart or a second instance keeps to one budget."""
        self._roll_day()
        stored = self.client.command(
            f"SELECT toString(sum(ifNull(cost_usd, 0))) FROM {self.database}.judge_usage "
            "WHERE judged_at >= toStartOfDay(now64(3, 'UTC')) AND judge_model = %(model)s",
            parameters={"model": self.model},
        )
        with self._lock:
            self._spent = Decimal(str(stored or 0))

    # writing --------------------------------------------------------------------------------------

    def _write_loop(self) -> None:
        while not self._stopping.is_set():
            time.sleep(0.5)
            self._write_pending()

    def _write_pending(self) -> None:
        results: list[tuple[tuple, tuple | None]] = []
        while True:
            try:
                results.append(self._results.get_nowait())
            except queue.Empty:
                break
        if not results and not self._status_changed:
            return
        try:
            self._write(results)
        except Exception as error:  # ClickHouse down: keep the results and try again next round
            self.stats.write_failures += 1
            if self.stats.write_failures == 1 or self.stats.write_failures % 100 == 0:
                log.warning("llm_judge results not written (%s); retrying", error)
            for result in results:
                self._results.put(result)
            time.sleep(min(30.0, 0.5 * 2 ** min(self.stats.write_failures, 6)))
        finally:
            for _ in results:
                self._results.task_done()

    def _write(self, results: list[tuple[tuple, tuple | None]]) -> None:
        usage = [row for row, _ in results]
        flags = [flag for _, flag in results if flag is not None]
        if usage:
            self.client.insert("judge_usage", usage, column_names=list(USAGE_COLUMNS), database=self.database)
            with self._lock:
                self._unwritten -= sum((row[10] or Decimal(0) for row in usage), Decimal(0))
        if flags:
            self.client.insert("hallucination_flags", flags, column_names=list(FLAG_COLUMNS), database=self.database)
        self.stats.judged += len(flags)
        self.stats.flagged += sum(flag[7] for flag in flags)
        if usage:
            self._refresh_spend()
        with self._lock:
            self._status_changed = False
            status = (
                self._day,
                self.model,
                float(self.settings.judge_daily_budget_usd),
                float(self._spent + self._unwritten),
                self._skipped_today,
                self._exhausted_at,
            )
        self.client.insert("judge_status", [status], column_names=list(STATUS_COLUMNS), database=self.database)
