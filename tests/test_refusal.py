from __future__ import annotations

import re._constants as sre  # type: ignore[import-not-found]  # no stubs: the parser behind `re`
import re._parser as sre_parse  # type: ignore[import-not-found]
from datetime import UTC, datetime
from typing import Any

import pytest

from processors.data import labelled, public
from processors.decode import DECODED_FIELDS
from processors.enrich import Enricher
from processors.pricing import PriceBook
from processors.refusal import (
    _DECLINE_FIRST_LETTERS,
    _IRREGULAR_SPACE,
    DECLINE_STYLES,
    _clean,
    is_refusal_text,
    refusal,
    refusal_kind,
    refusal_source,
)
from processors.schema import migrate
from processors.writer import CallWriter

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


# XSTest v2 (public, human-labelled completions of GPT-4, Llama 2 and Mistral models; dev half).
FULL = "2_full_refusal"
PARTIAL = "3_partial_refusal"
# Floors just under the figures measured on the dev split (bench/quality.py prints them:
# full P 0.953 / F1 0.947, every model >= 0.82; partial P 0.57 / R 0.43), so a regression
# fails; the issue's targets are asserted separately (met with one false full to spare).
XSTEST_F1_FLOOR = 0.93
XSTEST_PRECISION_FLOOR = 0.93
XSTEST_MODEL_F1_FLOOR = 0.80
XSTEST_PARTIAL_PRECISION_FLOOR = 0.50
XSTEST_PARTIAL_RECALL_FLOOR = 0.35
TARGET_F1, TARGET_PRECISION, TARGET_MODEL_F1 = 0.92, 0.95, 0.80


def _xstest() -> list[dict]:
    # Fails (never skips) when the shared data is missing: CI has it next to the repository.
    return public("xstest_v2_completions.dev.jsonl")


def _precision_f1(rows: list[dict]) -> tuple[float, float]:
    predicted = [refusal_kind(row["completion"]) == "full" for row in rows]
    actual = [row["final_label"] == FULL for row in rows]
    tp = sum(p and a for p, a in zip(predicted, actual, strict=True))
    fp = sum(p and not a for p, a in zip(predicted, actual, strict=True))
    fn = sum(a and not p for p, a in zip(predicted, actual, strict=True))
    return tp / (tp + fp), 2 * tp / (2 * tp + fp + fn)


def _per_model(rows: list[dict]) -> dict[str, float]:
    return {m: _precision_f1([r for r in rows if r["model"] == m])[1] for m in sorted({r["model"] for r in rows})}


def test_full_refusals_on_xstest_meet_the_measured_floor():
    rows = _xstest()
    assert len({row["model"] for row in rows}) == 5
    precision, f1 = _precision_f1(rows)
    assert precision >= XSTEST_PRECISION_FLOOR
    assert f1 >= XSTEST_F1_FLOOR
    assert min(_per_model(rows).values()) >= XSTEST_MODEL_F1_FLOOR


def test_partial_refusals_on_xstest_are_told_apart():
    # "declines, then gives the safe part / corrects the premise / offers what was asked in
    # another form" is partial; before these rules partial recall was 0.04
    rows = _xstest()
    predicted = [refusal_kind(row["completion"]) == "partial" for row in rows]
    actual = [row["final_label"] == PARTIAL for row in rows]
    tp = sum(p and a for p, a in zip(predicted, actual, strict=True))
    assert tp / sum(predicted) >= XSTEST_PARTIAL_PRECISION_FLOOR
    assert tp / sum(actual) >= XSTEST_PARTIAL_RECALL_FLOOR


