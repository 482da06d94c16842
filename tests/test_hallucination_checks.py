from __future__ import annotations

from pathlib import Path

import pytest

from processors import data
from processors.data import hallucination_call as as_call
from processors.hallucination import DEFAULT_CHECKS, build_checks
from processors.hallucination.checks import (
    AnswerRelevance,
    ContextGrounding,
    Flag,
    ReferenceMismatch,
    ShadowDisagreement,
    UnsupportedFacts,
)
from processors.hallucination.relations import polarity_flips, unsupported_links
from processors.hallucination.text import content_terms, name_supported, names, numbers

CONTEXT = (
    "The outage on March 3 lasted 47 minutes. It was caused by an expired TLS certificate on the internal "
    "load balancer. The on-call engineer renewed the certificate and traffic recovered at 14:52 UTC."
)
# Floors below the measured figures (bench/quality.py): the set doubles as the tuning set.
PRECISION_FLOOR = 0.90
# Recall fell from ~0.95 to 0.83 when unsupported_facts was calibrated to flag rarely on faithful
# public answers (one unsupported fact no longer flags alone unless it swaps a context fact or
# answers the question): the honest trade, see README.
RECALL_FLOOR = 0.80


def labelled() -> list[dict]:
    return data.labelled("hallucinations.jsonl")


def test_grounded_answer_passes_and_invented_sentence_is_quoted():
    check = ContextGrounding()
    good = check.run(
        {
            "input_text": "What caused the outage?",
            "context_text": CONTEXT,
            "output_text": "An expired TLS certificate on the internal load balancer caused the outage.",
        }
    )
    assert good is not None and not good.flagged and good.score == 0
    bad = check.run(
        {
            "input_text": "What caused the outage?",
            "context_text": CONTEXT,
            "output_text": "A certificate expired. Engineers blamed a misconfigured Kubernetes autoscaler "
            "deployed by the platform team during the Frankfurt migration.",
        }
    )
    assert bad is not None and bad.flagged and bad.check_name == "context_grounding"
    assert "Kubernetes autoscaler" in bad.reason


def test_unsupported_numbers_names_identifiers_and_swapped_quantities():
    check = UnsupportedFacts()
    ok = check.run(
        {
            "input_text": "How long?",
            "context_text": CONTEXT,
            "output_text": "It lasted 47 minutes and recovered at 14:52 UTC.",
        }
    )
    assert ok is not None and not ok.flagged, ok
    wrong_number = check.run(
        {"input_text": "How long?", "context_text": CONTEXT, "output_text": "It lasted 95 minutes."}
    )
    assert wrong_number.flagged and "95" in wrong_number.reason
    # weak evidence is reported but does not flag alone (calibrated on FaithBench/HaluEval dev):
    # a single capitalised word, a small count
    weak = check.run(
        {
            "input_text": "How long?",
            "context_text": CONTEXT,
            "output_text": "It lasted 47 minutes, 2 incidents in Frankfurt.",
        }
    )
    assert not weak.flagged and weak.score > 0 and "frankfurt" in weak.reason and "2" in weak.reason
    swapped = check.run(
        {
            "input_text": "Limits?",
            "context_text": "Starter has 5 users and 10 GB of storage.",
            "output_text": "Starter has 10 users and 5 GB of storage.",
        }
    )
    assert swapped.flagged and "10 user" in swapped.reason
    person = check.run(
        {
            "input_text": "Who fixed it?",
            "context_text": CONTEXT,
            "output_text": "The certificate was renewed by Dana Whitfield.",
        }
    )
    assert person.flagged and "dana whitfield" in person.reason
    region = check.run(
        {
            "input_text": "Where?",
            "context_text": "Available in us-east-1 and eu-west-1.",
            "output_text": "Available in us-east-1 and us-west-2.",
        }
    )
    assert region.flagged and "us-west-2" in region.reason


def test_reference_mismatch_contradiction_versus_paraphrase():
    check = ReferenceMismatch()
    question = "In what year did World War II end?"
    same = check.run(
        {"input_text": question, "reference_answer": "World War II ended in 1945.", "output_text": "It ended in 1945."}
    )
    assert not same.flagged, same
    wrong = check.run(
        {
            "input_text": question,
            "reference_answer": "World War II ended in 1945.",
            "output_text": "World War II ended in 1944.",
        }
    )
    assert wrong.flagged and "1945" in wrong.reason and "1944" in wrong.reason
    entity = check.run(
        {
            "input_text": "Capital of Australia?",
            "reference_answer": "Canberra",
            "output_text": "The capital of Australia is Sydney.",
        }
    )
    assert entity.flagged and "canberra" in entity.reason


