"""The default hallucination checks: lexical and statistical, no model, about a millisecond
per call on real-length contexts (bench/quality.py measures each on public data).

Each check reads one call row (a mapping shaped like `llm_calls`), returns None when the
call lacks what it needs (no context, no reference, no shadow partner), else a `Flag`
with a score in 0..1 where `flag_score` (default 0.5) is the decision point, and a reason
an SRE can verify by reading the call. The shadow check reads the partner's answer from
`partner_output_text`/`partner_model`/`partner_span_id`, which the worker adds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from processors.hallucination.relations import polarity_flips, unsupported_links
from processors.hallucination.text import (
    content_list,
    content_terms,
    identifiers,
    name_supported,
    name_terms,
    names,
    normalise,
    numbers,
    overlap_f1,
    quantities,
    sentence_facts,
    sentences,
)

Call = Mapping[str, Any]

# How much one unsupported fact moves the score: a stray number, identifier or full name is
# strong evidence (one flags); a single capitalised word is weak (it also catches common
# words that start a sentence), so it takes two.
NUMBER_WEIGHT = 0.6
NAME_WEIGHT = 0.3
# unsupported_facts on context, at the default flag score 0.5: one strong fact flags; weak
# ones (a capitalised word, a small count, a partly supported name) flag only four together,
# or one that swaps a context fact or answers the question. Calibrated on FaithBench and
# HaluEval dev (bench/quality.py): counting weak facts like strong ones flagged 25% of the
# faithful FaithBench summaries.
STRONG_FACT_WEIGHT = 0.5
WEAK_FACT_WEIGHT = 0.2
_SMALL_COUNT = re.compile(r"\d|10")
# Hedges that mark an inference; the context's own hedges are fine to repeat.
_SPECULATION = re.compile(
    r"(?=[lpaimcs])\b(?:likely|presumably|probably|possibly|perhaps|apparently|implied|implies|implying"
    r"|suggests?\s+that|suggesting\s+that|(?:may|might|could)\s+have|seems?\s+to|appears?\s+to)\b",
    re.IGNORECASE,
)
SPECULATION_SCORE = 0.6
# "The passage does not mention X" is about the context, not a claim about the world: not weighed.
_ABOUT_THE_CONTEXT = re.compile(
    r"\b(?:the|this)\s+(?:passage|text|article|context|source|document)\s+(?:does|did|do)\s*(?:not|n't)\s+"
    r"(?:\w+ly\s+)?(?:mention|provide|specify|state|say|include|give|contain|indicate|link|explain)",
    re.IGNORECASE,
)
# A flipped negation or a causal link the context never makes flags alone: on the public dev
# splits each rule fires on hallucinated answers about six times as often as on faithful ones.
RELATION_SCORE = 0.6
# A fact that replaces a different one in the context sentence saying the same thing flags
# alone: the answer sentence shares MATCH_SHARE of its (at least MATCH_MIN_TERMS) words with it.
SWAP_WEIGHT = 2
MATCH_SHARE = 0.6
MATCH_MIN_TERMS = 3
# An answer sentence restates the question when this share of its other words is the question's.
QUESTION_SHARE = 0.5
_QUOTE_CHARS = 90


@dataclass(frozen=True, slots=True)
class Flag:
    check_name: str
    score: float
    flagged: bool
    reason: str


class Check(Protocol):
    name: str

    def run(self, call: Call) -> Flag | None: ...


def _quote(text: str) -> str:
    text = " ".join(text.split())
    return f"'{text[:_QUOTE_CHARS]}…'" if len(text) > _QUOTE_CHARS else f"'{text}'"


def _facts_score(strong: int, weak: int) -> float:
    return 1 - (1 - NUMBER_WEIGHT) ** strong * (1 - NAME_WEIGHT) ** weak


def _abbreviated_year(number: str, source_numbers: frozenset[str]) -> bool:
    """'2011' written '2007 -- 11' in the source: a year of the same century there, and its last two digits."""
    if len(number) != 4 or not number.isdigit():
        return False
    tail = number[2:]
    return bool({tail, tail.lstrip("0") or "0"} & source_numbers) and any(
        len(n) == 4 and n[:2] == number[:2] for n in source_numbers
    )


def unsupported_facts(answer: str, source: str) -> tuple[list[str], list[str], list[str]]:
    """Numbers (also swapped ones: '10 users' when the source says '5 users'), identifiers and
    names stated in `answer` that `source` does not state."""
    source_numbers, source_quantities = numbers(source), quantities(source)
    counted = {unit for _, unit in source_quantities}
    missing_numbers = {
        n for n in numbers(answer, spelled=False) - source_numbers if not _abbreviated_year(n, source_numbers)
    }
    counted_values = {value for value, _ in source_quantities}
    for value, unit in quantities(answer):
        # swapped: the source counts this value in another unit ("5 users and 10 GB" -> "10 users")
        if unit in counted and value in counted_values and (value, unit) not in source_quantities:
            missing_numbers.add(f"{value} {unit}")
    lowered = normalise(source).lower()
    missing_ids = [i for i in identifiers(answer) if i not in lowered]
    terms = content_terms(source)
    missing_names = [n for n in names(answer) if not name_supported(n, terms) and n not in missing_ids]
    return sorted(missing_numbers), sorted(missing_ids), sorted(missing_names)


def contradictions(answer: str, source: str, missing: set[str]) -> list[str]:
    """Unsupported facts of `answer` that replace a different fact in the source sentence
    saying the same thing ("within 90 days" where the context says "within 30 days"): the
    strongest lexical evidence of a hallucination, as 'answer fact (context: source facts)'."""
    found: list[str] = []
    source_terms = content_terms(source)
    for terms, stated_numbers, stated_names in sentence_facts(answer):
        # Only facts strong on their own: a small count or a single word swaps too easily.
        swapped_numbers = {n for n in stated_numbers & missing if not _SMALL_COUNT.fullmatch(n)}
        swapped_names = {n for n in stated_names & missing if " " in n and not name_terms(n) & source_terms}
        if not (swapped_numbers or swapped_names) or len(terms) < MATCH_MIN_TERMS:
            continue
        best, best_share = None, 0.0
        for source_sentence in sentence_facts(source):  # cached: split once per call
            share = len(terms & source_sentence[0]) / len(terms)
            if share > best_share:
                best, best_share = source_sentence, share
        if best is None or best_share < MATCH_SHARE:
            continue
        # What the matching context sentence states in their place, and the answer does not.
        other_numbers = sorted(n for n in best[1] - stated_numbers if not _SMALL_COUNT.fullmatch(n))
        other_names = sorted(n for n in best[2] if " " in n and not name_supported(n, terms))
        found += [f"{n} (context: {', '.join(other_numbers[:3])})" for n in sorted(swapped_numbers) if other_numbers]
        found += [f"{n} (context: {', '.join(other_names[:3])})" for n in sorted(swapped_names) if other_names]
    return found


def unsupported_answers(answer: str, question: str, missing: set[str]) -> list[str]:
    """Unsupported facts an answer gives as the answer to the question: its sentence restates
    the question around them ("X includes guest appearances from Russell Simmons" to "X
    includes guest appearances from which executive?"), so the fact is the answer, and the
    context does not have it. A summary's prompt shares no words with its sentences."""
    asked = content_terms(question)
    if len(asked) < MATCH_MIN_TERMS:
        return []
    found: list[str] = []
    for terms, stated_numbers, stated_names in sentence_facts(answer):
        facts = {n for n in stated_numbers & missing if not _SMALL_COUNT.fullmatch(n)} | (stated_names & missing)
        if not facts:
            continue
        rest = terms.difference(*(name_terms(f) for f in facts))
        shared = len(rest & asked)
        if shared >= MATCH_MIN_TERMS - 1 and shared >= QUESTION_SHARE * len(rest):
            found += sorted(facts)
    return found


def _list(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(sorted(items)[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


class _Base:
    name = ""

    def __init__(self, flag_score: float = 0.5) -> None:
        self.flag_score = flag_score

    def _flag(self, score: float, reason: str) -> Flag:
        score = min(1.0, max(0.0, score))
        return Flag(self.name, round(score, 4), score >= self.flag_score, reason)


class ContextGrounding(_Base):
    """Share of the answer's sentences whose content words mostly do not occur in the context or
    question; and sentences that misstate how the context's facts relate (a speculative hedge,
    a flipped negation, a causal link the context does not make) flag on their own."""

    name = "context_grounding"
    min_support = 0.5

    def run(self, call: Call) -> Flag | None:
        answer, context = call.get("output_text") or "", call.get("context_text") or ""
        if not answer.strip() or not context.strip():
            return None
        source = content_terms(context) | content_terms(call.get("input_text") or "")
        weighed, unsupported, worst, worst_support = 0, 0, "", 1.0
        for sentence in sentences(answer):
            terms = content_list(sentence)
            # "Here is a concise summary of the passage:" introduces the answer and states nothing;
            # "The passage does not say…" states something about the context, not the world.
            if len(terms) < 2 or sentence.endswith(":") or _ABOUT_THE_CONTEXT.search(sentence):
                continue
            support = sum(term in source for term in terms) / len(terms)
            weighed += len(terms)
            if support < self.min_support:
                unsupported += len(terms)
            if support < worst_support:
                worst, worst_support = sentence, support
        lowered = context.lower()
        guesses = sorted({m.group().lower() for m in _SPECULATION.finditer(answer)} - {""})
        guesses = [g for g in guesses if g not in lowered]
        # A hedge the context does not make ("…, likely because…", "(implied)") marks a claim
        # the answer inferred rather than read: FaithBench dev, 6 of 6 such summaries hallucinated.
        # A flipped negation or an unlinked cause misstates how facts the context has relate.
        relations = [
            *(f"speculates beyond the context ({', '.join(repr(g) for g in guesses[:3])})" for _ in guesses[:1]),
            *(f"flips a negation: {flip}" for flip in polarity_flips(answer, context)[:1]),
            *(f"states a cause the context does not: {link}" for link in unsupported_links(answer, context)[:1]),
        ]
        if relations:
            return self._flag(
                max(SPECULATION_SCORE, RELATION_SCORE, unsupported / weighed if weighed else 0.0), "; ".join(relations)
            )
        if weighed == 0:
            return self._flag(0.0, "answer too short to judge grounding")
        score = unsupported / weighed
        if unsupported == 0:
            return self._flag(score, "every sentence is supported by the context")
        return self._flag(
            score,
            f"{score:.0%} of the answer is not supported by the context; least supported "
            f"({worst_support:.0%} of its words in context): {_quote(worst)}",
        )


class UnsupportedFacts(_Base):
    """Numbers and names in the answer that appear neither in the context nor in the question."""

    name = "unsupported_facts"

    def run(self, call: Call) -> Flag | None:
        answer, context = call.get("output_text") or "", call.get("context_text") or ""
        if not answer.strip() or not context.strip():
            return None
        source_text = f"{context}\n{call.get('input_text') or ''}"
        missing_numbers, missing_ids, missing_names = unsupported_facts(answer, source_text)
        source_terms = content_terms(source_text)
        # Strong: a number beyond a small count, an identifier, a full name none of whose words
        # the source has. Weak: a small count (summaries count for themselves: "scored two
        # goals"), a single capitalised word, a name the source has in part ("Aberdeen FC").
        strong = sum(not _SMALL_COUNT.fullmatch(n) for n in missing_numbers) + len(missing_ids)
        strong += sum(" " in n and not name_terms(n) & source_terms for n in missing_names)
        weak = len(missing_numbers) + len(missing_ids) + len(missing_names) - strong
        if not missing_numbers and not missing_ids and not missing_names:
            return self._flag(0.0, "every number, identifier and name in the answer occurs in the context")
        swapped = contradictions(answer, source_text, {*missing_numbers, *missing_names})
        answered = unsupported_answers(answer, call.get("input_text") or "", {*missing_numbers, *missing_names})
        decisive = len(swapped) + len(set(answered) - {s.split(" (")[0] for s in swapped})
        score = 1 - (1 - STRONG_FACT_WEIGHT) ** (strong + SWAP_WEIGHT * decisive) * (1 - WEAK_FACT_WEIGHT) ** weak
        parts = [f"contradicts the context: {_list(swapped)}"] if swapped else []
        if answered:
            parts.append(f"answers the question with what the context does not state: {_list(answered)}")
        if missing_numbers:
            parts.append(f"numbers not in context: {_list(missing_numbers)}")
        if missing_ids:
            parts.append(f"identifiers not in context: {_list(missing_ids)}")
        if missing_names:
            parts.append(f"names not in context: {_list(missing_names)}")
        return self._flag(score, "; ".join(parts))


class ReferenceMismatch(_Base):
    """Key facts of the reference answer missing from the answer, numbers contradicting it, low overlap."""

    name = "reference_mismatch"

    def run(self, call: Call) -> Flag | None:
        answer, reference = call.get("output_text") or "", call.get("reference_answer") or ""
        if not answer.strip() or not reference.strip():
            return None
        question = call.get("input_text") or ""
        # The answer may lean on the question ("It ended in 1945" for "When did WWII end?").
        said = content_terms(answer) | content_terms(question)
        said_numbers = numbers(answer) | numbers(question)
        missing_numbers = sorted(numbers(reference) - said_numbers)
        missing_names = sorted(n for n in names(reference, positional=False) if not name_supported(n, said))
        extra_numbers = sorted(numbers(answer) - numbers(reference) - numbers(question))
        key_terms = content_terms(reference) - content_terms(question)
        recall = len(key_terms & content_terms(answer)) / len(key_terms) if key_terms else 1.0
        # A different number where the reference has one is a contradiction (strong); a number
        # only left out or only added is an omission or an elaboration (weak).
        contradictions = min(len(missing_numbers), len(extra_numbers))
        weak = len(missing_numbers) + len(extra_numbers) - 2 * contradictions + len(missing_names)
        fact_score = _facts_score(contradictions, weak)
        # Overlap alone is weak evidence (paraphrases), so it can flag only when nothing matches.
        score = max(fact_score, 0.6 * (1 - recall))
        parts = []
        if missing_numbers:
            parts.append(f"reference numbers missing: {_list(missing_numbers)}")
        if extra_numbers:
            parts.append(f"numbers not in the reference: {_list(extra_numbers)}")
        if missing_names:
            parts.append(f"reference names missing: {_list(missing_names)}")
        parts.append(f"{recall:.0%} of the reference's key words present")
        return self._flag(score, "; ".join(parts))


class ShadowDisagreement(_Base):
    """The two answers of a shadow pair state different numbers or names (F1 of words as context)."""

    name = "shadow_disagreement"

    def run(self, call: Call) -> Flag | None:
        answer, other = call.get("output_text") or "", call.get("partner_output_text") or ""
        if not answer.strip() or not other.strip():
            return None
        question = call.get("input_text") or ""
        given = numbers(question)
        mine, theirs = numbers(answer) - given, numbers(other) - given
        # A disagreement is a substitution: each side states something the other does not.
        number_conflicts = min(len(mine - theirs), len(theirs - mine))
        terms_mine = content_terms(answer) | content_terms(question)
        terms_theirs = content_terms(other) | content_terms(question)
        only_mine = [n for n in names(answer) if not name_supported(n, terms_theirs)]
        only_theirs = [n for n in names(other) if not name_supported(n, terms_mine)]
        name_conflicts = min(len(only_mine), len(only_theirs))
        score = 1 - (1 - NUMBER_WEIGHT) ** number_conflicts * 0.5**name_conflicts
        partner = f"{call.get('partner_model') or 'partner'} (span {call.get('partner_span_id') or '?'})"
        f1 = overlap_f1(answer, other)
        if number_conflicts == 0 and name_conflicts == 0:
            return self._flag(score, f"agrees with {partner} on numbers and names; word F1 {f1:.2f}")
        parts = []
        if number_conflicts:
            parts.append(f"numbers {_list(sorted(mine - theirs))} vs {_list(sorted(theirs - mine))}")
        if name_conflicts:
            parts.append(f"names {_list(only_mine)} vs {_list(only_theirs)}")
        return self._flag(score, f"disagrees with {partner}: " + "; ".join(parts) + f"; word F1 {f1:.2f}")


class AnswerRelevance(_Base):
    """Runs on every call with content: an answer sharing almost no words with its prompt has drifted."""

    name = "answer_relevance"
    min_terms = 6
    # Short prompts ("Summarize the incident.") lean on context the span may not carry.
    min_prompt_terms = 4
    related_share = 0.2

    def run(self, call: Call) -> Flag | None:
        answer, question = call.get("output_text") or "", call.get("input_text") or ""
        if not answer.strip() or not question.strip():
            return None
        terms = content_terms(answer)
        prompt = content_terms(question) | content_terms(call.get("context_text") or "")
        if len(terms) < self.min_terms or len(prompt) < self.min_prompt_terms:
            return self._flag(
                0.0, f"answer or prompt too short ({len(terms)}/{len(prompt)} content words): relevance not judged"
            )
        share = len(terms & prompt) / len(terms)
        score = 1 - share / self.related_share
        return self._flag(score, f"{share:.0%} of the answer's content words relate to the prompt")
