"""Speed of the per-call enrichment, measured side by side in one run.

    python bench/enrichment.py

- pricing: `PriceBook.cost` with its model and (family, day) lookups cached, against the
  same calls with the caches cleared before each call;
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
    models = ["gpt-5.4", "gpt-5.5-2026-04-23", "gpt-5.5", "gpt-5.5-pro", "gpt-4o-mini", "unknown-model"]
    days = [date(2026, 11, 1) + timedelta(days=d) for d in range(3)]
    calls = [
        (rng.choice(models), rng.choice(days), rng.randint(100, 50_000), rng.randint(0, 100), rng.randint(0, 4_000), 0)
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
            book.cost(*call)
        return len(calls)

    fast, slow = rate(cached), rate(uncached)
    print(
        f"pricing   cost() cached {fast:>10,.0f} calls/s   caches cleared {slow:>10,.0f}/s   ratio {fast / slow:.1f}x"
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
