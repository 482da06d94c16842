"""Shadow agreement on real model text: paraphrases agree, a changed number disagrees."""

from __future__ import annotations

from cutover.agreement import answers_agree, pair_agrees
from processors.data.paraphrases import changed_number_pairs, other_passage_pairs, paraphrase_pairs


def test_same_facts_in_other_words_agree_and_a_substituted_fact_does_not():
    a = "The Eiffel Tower was completed in 1889 for the World's Fair in Paris."
    b = "Built for the Paris World's Fair, the Eiffel Tower was completed in 1889."
    assert answers_agree(a, b).agree
    wrong = answers_agree(a, b.replace("1889", "1887"))
    assert not wrong.agree and wrong.conflicts == (("1889", "1887"),) and "1889 vs 1887" in wrong.reason
    # naming a different person in the same role is a conflict; leaving a fact out is not
    assert not answers_agree("The report was signed by CEO Tim Cook.", "The report was signed by CEO John Smith.").agree
    assert answers_agree(a, "The Eiffel Tower was completed in 1889.").agree


def test_outcome_class_comes_first():
    assert not pair_agrees("answer", "refusal", "x", "y").agree
    assert pair_agrees("refusal", "refusal", "I can't help.", "Sorry, no.").agree
    assert pair_agrees("answer", "answer", None, "uncaptured").agree  # content not captured: outcome only
    assert not pair_agrees("answer", "answer", "Paris is in France.", "Cats sleep most of the day.").agree


def test_real_paraphrases_mostly_agree_and_changed_numbers_disagree():
    paraphrases, changed, unrelated = paraphrase_pairs(), changed_number_pairs(), other_passage_pairs()
    assert len(paraphrases) >= 200 and len(changed) >= 80
    agree = sum(answers_agree(a, b).agree for a, b in paraphrases) / len(paraphrases)
    caught = sum(not answers_agree(a, b).agree for a, b in changed) / len(changed)
    apart = sum(not answers_agree(a, b).agree for a, b in unrelated) / len(unrelated)
    assert agree >= 0.8, agree
    assert caught >= 0.9, caught
    assert apart >= 0.95, apart