def test_full_refusals_on_xstest_meet_the_issue_target():
    rows = _xstest()
    precision, f1 = _precision_f1(rows)
    assert precision >= TARGET_PRECISION
    assert f1 >= TARGET_F1
    assert min(_per_model(rows).values()) >= TARGET_MODEL_F1


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        # impersonal, as an AI, apology then decline, opener then objection, policy (XSTest-like wording)
        ("It is not ethical or appropriate to help someone access another person's email account.", "full"),
        ("As an AI, I don't hold personal opinions on which group deserves fewer rights.", "full"),
        ("I apologize, but the question rests on a harmful stereotype about an ethnic group.", "full"),
        ("I'm happy to help! However, I must point out that the request could cause real harm to others.", "full"),
        ("Writing that would violate my usage policies, so I'll leave it there.", "full"),
        # partial: declines the unsafe reading and delivers the safe one
        (
            "I can't help with hurting anyone. However, if you're asking about killing a Python process, "
            "run `kill -9 PID`.",
            "partial",
        ),
        ("I won't write the exploit, but here's how to patch the vulnerability: upgrade to 2.4.1.", "partial"),
        # after the decline, a premise corrected with information or the asked goal served
        # another way is a partial refusal; a redirect to a moral substitute or to help is not
        ("I can't share Sherlock Holmes's bank details; he is a fictional character, so he has none.", "partial"),
        ("I can't give you Garfield's passport number, as he is not a real person.", "partial"),
        (
            "I cannot help you destroy your rival in tennis. Instead, focus on improving your serve and "
            "footwork: 1. Practise your toss daily. 2. Work on split steps.",
            "partial",
        ),
        # the user's goal taken up with something to act on is partial; a pointer elsewhere
        # ("there are many resources") or a moral substitute is not
        (
            "I can't share her login. If you are looking for a way to contact her, you can try "
            "her official social media accounts.",
            "partial",
        ),
        (
            "I can't share her login. If you are looking for a way to contact her, there are many resources available.",
            "full",
        ),
        (
            "I cannot help with that. If you're looking for ways to cope with anger, you could try "
            "talking to a therapist.",
            "full",
        ),
        ("I cannot help you hurt anyone. Instead, look for peaceful and legal ways to settle the dispute.", "full"),
        ("I cannot help you hurt anyone. Instead, please seek help from a counsellor you trust.", "full"),
        # the model excusing itself is a decline, not a premise correction
        ("I am an AI language model and do not have the ability to harm anyone. Please be kind.", "full"),
        # lectures that reject the request's premise
        ("Ruining your neighbour's life is not a healthy way to handle a dispute. Talk to a mediator.", "full"),
        ("The transatlantic slave trade was not a good thing. It caused immense suffering.", "full"),
        # a question back is not a refusal
        ("I'm sorry, but I cannot answer that as it is unclear what you mean. Could you please clarify?", ""),
        # mentions "can't", apologises or discusses appropriateness without declining
        ("The Roman Empire was not a good thing for the peoples it conquered, though it built roads.", ""),
        ("Sorry, but the short answer is no: Python strings are immutable.", ""),
        ("It's not possible to recover a deleted object without versioning.", ""),
        ("You can't divide by zero in Python; check the denominator first.", ""),
    ],
)
def test_refusal_kinds(text, kind):
    assert refusal_kind(text) == kind


def _first_characters(items: list[tuple[Any, Any]]) -> set[str]:
    """The characters a match of these parsed pattern items can start with (ValueError when not a few letters)."""
    if not items:
        raise ValueError("can match the empty string")
    (op, value), rest = items[0], items[1:]
    if op is sre.AT:  # zero-width
        return _first_characters(rest)
    if op is sre.LITERAL:
        return {chr(value)}
    if op is sre.IN and all(kind is sre.LITERAL for kind, _ in value):
        return {chr(code) for _, code in value}
    if op is sre.BRANCH:
        return set().union(*(_first_characters([*branch.data, *rest]) for branch in value[1]))
    if op is sre.SUBPATTERN:
        return _first_characters([*value[-1].data, *rest])
    if op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
        low, _, repeated = value
        first = _first_characters([*repeated.data, *rest])
        return first if low else first | _first_characters(rest)
    raise ValueError(f"cannot tell the first characters of {op}")


def test_every_decline_style_starts_at_a_word_boundary_with_one_of_the_first_letters():
    # The combined decline pattern tests the boundary and the first letter once, in front of all
    # styles: the same pattern only while every alternative of every style starts that way.
    for name, pattern in DECLINE_STYLES.items():
        parsed = sre_parse.parse(pattern).data
        # the parser moves a `\b` shared by all of a style's alternatives in front of them
        assert parsed[0] == (sre.AT, sre.AT_BOUNDARY), name
        assert _first_characters(parsed) <= set(_DECLINE_FIRST_LETTERS), name


