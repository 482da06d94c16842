from __future__ import annotations

import pytest

from processors.data import labelled
from processors.refusal import is_refusal_text, refusal_source

# Floors, not the current figures (1.0/1.0 on this set, see bench/quality.py): the set is
# also the tuning set, so they leave room for harder examples to be added while still
# failing on a real regression. Precision is held higher because a false refusal on a
# good answer inflates the refusal rate that pages the on-call (tests/test_alerts.py).
PRECISION_FLOOR = 0.95
RECALL_FLOOR = 0.90
HARD_NEGATIVE_FALSE_POSITIVE_CEILING = 0.05


def _examples() -> list[dict]:
    return labelled("refusals.jsonl")


def test_labelled_set_is_large_and_varied_enough():
    rows = _examples()
    styles = {row["style"] for row in rows}
    assert len(rows) >= 100
    assert sum(row["refusal"] for row in rows) >= 50
    assert sum(row["style"] == "hard_negative" for row in rows) >= 30
    assert {"refusal", "answer", "hard_negative", "holdout"} <= styles


def test_classifier_precision_and_recall_meet_the_floor():
    rows = _examples()
    predicted = [is_refusal_text(row["text"]) for row in rows]
    tp = sum(p and row["refusal"] for p, row in zip(predicted, rows, strict=True))
    fp = sum(p and not row["refusal"] for p, row in zip(predicted, rows, strict=True))
    fn = sum(not p and row["refusal"] for p, row in zip(predicted, rows, strict=True))
    assert tp / (tp + fp) >= PRECISION_FLOOR
    assert tp / (tp + fn) >= RECALL_FLOOR
    hard = [p for p, row in zip(predicted, rows, strict=True) if row["style"] == "hard_negative"]
    assert sum(hard) / len(hard) <= HARD_NEGATIVE_FALSE_POSITIVE_CEILING


@pytest.mark.parametrize(
    ("text", "refused"),
    [
        ("I’m sorry, but I can’t help with that.", True),  # typographic apostrophes
        ("I can't help with that, but here's a general overview: vaccines train the immune system.", False),
        ("I can't stress enough: back up first.", False),
        ("", False),
        # a refusal quoted deep inside a long answer is not the answer refusing
        ("Here is the report. " + "Latency rose on Tuesday. " * 20 + "The model said: I can't help with that.", False),
    ],
)
def test_classifier_edge_cases(text, refused):
    assert is_refusal_text(text) is refused


def test_refusal_source_prefers_the_api_signal_then_the_finish_reason():
    refusal = "I can't help with that."
    assert refusal_source(True, "stop", refusal) == "api"
    assert refusal_source(True, "content_filter", "") == "api"
    assert refusal_source(False, "content_filter", "Paris.") == "content_filter"
    assert refusal_source(False, "stop", refusal) == "classifier"
    assert refusal_source(False, "stop", "The capital of France is Paris.") == ""
    assert refusal_source(False, "length", "") == ""
