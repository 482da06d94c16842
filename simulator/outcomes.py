"""What a simulated model does with one request: a pure, seeded function of the request.

Randomness comes from hashes of (seed, request content, nonce), never from arrival order:
the task's own draws (its size) are shared by every model, so a shadow call to a candidate
model answers the same-sized task; the model's draws (faults, refusals, hallucinations,
cache hits, noise) are its own. The nonce is the `x-cutover-nonce` header when the client
sends one (the load generator does), else a per-(model, content) request counter.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass
from typing import Literal

from simulator.paraphrase import paraphrase
from simulator.profiles import ModelProfile, Profiles
from simulator.workload import Corpus, TaskClass

Fault = Literal["rate_limited", "server_error", "stall"]
Refusal = Literal["api", "prose"]

CHARS_PER_TOKEN = 4
UNKNOWN_PROMPT_TOKENS = 120  # output size for prompts outside the corpus
REFUSALS = (
    "I'm sorry, but I can't help with that request.",
    "I can't assist with that.",
    "I'm not able to help with this request as written. If you can share more about the legitimate use case, I can try again.",
)


@dataclass(frozen=True, slots=True)
class Outcome:
    """The simulated reply. Token counts follow OpenAI: input includes cached, output includes reasoning."""

    request_id: str
    task: TaskClass
    task_id: str | None
    fault: Fault | None
    refusal: Refusal | None
    hallucinated: bool
    text: str
    finish_reason: Literal["stop", "length"]
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    reasoning_tokens: int
    overhead_s: float
    think_s: float
    generate_s: float

    @property
    def time_to_first_token_s(self) -> float:
        return self.overhead_s + self.think_s

    @property
    def duration_s(self) -> float:
        return self.overhead_s + self.think_s + self.generate_s


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def _rng(*parts: object) -> random.Random:
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))


class Planner:
    """Decides each request's outcome from the model profiles, the corpus and the seed."""

    def __init__(self, profiles: Profiles, corpus: Corpus, seed: int) -> None:
        self.profiles = profiles
        self.corpus = corpus
        self.seed = seed

    def plan(
        self, model: str, messages: list[tuple[str, str]], nonce: str, max_output_tokens: int | None = None
    ) -> Outcome:
        """Outcome of one request; `messages` are (role, text) pairs. Raises KeyError for an unknown model."""
        profile = self.profiles.models[model]
        content_key = hashlib.blake2b(repr(messages).encode(), digest_size=16).hexdigest()
        shared = _rng("task", self.seed, content_key, nonce)
        own = _rng("model", model, self.seed, content_key, nonce)
        # Draw every variate in a fixed order, whatever branch is taken, so one outcome never
        # shifts the random stream of another.
        z_size, u_fault, u_refusal, u_api, u_hallucinate, pick, u_cache, z_model, z_overhead = (
            shared.gauss(0.0, 1.0),
            own.random(),
            own.random(),
            own.random(),
            own.random(),
            own.randrange(1 << 16),
            own.random(),
            own.gauss(0.0, 1.0),
            own.gauss(0.0, 1.0),
        )
        user_text = next((text for role, text in reversed(messages) if role == "user"), "")
        task = self.corpus.lookup(user_text)
        task_class: TaskClass = task.task if task else "simple"
        system_tokens = sum(estimate_tokens(text) + 4 for role, text in messages if role in ("system", "developer"))
        input_tokens = sum(estimate_tokens(text) + 4 for _, text in messages) + 3
        cached = system_tokens if system_tokens and u_cache < profile.cache_hit_rate else 0
        overhead_s = profile.overhead_ms.median * math.exp(profile.overhead_ms.sigma * z_overhead) / 1000.0
        request_id = hashlib.blake2b(f"{model}{content_key}{nonce}{self.seed}".encode(), digest_size=12).hexdigest()

        fault = _fault(profile, u_fault)
        if fault is not None:
            return Outcome(
                request_id,
                task_class,
                task.id if task else None,
                fault,
                None,
                False,
                "",
                "stop",
                input_tokens,
                cached,
                0,
                0,
                overhead_s,
                0.0,
                0.0,
            )

        size = (task.output_tokens if task else UNKNOWN_PROMPT_TOKENS) * profile.output_token_factor
        total = max(1, round(size * math.exp(profile.shared_sigma * z_size + profile.model_sigma * z_model)))
        reasoning = round(total * profile.reasoning_share[task_class])
        refusal_rate = profile.refusal.sensitive_rate if task and task.sensitive else profile.refusal.rate[task_class]
        refusal: Refusal | None = None
        hallucinated = False
        if u_refusal < refusal_rate:
            refusal = "api" if u_api < profile.refusal.api_share else "prose"
            text = REFUSALS[pick % len(REFUSALS)]
            reasoning //= 4  # a refusal is decided early in the reasoning
            total = reasoning + estimate_tokens(text)
        elif task is None:
            text = f"(simulated {model} reply to a prompt outside the workload corpus)"
        elif task.wrong and u_hallucinate < profile.hallucination_rate.get(task_class, 0.0):
            hallucinated = True
            text = task.hallucinated_answer(pick)
        else:
            text = task.correct_answer
        if profile.paraphrase and refusal is None and task is not None:
            text = paraphrase(text, pick >> 4)  # its own wording; `pick`'s low bits chose the wrong value
        total = max(total, reasoning + estimate_tokens(text))
        finish: Literal["stop", "length"] = "stop"
        if max_output_tokens is not None and total > max_output_tokens:
            finish, total = "length", max_output_tokens
            reasoning = min(reasoning, total)
            text = text[: (total - reasoning) * CHARS_PER_TOKEN]
        visible = total - reasoning
        return Outcome(
            request_id,
            task_class,
            task.id if task else None,
            None,
            refusal,
            hallucinated,
            text,
            finish,
            input_tokens,
            cached,
            total,
            reasoning,
            overhead_s,
            reasoning / profile.reasoning_tokens_per_s,
            visible / profile.output_tokens_per_s,
        )


def _fault(profile: ModelProfile, u: float) -> Fault | None:
    faults = profile.faults
    if u < faults.rate_limited:
        return "rate_limited"
    if u < faults.rate_limited + faults.server_error:
        return "server_error"
    if u < faults.rate_limited + faults.server_error + faults.stall:
        return "stall"
    return None