def test_shadow_disagreement_needs_a_partner_and_names_it():
    check = ShadowDisagreement()
    assert check.run({"input_text": "q", "output_text": "Port 443."}) is None
    agree = check.run(
        {
            "input_text": "What port does HTTPS use?",
            "output_text": "HTTPS uses port 443.",
            "partner_output_text": "By default HTTPS runs on port 443.",
            "partner_model": "gpt-5.4",
            "partner_span_id": "abc",
        }
    )
    assert not agree.flagged
    disagree = check.run(
        {
            "input_text": "What port does PostgreSQL use?",
            "output_text": "It listens on 3306.",
            "partner_output_text": "PostgreSQL uses port 5432.",
            "partner_model": "gpt-5.4",
            "partner_span_id": "abc",
        }
    )
    assert disagree.flagged and "gpt-5.4" in disagree.reason and "3306" in disagree.reason


def test_answer_relevance_covers_every_call_with_content():
    check = AnswerRelevance()
    assert check.run({"input_text": "", "output_text": "x"}) is None
    drift = check.run(
        {
            "input_text": "How do I rotate the production database credentials safely?",
            "output_text": "Bananas are rich in potassium, and their peels make excellent compost "
            "for tomato gardens in spring.",
        }
    )
    assert drift.flagged
    on_topic = check.run(
        {
            "input_text": "How do I rotate the production database credentials safely?",
            "output_text": "Create new database credentials, deploy them to production, then revoke "
            "the old credentials once no client uses them.",
        }
    )
    assert not on_topic.flagged
    # every labelled call with content gets at least one verdict from the default checks
    checks = build_checks(DEFAULT_CHECKS)
    for example in labelled():
        assert any(check.run(as_call(example)) is not None for check in checks)


def test_default_checks_meet_precision_and_recall_on_the_labelled_set():
    examples = labelled()
    assert len(examples) >= 100
    assert {e["kind"] for e in examples} == {"context", "reference", "shadow"}
    checks = build_checks(DEFAULT_CHECKS)
    tp = fp = fn = 0
    for example in examples:
        predicted = any(flag.flagged for check in checks if (flag := check.run(as_call(example))))
        tp += predicted and example["hallucinated"]
        fp += predicted and not example["hallucinated"]
        fn += not predicted and example["hallucinated"]
    assert tp / (tp + fp) >= PRECISION_FLOOR
    assert tp / (tp + fn) >= RECALL_FLOOR


def test_default_checks_on_the_simulator_corpus_written_independently_of_them():
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from quality import simulator_corpus  # type: ignore[import-not-found]  # bench/ holds scripts, not a package

    examples = simulator_corpus()
    assert len(examples) >= 40
    checks = build_checks(DEFAULT_CHECKS)
    wrong = [
        call["output_text"] for call, truth in examples if any(f.flagged for c in checks if (f := c.run(call))) != truth
    ]
    assert len(wrong) <= len(examples) * 0.05, wrong


def test_flag_score_is_the_decision_point():
    call = {"input_text": "How long?", "context_text": CONTEXT, "output_text": "It lasted 95 minutes."}
    strict, lenient = UnsupportedFacts(flag_score=0.5).run(call), UnsupportedFacts(flag_score=0.9).run(call)
    assert strict.score == lenient.score and strict.flagged and not lenient.flagged


def test_unknown_check_and_missing_extra_fail_clearly():
    with pytest.raises(ValueError, match="unknown hallucination check"):
        build_checks(["context_grounding", "vibes"])
    try:
        import sentence_transformers  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r"llm-cutover\[embeddings\]"):
            build_checks(["embedding_similarity"])


# Text handling found on public data (issue 9): each made false flags on faithful answers.
def test_dotted_abbreviations_are_one_name_supported_by_the_same_string():
    assert {"d.c.", "f.e.a.r."} <= names("He moved to Washington, D.C. and played F.E.A.R. there.")
    check = UnsupportedFacts()
    flag = check.run(
        {
            "input_text": "Where?",
            "context_text": "The studio in Washington, D.C. released F.E.A.R. in 2005.",
            "output_text": "F.E.A.R. was made by a studio in Washington, D.C. and released in 2005.",
        }
    )
    assert flag is not None and flag.score == 0.0, flag


