"""The labelled sets the refusal classifier and the hallucination checks are measured on."""

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
