"""Speed of the per-call enrichment, measured side by side in one run.

    python bench/enrichment.py

- pricing: `PriceBook.cost` with its model and (family, day) lookups cached, against the
  same calls with the caches cleared before each call; and the batched `PriceBook.costs` on
  our book's models against a mix where half the calls are priced by the genai-prices fallback;
- refusal classifier: answers per second on the labelled answers and on 4x longer ones;
- hallucination checks: calls per second of each default check on the labelled set, with
  the text-feature caches cleared after every call (each real call brings new texts).
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from processors import refusal  # noqa: E402
from processors.data import labelled  # noqa: E402
from processors.hallucination import DEFAULT_CHECKS, build_checks  # noqa: E402
from processors.hallucination.text import CACHED  # noqa: E402
from processors.pricing import PriceBook  # noqa: E402


def rate(function: Callable[[], int], seconds: float = 1.0) -> float:
    """Items per second over at least `seconds` of repeated runs."""
    done, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        done += function()
    return done / elapsed


def pricing() -> None:
    book = PriceBook.load()
    rng = random.Random(3)
    ours = ["gpt-5.4", "gpt-5.5-2026-04-23", "gpt-5.5", "gpt-5.5-pro", "gpt-4o-mini", "unknown-model"]
    # priced by the genai-prices fallback; Claude and Gemini have a 200k-token tier
    others = [
        ("claude-sonnet-4-5-20250929", "anthropic"),
        ("gemini-2.5-pro", "gcp.gemini"),
        ("us.anthropic.claude-3-7-sonnet-20250219-v1:0", "aws.bedrock"),
        ("mistral-large-latest", "mistral_ai"),
    ]
    days = [date(2026, 11, 1) + timedelta(days=d) for d in range(3)]
    calls = [
        (rng.choice(ours), rng.choice(days), rng.randint(100, 50_000), rng.randint(0, 100), rng.randint(0, 4_000), 0)
        for _ in range(10_000)
    ]

    def cached() -> int:
        for call in calls:
            book.cost(*call)
        return len(calls)

    def uncached() -> int:
        for call in calls:
            book._families_of.clear()
            book._rates_of.clear()
            book._call_rates.clear()
            book.cost(*call)
        return len(calls)

    fast, slow = rate(cached), rate(uncached)
    print(
        f"pricing   cost() cached {fast:>10,.0f} calls/s   caches cleared {slow:>10,.0f}/s   ratio {fast / slow:.1f}x"
    )

    # The hot-path form, one batch of 10k calls: our book's models, then a mix with fallback models.
    def batch(mix: list[tuple[str, str]]) -> Callable[[], int]:
        picked = [rng.choice(mix) for _ in range(10_000)]
        models, providers = [m for m, _ in picked], [p for _, p in picked]
        starts = [(rng.choice(days) - date(1970, 1, 1)).days * 86_400_000_000 for _ in picked]
        inputs = [rng.choice([rng.randint(100, 50_000), rng.randint(150_000, 300_000)]) for _ in picked]
        cached_in = [rng.randint(0, n) for n in inputs]
        outputs = [rng.randint(0, 4_000) for _ in picked]
        reasoning = [rng.randint(0, n) for n in outputs]

        def run() -> int:
            book.costs(models, starts, inputs, cached_in, outputs, reasoning, providers=providers)
            return len(models)

        return run

    book_only = rate(batch([(m, "openai") for m in ours]))
    mixed = rate(batch([(m, "openai") for m in ours] + others))
    print(
        f"pricing   costs() batch: book models {book_only:>10,.0f} calls/s"
        f"   half genai-prices fallback {mixed:>10,.0f}/s   ratio {book_only / mixed:.2f}x"
    )


def refusals() -> None:
    texts = [row["text"] for row in labelled("refusals.jsonl")]
    longer = [text * 4 for text in texts]

    def classify(batch: list[str]) -> Callable[[], int]:
        def run() -> int:
            for text in batch:
                refusal.is_refusal_text(text)
            return len(batch)

        return run

    short, long = rate(classify(texts)), rate(classify(longer))
    print(f"refusal   classifier {short:>10,.0f} answers/s   4x longer answers {long:>10,.0f}/s")


def hallucination_checks() -> None:
    rows = labelled("hallucinations.jsonl")
    calls = [
        {
            "input_text": r["input"],
            "context_text": r["context"],
            "reference_answer": r["reference"],
            "output_text": r["answer"],
            "partner_output_text": r["partner"],
        }
        for r in rows
    ]
    checks = build_checks(DEFAULT_CHECKS)

    def cold() -> None:
        for cached in CACHED:
            cached.cache_clear()

    def run_all() -> int:
        for call in calls:
            for check in checks:
                check.run(call)
            cold()
        return len(calls)

    print(f"halluc.   all default checks {rate(run_all):>8,.0f} calls/s")
    for check in checks:

        def one(check=check) -> int:
            for call in calls:
                check.run(call)
                cold()
            return len(calls)

        print(f"            {check.name:<22} {rate(one, 0.5):>10,.0f} calls/s")


if __name__ == "__main__":
    pricing()
    refusals()
    hallucination_checks()