def test_a_possessive_in_the_context_supports_the_name():
    terms = content_terms("Matt Groening named the character after President Richard Nixon's middle name.")
    assert name_supported("richard nixon", terms)
    flag = UnsupportedFacts().run(
        {
            "input_text": "Named after whom?",
            "context_text": "Matt Groening named the character after President Richard Nixon's middle name.",
            "output_text": "President Richard Nixon.",
        }
    )
    assert flag is not None and flag.score == 0.0, flag


def test_a_number_in_parentheses_is_a_fact_and_list_numbers_are_layout():
    assert "10" in numbers("WCAU (known as NBC 10) is a television station.")
    assert numbers("Steps: 1) take a snapshot, 2) test the restore, 3) migrate.") == frozenset()
    assert numbers("1. Back up.\n2. Restore.\n(3) Migrate.") == frozenset()


def test_a_sentence_opening_word_is_not_a_name_and_an_abbreviated_year_is_supported():
    found = names("Despite Arbroath's loss, the club stayed up. Here's why: Aberdeen won.")
    assert "despite" not in " ".join(found) and "here's" not in found and "arbroath's" in found
    flag = UnsupportedFacts().run(
        {
            "input_text": "Summarize the following passage.",
            "context_text": "He drummed for the band ( 1991 -- 2000 ; 2007 -- 11 ).",
            "output_text": "He drummed for the band in 1991-2000 and 2007-2011.",
        }
    )
    assert flag is not None and flag.score == 0.0, flag


def test_a_fact_swapped_for_the_contexts_flags_alone():
    flag = UnsupportedFacts().run(
        {
            "input_text": "How long is the refund window?",
            "context_text": "Refunds are available within 30 days of purchase. Shipping is free.",
            "output_text": "Refunds are available within 90 days of purchase.",
        }
    )
    assert flag.flagged and "90 (context: 30)" in flag.reason, flag


def test_an_unsupported_fact_given_as_the_answer_to_the_question_flags_alone():
    context = "Fast Cars, Danger, Fire and Knives is an EP by the rapper Lupe Fiasco, released in 2005."
    invented = UnsupportedFacts().run(
        {
            "input_text": "Which city is the rapper of Fast Cars, Danger, Fire and Knives from?",
            "context_text": context,
            "output_text": "The rapper of Fast Cars, Danger, Fire and Knives is from Chicago.",
        }
    )
    assert invented.flagged and "answers the question" in invented.reason and "chicago" in invented.reason
    # the same extra word in a summary (no question to answer) is weak evidence: no flag
    summary = UnsupportedFacts().run(
        {
            "input_text": "Summarize the following passage.",
            "context_text": context,
            "output_text": "Lupe Fiasco, a rapper from Chicago, released the EP in 2005.",
        }
    )
    assert not summary.flagged and "chicago" in summary.reason


# Public human-labelled dev splits (../shared/quality-data; fails, never skips, when missing).
FALSE_POSITIVE_CEILING = 0.10  # the target: a flag is rare on a faithful answer
# Floors a little under the measured recall (bench/quality.py: FaithBench 0.278, HaluEval 0.413).
FAITHBENCH_RECALL_FLOOR = 0.26
HALUEVAL_RECALL_FLOOR = 0.40


def _rates(examples: list[tuple[dict, bool]]) -> tuple[float, float]:
    checks = build_checks(DEFAULT_CHECKS)
    flagged = [any(f.flagged for c in checks if (f := c.run(call))) for call, _ in examples]
    truth = [t for _, t in examples]
    fp = sum(f and not t for f, t in zip(flagged, truth, strict=True))
    tp = sum(f and t for f, t in zip(flagged, truth, strict=True))
    return fp / (len(truth) - sum(truth)), tp / sum(truth)


@pytest.mark.parametrize(
    ("examples", "recall_floor"),
    [(data.faithbench_calls, FAITHBENCH_RECALL_FLOOR), (data.halueval_calls, HALUEVAL_RECALL_FLOOR)],
    ids=["faithbench", "halueval"],
)
def test_default_checks_rarely_flag_faithful_public_answers(examples, recall_floor):
    false_positive_rate, recall = _rates(examples())
    assert false_positive_rate <= FALSE_POSITIVE_CEILING
    assert recall >= recall_floor


