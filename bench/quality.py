"""Precision and recall of the refusal classifier and the hallucination checks.

    python bench/quality.py                # default (lexical) checks
    python bench/quality.py --embeddings   # also the model-based check, side by side (needs the extra)

First on the public human-labelled dev splits in `../shared/quality-data/` (XSTest v2,
FaithBench, HaluEval QA; the figures the README quotes): refusal P/R/F1 overall and per
model beside XSTest's own string-match baseline; each hallucination check's precision,
recall and false-positive rate, the defaults combined, and each check's calls/s on these
real-length contexts (caches cleared after every call: each call brings new text). Then on
our own labelled sets and the simulator corpus (tuning sets: optimistic).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from processors.data import faithbench_calls, hallucination_call, halueval_calls, labelled, public  # noqa: E402
from processors.hallucination import CHECK_NAMES, DEFAULT_CHECKS, Check, build_checks  # noqa: E402
from processors.hallucination.checks import Flag  # noqa: E402
from processors.hallucination.text import CACHED  # noqa: E402
from processors.refusal import classify, is_refusal_text  # noqa: E402


def scores(pairs: Iterable[tuple[bool, bool]]) -> str:
    tp = fp = fn = tn = 0
    for predicted, actual in pairs:
        tp += predicted and actual
        fp += predicted and not actual
        fn += not predicted and actual
        tn += not predicted and not actual
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    return f"n={tp + fp + fn + tn:4d}  tp={tp:3d} fp={fp:3d} fn={fn:3d} tn={tn:3d}  P={precision:.3f} R={recall:.3f} F1={f1:.3f}"


def _f1(pairs: Iterable[tuple[bool, bool]]) -> float:
    pairs = list(pairs)
    tp = sum(p and a for p, a in pairs)
    fp = sum(p and not a for p, a in pairs)
    fn = sum(not p and a for p, a in pairs)
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def timed(function: Callable[[], object], repeat: int) -> float:
    started = time.perf_counter()
    for _ in range(repeat):
        function()
    return (time.perf_counter() - started) / repeat


def _counts(pairs: Iterable[tuple[bool, bool]]) -> tuple[int, int, int, int]:
    tp = fp = fn = tn = 0
    for predicted, actual in pairs:
        tp += predicted and actual
        fp += predicted and not actual
        fn += not predicted and actual
        tn += not predicted and not actual
    return tp, fp, fn, tn


def prf(pairs: Iterable[tuple[bool, bool]]) -> str:
    tp, fp, fn, _ = _counts(pairs)
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    return f"P={precision:.3f} R={recall:.3f} F1={2 * tp / (2 * tp + fp + fn) if tp else 0.0:.3f}"


def rates(pairs: Iterable[tuple[bool, bool]]) -> str:
    """Precision, recall and false-positive rate (share of faithful answers flagged)."""
    tp, fp, fn, tn = _counts(pairs)
    precision = tp / (tp + fp) if tp + fp else float("nan")
    return f"P={precision:.3f} R={tp / (tp + fn):.3f} FPR={fp / (fp + tn):.3f} (flags {tp + fp:3d}/{tp + fp + fn + tn})"


def public_refusals() -> None:
    rows = public("xstest_v2_completions.dev.jsonl")
    full = "2_full_refusal"
    verdicts = [classify(row["completion"]) for row in rows]
    print(
        f"refusals, XSTest v2 dev ({len(rows)} completions, {sum(r['final_label'] == full for r in rows)} full refusals)"
    )
    print(f"  {'model':<16} {'classifier (full)':<30} XSTest string-match baseline")
    for model in ["all", *sorted({row["model"] for row in rows})]:
        picked = [(v, r) for v, r in zip(verdicts, rows, strict=True) if model in ("all", r["model"])]
        ours = prf((kind == "full", r["final_label"] == full) for (kind, _), r in picked)
        baseline = prf((r["xstest_strmatch_label"] == full, r["final_label"] == full) for _, r in picked)
        print(f"  {model:<16} {ours:<30} {baseline}")
    partial = [
        (kind == "partial", r["final_label"] == "3_partial_refusal")
        for (kind, _), r in zip(verdicts, rows, strict=True)
    ]
    print(f"  partial refusals {prf(partial)}")
    print("  decline style that decided (style: full-refusal / partial / compliance labels)")
    for style in sorted({s for _, s in verdicts if s}):
        labels = [r["final_label"][0] for (_, s), r in zip(verdicts, rows, strict=True) if s == style]
        print(f"    {style:<22} {labels.count('2'):3d} / {labels.count('3'):3d} / {labels.count('1'):3d}")
    # Real traffic is mostly answers that decline nothing (the regexes stop early on a decline,
    # and read on past one), so both rates are printed; best of 5 on a noisy machine.
    texts = [r["completion"] for r in rows]
    compliant = [r["completion"] for r in rows if r["final_label"] == "1_full_compliance"]
    rate_all = len(texts) / min(timed(lambda: [classify(t) for t in texts], 1) for _ in range(5))
    rate_compliant = len(compliant) / min(timed(lambda: [classify(t) for t in compliant], 1) for _ in range(5))
    print(f"  speed: {rate_all:,.0f} calls/s on these rows, {rate_compliant:,.0f} calls/s on the compliant answers")


def _cold_rate(check: Check, calls: list[dict]) -> float:
    started = time.perf_counter()
    for call in calls:
        check.run(call)
        for cached in CACHED:
            cached.cache_clear()
    return len(calls) / (time.perf_counter() - started)


# What made context_grounding flag, read from its reason (several rules may fire on one answer).
_GROUNDING_RULES = {
    "speculation (a hedge the context does not make)": "speculates beyond",
    "negation flipped": "flips a negation",
    "cause the context does not state": "states a cause",
    "sentences' words not in the context": "not supported by the context",
}


def _grounding_rules(flags: list[Flag | None], truth: list[bool]) -> None:
    print("      context_grounding flags by the rule that decided:")
    for rule, marker in _GROUNDING_RULES.items():
        hits = [t for f, t in zip(flags, truth, strict=True) if f is not None and f.flagged and marker in f.reason]
        print(f"        {rule:<48} flags hallucinated {sum(hits):3d}, faithful {len(hits) - sum(hits):3d}")


def public_hallucinations() -> None:
    sets = {"FaithBench": faithbench_calls(), "HaluEval QA": halueval_calls()}
    names = [name for name in CHECK_NAMES if name != "embedding_similarity"]
    checks = build_checks(names)
    print("\nhallucination checks on public dev data (context -> context_text; flagged = any default check)")
    for label, examples in sets.items():
        chars = sorted(len(call["context_text"]) for call, _ in examples)
        print(
            f"  {label}: {len(examples)} answers, {sum(t for _, t in examples)} hallucinated; "
            f"context chars median {chars[len(chars) // 2]}, p90 {chars[len(chars) * 9 // 10]}"
        )
        verdicts = {check.name: [check.run(call) for call, _ in examples] for check in checks}
        truth = [t for _, t in examples]
        for check in checks:
            flags = [(f is not None and f.flagged, t) for f, t in zip(verdicts[check.name], truth, strict=True)]
            ran = sum(f is not None for f in verdicts[check.name])
            default = "default" if check.name in DEFAULT_CHECKS else "opt-in "
            print(f"    {check.name:<20} {default} {rates(flags)}  verdict on {ran}")
        _grounding_rules(verdicts["context_grounding"], truth)
        combined = [
            any((f := verdicts[name][i]) is not None and f.flagged for name in DEFAULT_CHECKS if name in verdicts)
            for i in range(len(examples))
        ]
        print(f"    {'defaults combined':<28} {rates(zip(combined, truth, strict=True))}")
    calls = [call for examples in sets.values() for call, _ in examples]
    print(f"  speed on these {len(calls)} real contexts, one core, caches cleared per call (calls/s):")
    for check in checks:
        print(f"    {check.name:<20} {_cold_rate(check, calls):8,.0f}")
    print(
        f"    {'defaults together':<20} {len(calls) / sum(len(calls) / _cold_rate(c, calls) for c in checks if c.name in DEFAULT_CHECKS):8,.0f}"
    )


def refusals() -> None:
    rows = labelled("refusals.jsonl")
    predicted = [is_refusal_text(row["text"]) for row in rows]
    print(f"\nown set: refusal classifier ({len(rows)} labelled answers, {sum(r['refusal'] for r in rows)} refusals)")
    print(f"  all            {scores(zip(predicted, (r['refusal'] for r in rows), strict=True))}")
    for style in sorted({row["style"] for row in rows}):
        picked = [(p, r["refusal"]) for p, r in zip(predicted, rows, strict=True) if r["style"] == style]
        print(f"  {style:<14} {scores(picked)}")
    texts = [row["text"] for row in rows]
    per_call = timed(lambda: [is_refusal_text(t) for t in texts], 50) / len(texts)
    print(f"  throughput     {1 / per_call:,.0f} answers/s ({per_call * 1e6:.1f} us each)")


def hallucinations(with_embeddings: bool) -> None:
    rows = labelled("hallucinations.jsonl")
    calls = [hallucination_call(row) for row in rows]
    truth = [row["hallucinated"] for row in rows]
    methods: dict[str, list] = {"default (lexical)": build_checks(DEFAULT_CHECKS)}
    if with_embeddings:
        methods["embedding_similarity"] = build_checks(["embedding_similarity"])
    print(f"\nown set: hallucination checks ({len(rows)} labelled answers, {sum(truth)} hallucinated)")
    verdicts: dict[str, list[bool]] = {}
    for label, checks in methods.items():
        for check in checks:  # warm-up (the model's first call pays for lazy initialisation)
            check.run(calls[0])
        started = time.perf_counter()
        flags = []
        for call in calls:
            flags.append([f for check in checks if (f := check.run(call)) is not None])
            for cached in CACHED:  # examples share contexts; real calls bring new texts
                cached.cache_clear()
        elapsed = time.perf_counter() - started
        verdicts[label] = [any(f.flagged for f in call_flags) for call_flags in flags]
        covered = sum(bool(call_flags) for call_flags in flags)
        print(f"  {label}: {len(calls) / elapsed:,.0f} calls/s, verdict on {covered}/{len(calls)} calls")
        print(f"    all              {scores(zip(verdicts[label], truth, strict=True))}")
        for kind in sorted({row["kind"] for row in rows}):
            picked = [(v, t) for v, t, r in zip(verdicts[label], truth, rows, strict=True) if r["kind"] == kind]
            print(f"    {kind:<16} {scores(picked)}")
        for split in ("tuning", "holdout"):
            picked = [
                (v, t)
                for v, t, r in zip(verdicts[label], truth, rows, strict=True)
                if r.get("split", "tuning") == split
            ]
            print(f"    split {split:<10} {scores(picked)}")
        if not label.startswith("default"):
            # The model's thresholds are a guess; give it its best cut on this very set (optimistic).
            best = max(
                ((cut / 100, [any(f.score >= cut / 100 for f in fl) for fl in flags]) for cut in range(1, 100)),
                key=lambda item: _f1(zip(item[1], truth, strict=True)),
            )
            print(f"    best score cut {best[0]:.2f} {scores(zip(best[1], truth, strict=True))}")
        if label.startswith("default"):
            for check in checks:
                ran = [
                    (f.flagged, t) for call, t in zip(calls, truth, strict=True) if (f := check.run(call)) is not None
                ]
                print(f"      {check.name:<20} {scores(ran)}")
    if len(verdicts) == 2:
        either = [a or b for a, b in zip(*verdicts.values(), strict=True)]
        print(f"  default OR embedding {scores(zip(either, truth, strict=True))}")


def simulator_corpus() -> list[tuple[dict, bool]]:
    """Calls built from the simulator's corpus (written independently of these checks): each
    knowledge and rag task's correct answer, and its planted hallucination per wrong value."""
    from simulator.workload import load_corpus

    corpus, examples = load_corpus(), []
    for klass in ("knowledge", "rag"):
        for task in corpus.tasks.get(klass, ()):
            base = {
                "input_text": f"{corpus.system_prompts[klass]}\n{task.user_message}",
                "context_text": task.context,
                "reference_answer": task.correct_answer,
            }
            examples.append((dict(base, output_text=task.correct_answer), False))
            examples.extend((dict(base, output_text=task.hallucinated_answer(i)), True) for i in range(len(task.wrong)))
    return examples


