"""Speed of the per-call enrichment, measured side by side in one run.

    python bench/enrichment.py [--calls 50000] [--batch 5000] [--baseline REV]

- Enricher.table: CPU us per call of the processor's enrichment step on decoded rows of the
  processor workload (tests/processor_workload.py) with a fallback-priced model on every 7th
  call and real model text (XSTest completions, ../shared/quality-data) captured on every 10th;
  also without the captured text, to show what the refusal classifier costs. With `--baseline
  REV`, the same for the enrichment code of git revision REV (a `git archive` in a temporary
  folder, each in its own process, interleaved, best of each), side by side as a ratio, and
  whether both produce the same Arrow table;
- pricing: the batched `PriceBook.costs` on our book's models against a mix where half the
  calls are priced by the genai-prices fallback, and the mix with the rate caches cleared
  before each batch; `PriceBook.cost` one call at a time (the LLM judge's form: a batch of one);
- refusal classifier: answers per second on the labelled answers and on 4x longer ones;
- hallucination checks: calls per second of each default check on the labelled set, with
  the text-feature caches cleared after every call (each real call brings new texts).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# `--code DIR` (a worker of `--baseline`): that folder's processors package instead of ours.
CODE = Path(sys.argv[sys.argv.index("--code") + 1]) if "--code" in sys.argv else REPO
sys.path[:0] = [str(CODE), str(REPO)]

import pyarrow as pa  # noqa: E402

from processors import refusal  # noqa: E402
from processors.data import labelled, public  # noqa: E402
from processors.decode import decode  # noqa: E402
from processors.enrich import Enricher  # noqa: E402
from processors.hallucination import DEFAULT_CHECKS, build_checks  # noqa: E402
from processors.hallucination.text import CACHED  # noqa: E402
from processors.pricing import PriceBook  # noqa: E402
from tests.processor_workload import make_calls, messages  # noqa: E402

# Priced by the genai-prices fallback; the Gemini calls cross its 200k-token tier.
FALLBACK_MODELS = (
    ("claude-sonnet-4-5-20250929", "anthropic"),
    ("gemini-2.5-pro", "gcp.gemini"),
    ("us.anthropic.claude-3-7-sonnet-20250219-v1:0", "aws.bedrock"),
)
# A fixed hour (both revisions price the same days) across a midnight: two price days per batch.
START_NS = int(datetime(2026, 11, 1, 23, 30, tzinfo=UTC).timestamp()) * 10**9
ROUNDS = 3  # per worker process; the parent interleaves two processes per revision


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
        for _ in range(500)
    ]

    def one_at_a_time() -> int:
        for call in calls:
            book.cost(*call)
        return len(calls)

    # The hot-path form, one batch of 10k calls: our book's models, then a mix with fallback models.
    def batch(mix: list[tuple[str, str]], cold: bool = False) -> Callable[[], int]:
        picked = [rng.choice(mix) for _ in range(10_000)]
        models, providers = [m for m, _ in picked], [p for _, p in picked]
        starts = [(rng.choice(days) - date(1970, 1, 1)).days * 86_400_000_000 for _ in picked]
        inputs = [rng.choice([rng.randint(100, 50_000), rng.randint(150_000, 300_000)]) for _ in picked]
        cached_in = [rng.randint(0, n) for n in inputs]
        outputs = [rng.randint(0, 4_000) for _ in picked]
        reasoning = [rng.randint(0, n) for n in outputs]

        def run() -> int:
            if cold:
                book._families_of.clear()
                book._rates_of.clear()
                book._call_rates.clear()
            book.costs(models, starts, inputs, cached_in, outputs, reasoning, providers=providers)
            return len(models)

        run()  # the first batch looks its rates up
        return run

    mix = [(m, "openai") for m in ours] + others
    book_only, mixed, cold = rate(batch([(m, "openai") for m in ours])), rate(batch(mix)), rate(batch(mix, cold=True))
    print(
        f"pricing   costs() batches of 10k: book models {book_only:>10,.0f} calls/s"
        f"   half genai-prices fallback {mixed:>10,.0f}/s   the same, caches cleared {cold:>10,.0f}/s"
    )
    print(f"pricing   cost() one call at a time {rate(one_at_a_time):>10,.0f} calls/s")


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


def workload(n: int, content: bool) -> list[tuple]:
    """Decoded rows of `n` calls of the processor workload, some fallback-priced, some with real text."""
    texts = [row["completion"] for row in public("xstest_v2_completions.dev.jsonl")]
    calls = make_calls(n, seed=1, start_ns=START_NS, spread_s=3600)
    for i, call in enumerate(calls):
        if i % 7 == 3:
            call.model, call.provider = FALLBACK_MODELS[i % 3]
            if i % 3 == 1 and i % 2:
                call.input_tokens = 250_000
        if content and i % 10 == 5:  # no two calls answer with identical text
            call.output_text = f"{texts[i % len(texts)]}\n\n(call {i})"
    return [row for _, value in messages(calls, per_message=512) for row in decode(value).rows]


def enrichment_worker(args: argparse.Namespace) -> None:
    """Best CPU seconds of Enricher.table over the workload, as JSON; the tables to `--out` (Arrow IPC)."""
    enricher = Enricher(PriceBook.load(), refusal.refusal)
    result = {}
    for content in (True, False):
        rows = workload(args.calls, content)
        batches = [rows[at : at + args.batch] for at in range(0, len(rows), args.batch)]
        best = float("inf")
        for _ in range(ROUNDS):
            started = time.process_time()
            tables = [enricher.table(batch) for batch in batches]
            best = min(best, time.process_time() - started)
        result["content" if content else "no_content"] = best
        if content:
            with pa.OSFile(str(args.out), "wb") as sink, pa.ipc.new_file(sink, tables[0].schema) as writer:
                for table in tables:
                    writer.write_table(table)
    print(json.dumps(result))


def enrichment(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="cutover-enrich-") as scratch:
        codes = {"ours": REPO}
        if args.baseline:
            archive = subprocess.run(
                ["git", "archive", args.baseline, "processors"], cwd=REPO, capture_output=True, check=True
            )
            subprocess.run(["tar", "-x", "-C", scratch], input=archive.stdout, check=True)
            codes[args.baseline] = Path(scratch)
        best: dict[str, dict[str, float]] = {}
        for _ in range(2):
            for name, code in codes.items():
                out = Path(scratch) / f"{name}.arrow"
                command = [sys.executable, __file__, "--code", str(code), "--worker", "--out", str(out)]
                command += ["--calls", str(args.calls), "--batch", str(args.batch)]
                done = subprocess.run(command, capture_output=True, text=True, check=True)
                times = json.loads(done.stdout.strip().splitlines()[-1])
                best[name] = {k: min(v, best.get(name, {}).get(k, v)) for k, v in times.items()}
        tables = {name: pa.ipc.open_file(str(Path(scratch) / f"{name}.arrow")).read_all() for name in codes}
    print(
        f"enrich    Enricher.table, {args.calls:,} calls in batches of {args.batch:,}, CPU us/call, best of {2 * ROUNDS}:"
    )
    for name, times in best.items():
        print(
            f"            {name:<12} 10% real text {times['content'] / args.calls * 1e6:6.2f}"
            f"   no text {times['no_content'] / args.calls * 1e6:6.2f}"
        )
    if args.baseline:
        ours, base = best["ours"], best[args.baseline]
        same = tables["ours"].equals(tables[args.baseline], check_metadata=True)
        print(
            f"            ours / {args.baseline}: 10% real text {ours['content'] / base['content']:.2f}x CPU"
            f"   no text {ours['no_content'] / base['no_content']:.2f}x CPU   same table: {'yes' if same else 'NO'}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=5_000, help="calls per Enricher.table batch")
    parser.add_argument("--baseline", metavar="REV", help="git revision whose enrichment to time against ours")
    parser.add_argument("--only-enrichment", action="store_true", help="skip the pricing/refusal/hallucination lines")
    parser.add_argument("--code", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.worker:
        enrichment_worker(arguments)
    else:
        enrichment(arguments)
        if not arguments.only_enrichment:
            pricing()
            refusals()
            hallucination_checks()