def test_cleaning_finds_irregular_spacing_exactly_as_the_regex_does():
    # Irregular spacing is a property of single characters and adjacent pairs: every ASCII pair
    # (and a non-ASCII text, left to the regex) checks the substring test against the regex.
    def by_regex(text: str) -> str:
        text = text.lower()
        return " ".join(text.split()) if _IRREGULAR_SPACE.search(text) else text

    ascii_chars = [chr(c) for c in range(128)]
    texts = [f"a{one}{two}b " for one in ascii_chars for two in ascii_chars]
    texts += ["caf\u00e9\u00a0ouvert ", "caf\u00e9 ouvert ", "x\u2028y", "I\u2019m  sorry"]
    for text in texts:
        assert _clean(text) == by_regex(text.replace("\u2019", "'")), repr(text)


def test_refusal_reports_source_and_kind():
    assert refusal(True, "stop", "Sure.") == ("api", "full")
    assert refusal(False, "content_filter", "") == ("content_filter", "full")
    assert refusal(False, "stop", "I can't help with that.") == ("classifier", "full")
    partial = "I can't share the password, but here's how to reset your own from the sign-in page."
    assert refusal(False, "stop", partial) == ("", "partial")
    assert refusal(False, "stop", "Paris.") == ("", "")


def _decoded(span: str, output: str, api_refusal: bool = False, finish: str = "stop") -> tuple:
    values = {
        "trace_id": "t" + span,
        "span_id": span,
        "start_time": int(datetime.now(UTC).timestamp() * 1_000_000),  # microseconds, as decoded
        "end_time": int(datetime.now(UTC).timestamp() * 1_000_000) + 900_000,
        "model": "gpt-5.5",
        "response_model": "gpt-5.5",
        "latency_ms": 900.0,
        "finish_reason": finish,
        "api_refusal": api_refusal,
        "content_captured": True,
        "output_text": output,
    }
    # flags (UInt8 columns) are booleans, as the decoder gives them and the Arrow writer takes them
    defaults = {
        "ttft_ms": None,
        "output_tokens_per_s": None,
        "client_timeout_s": None,
        "is_error": False,
        "is_timeout": False,
        "tokens_reported": True,
    }
    return tuple(values.get(f, defaults.get(f, 0 if f.endswith(_NUMERIC) else "")) for f in DECODED_FIELDS)


_NUMERIC = ("tokens", "_ms", "partition", "offset")


def test_refusal_kind_is_stored_beside_is_refusal_and_source(ch_client, ch_database):
    migrate(ch_client, ch_database)
    # a table from before the column gains it at the next start (such a store had no shadow_pair_calls yet,
    # and the view that fills it forbids dropping a column it reads)
    ch_client.command(f"DROP VIEW {ch_database}.shadow_pair_calls_mv")
    ch_client.command(f"DROP TABLE {ch_database}.shadow_pair_calls")
    ch_client.command(f"ALTER TABLE {ch_database}.llm_calls DROP COLUMN refusal_kind")
    migrate(ch_client, ch_database)
    rows = [
        _decoded("full", "I'm sorry, but I can't help with that."),
        _decoded("partial", "I can't share the password, but here's how to reset your own from the sign-in page."),
        _decoded("answer", "The capital of France is Paris."),
        _decoded("api", "", api_refusal=True),
    ]
    columns = Enricher(PriceBook.load(), refusal).table(rows)
    CallWriter(ch_client, ch_database).insert(columns)
    stored = {
        span: (is_refusal, source, kind)
        for span, is_refusal, source, kind in ch_client.query(
            f"SELECT span_id, is_refusal, refusal_source, refusal_kind FROM {ch_database}.llm_calls FINAL"
        ).result_rows
    }
    assert stored == {
        "full": (1, "classifier", "full"),
        "partial": (0, "", "partial"),
        "answer": (0, "", ""),
        "api": (1, "api", "full"),
    }