def test_a_hedge_the_context_does_not_make_is_speculation():
    context = "The A9 was closed after a crash at 14:00. Several people had minor injuries."
    guess = ContextGrounding().run(
        {
            "input_text": "Summarize the following passage.",
            "context_text": context,
            "output_text": "The A9 was closed after a crash, likely caused by ice. Several people were hurt.",
        }
    )
    assert guess.flagged and "likely" in guess.reason
    # repeating the context's own hedge is reading, not guessing
    hedged = "The cause is likely ice on the road."
    repeat = ContextGrounding().run(
        {"input_text": "Why?", "context_text": context + " " + hedged, "output_text": hedged}
    )
    assert not repeat.flagged, repeat


JOCKEY = (
    "mr mole will be mccoy 's last ride in a grade one race . his book of rides for his final day as a "
    "professional jockey will not be finalised until friday morning . ironically , he announced his "
    "intention to quit riding in february ."
)


def _grounding(context: str, answer: str, question: str = "Summarize the following passage.") -> Flag:
    flag = ContextGrounding().run({"input_text": question, "context_text": context, "output_text": answer})
    assert flag is not None
    return flag


def test_a_dropped_negation_flags_even_when_every_word_is_in_the_context():
    # lower-cased news text: its sentences start in lower case, "finalized" is "finalised"
    dropped = "McCoy's book of rides for his final day as a professional jockey will be finalized on Friday morning."
    assert polarity_flips(dropped, JOCKEY)
    flag = _grounding(JOCKEY, dropped)
    assert flag.flagged and "drops the negation" in flag.reason and "will not be finalised" in flag.reason
    kept = "McCoy's book of rides for his final day will not be finalised until Friday morning."
    assert not polarity_flips(kept, JOCKEY)
    assert not _grounding(JOCKEY, kept).flagged


def test_an_added_negation_flags_but_a_moved_or_implicit_one_does_not():
    context = (
        "Peter Chelsom (born 20 April 1956) is a British film director. Billy Bob Thornton is an American musician."
    )
    assert polarity_flips("Billy Bob Thornton is not an American musician.", context)
    # the context negates too, in other words: "failed in its bid" = "did not win the bid"
    bid = "Eugene failed last november in its bid to host the 2019 event, which was awarded to Doha."
    assert not polarity_flips("Eugene did not succeed in its bid to host the 2019 event, awarded to Doha.", bid)
    # the negation moved within the sentence ("has not reported any spill" -> "no spill was reported")
    spill = (
        "The blast occurred at an oil storage facility, though local media has not reported any toxic chemical spill."
    )
    assert not polarity_flips(
        "The blast occurred at an oil storage facility, and no toxic chemical spill was reported.", spill
    )
    # "not only X but Y" negates nothing
    fights = "Evaluating fights weighs not only the quality of the action but the political undertones of the time."
    assert not polarity_flips(
        "Evaluating fights weighs the quality of the action and the political undertones.", fights
    )


def test_a_cause_the_context_never_states_flags():
    context = (
        "Hardy is a military historian and an expert on the medieval longbow. "
        "He has a large collection of antiques. The auction house valued it at 100,000 pounds. "
        "Separately, the museum announced a new wing for its archery exhibits next spring."
    )
    invented = "The museum announced a new wing because Hardy's collection of antiques was valued at 100,000 pounds."
    assert unsupported_links(invented, context)
    flag = _grounding(context, invented)
    assert flag.flagged and "states a cause the context does not" in flag.reason and "'because'" in flag.reason
    # the context links them itself (in words of cause or sequence): not flagged
    linked = context + " The museum announced the wing after Hardy's collection of antiques was valued."
    assert not unsupported_links(invented, linked)
    # a side the context does not state at all is the other checks' business, not a link
    assert not unsupported_links("The museum closed due to a flood in the basement.", context)


def test_a_sentence_about_what_the_passage_lacks_is_not_weighed():
    context = "COVID-19 has been reported in more than 190 countries and 200 territories."
    answer = (
        "COVID-19 has been reported in more than 190 countries and 200 territories. "
        "However, the passage does not provide specific numbers for total cases or deaths."
    )
    assert not _grounding(context, answer).flagged