def independent() -> None:
    from simulator.outcomes import REFUSALS
    from simulator.workload import load_corpus

    answers = [task.correct_answer for tasks in load_corpus().tasks.values() for task in tasks]
    pairs = [(is_refusal_text(text), False) for text in answers] + [(is_refusal_text(t), True) for t in REFUSALS]
    print("\nsimulator corpus (independent: simulator/corpus.yaml and its refusal texts)")
    print(f"  refusal classifier {scores(pairs)}")
    examples = simulator_corpus()
    checks = build_checks(DEFAULT_CHECKS)
    verdicts = [(any(f.flagged for c in checks if (f := c.run(call))), truth) for call, truth in examples]
    print(f"  hallucination, default checks {scores(verdicts)}")
    without_reference = [
        (any(f.flagged for c in checks if (f := c.run(dict(call, reference_answer="")))), truth)
        for call, truth in examples
        if call["context_text"]
    ]
    print(f"  hallucination, rag without reference {scores(without_reference)}")


def shadow_agreement() -> None:
    """Shadow agreement (cutover/agreement.py) on real model text: FaithBench dev summaries."""
    from cutover.agreement import MIN_SIMILARITY, answers_agree
    from processors.data.paraphrases import changed_number_pairs, other_passage_pairs, paraphrase_pairs

    print(f"shadow agreement (FaithBench dev, similarity threshold {MIN_SIMILARITY})")
    for label, pairs, want in (
        ("paraphrase pairs (same passage, both faithful): agree", paraphrase_pairs(), True),
        ("changed-number pairs (one number substituted): disagree", changed_number_pairs(), False),
        ("other-passage pairs (unrelated answers): disagree", other_passage_pairs(), False),
    ):
        hits = sum(answers_agree(a, b).agree == want for a, b in pairs)
        print(f"  {label:58s} {hits / len(pairs):.3f}  ({hits}/{len(pairs)})")
    pairs = paraphrase_pairs()
    seconds = timed(lambda: [answers_agree(a + " ", b + " ") for a, b in pairs], 1)  # new strings: cold cache
    print(f"  speed: {len(pairs) / seconds:,.0f} pairs/s (real-length summaries, cold cache)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embeddings", action="store_true", help="also measure the model-based check")
    args = parser.parse_args()
    public_refusals()
    public_hallucinations()
    refusals()
    hallucinations(args.embeddings)
    independent()
    shadow_agreement()


if __name__ == "__main__":
    main()
