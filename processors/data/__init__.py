"""The labelled sets the refusal classifier and the hallucination checks are measured on: our
own (in this package) and the public dev splits in `../shared/quality-data/`."""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).parent


def labelled(name: str) -> list[dict]:
    """The examples of `refusals.jsonl` or `hallucinations.jsonl`, one dict per line."""
    return [json.loads(line) for line in (HERE / name).read_text(encoding="utf-8").splitlines() if line.strip()]


def hallucination_call(example: dict) -> dict:
    """A labelled hallucination example as the `llm_calls`-shaped row the checks take."""
    return {
        "input_text": example["input"],
        "context_text": example["context"],
        "reference_answer": example["reference"],
        "output_text": example["answer"],
        "partner_output_text": example["partner"],
        "model": "labelled",
        "span_id": "labelled",
    }


# Public human-labelled dev splits (README there); never copied into the repository.
PUBLIC = HERE.parents[2] / "shared" / "quality-data"
SUMMARY_PROMPT = "Summarize the following passage."


def public(name: str) -> list[dict]:
    """Rows of a public dev split in `../shared/quality-data/` (FileNotFoundError when absent)."""
    path = PUBLIC / name
    if not path.is_file():
        raise FileNotFoundError(f"public quality data missing: {path} (see the shared quality-data README)")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def faithbench_calls() -> list[tuple[dict, bool]]:
    """FaithBench dev summaries as call rows, with the authors' binary label: hallucinated when
    the worst annotation is Questionable or Unwanted."""
    return [
        (
            {"context_text": row["source"], "input_text": SUMMARY_PROMPT, "output_text": row["summary"]},
            row["worst_label"] in ("Questionable", "Unwanted"),
        )
        for row in public("faithbench.dev.jsonl")
    ]


def halueval_calls() -> list[tuple[dict, bool]]:
    """HaluEval QA dev items as call rows: the right answer (False) and the hallucinated one (True)."""
    calls = []
    for row in public("halueval_qa.dev.jsonl"):
        base = {"context_text": row["knowledge"], "input_text": row["question"]}
        calls.append((dict(base, output_text=row["right_answer"]), False))
        calls.append((dict(base, output_text=row["hallucinated_answer"]), True))
    return calls
