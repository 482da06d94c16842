"""Do two answers to the same request agree? The shadow comparison's definition, in one place.

Two calls of a shadow pair agree when they have the same outcome class (answer, refusal,
error) and, when both are captured answers, they state no conflicting facts and share
enough content. Real models never repeat each other's wording, so text equality is no test.

- A *conflict* is a substitution in the same place: a number, identifier or name that only
  one answer states, next to a content word (within `WINDOW` words) that also sits next to a
  fact only the other answer states ("revenue rose 12%" vs "revenue rose 15%"). A fact one
  answer merely omits is no conflict: paraphrases and summaries leave different things out.
- *Shared content* is the Dice overlap of the two answers' stemmed content words; the
  threshold `MIN_SIMILARITY` was measured on consistent summaries of one passage by different
  models (FaithBench dev, `bench/quality.py`): it admits ~95% of them, while answers to
  different passages fall below it.

Written by hand because no library aligns facts between two paraphrases; it reuses the
hallucination checks' tokenizer primitives (`normalise`, `stem`, `STOPWORDS`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from processors.hallucination.text import STOPWORDS, normalise, stem

Outcome = Literal["answer", "refusal", "error"]

WINDOW = 2
MIN_SIMILARITY = 0.25
DEFINITION = (
    "A pair agrees when both calls have the same outcome (answer, refusal or error) and, when both answers "
    f"were captured, they state no conflicting number, name or identifier in the same place and share at "
    f"least {MIN_SIMILARITY:.0%} of their content words (Dice overlap; threshold measured on paraphrases)."
)

_TOKEN = re.compile(r"[A-Za-z0-9]+(?:[.,:'\-/][A-Za-z0-9]+)*%?")
_HAS_DIGIT = re.compile(r"\d")
_LEADING_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")
_DATE_OR_RANGE = re.compile(r"\d+(?:[-/:.]\d+)+")
_POSSESSIVE = re.compile(r"'s?$")
_CALENDAR = frozenset(
    [
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ]
)
_NUMBER_WORDS = {
    w: str(i)
    for i, w in enumerate(
        ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve")
    )
}


@dataclass(frozen=True, slots=True)
class _Token:
    kind: Literal["number", "name", "word", "stop"]
    value: str


@dataclass(frozen=True, slots=True)
class Agreement:
    agree: bool
    similarity: float  # Dice overlap of content words, 0..1 (1.0 when not compared)
    conflicts: tuple[tuple[str, str], ...]  # (this answer's fact, the other's) substitutions
    reason: str


def _number_value(raw: str) -> str:
    lead = _LEADING_NUMBER.match(raw)
    if lead and not _DATE_OR_RANGE.fullmatch(raw):
        raw = lead.group()  # "27-year-old" -> 27, "18th" -> 18, "5km" -> 5
    value = raw.lower()
    if re.fullmatch(r"[\d,]+(?:\.\d+)?", value):
        value = value.replace(",", "")
        if "." in value:
            value = value.rstrip("0").rstrip(".")
    return value


@lru_cache(maxsize=4096)
def _tokens(text: str) -> tuple[_Token, ...]:
    out: list[_Token] = []
    sentence_start, previous_acronym = True, False
    for match in _TOKEN.finditer(normalise(text)):
        raw = _POSSESSIVE.sub("", match.group().rstrip(".,:'-/"))
        lower = raw.lower()
        if lower in _NUMBER_WORDS:
            out.append(_Token("number", _NUMBER_WORDS[lower]))
        elif _HAS_DIGIT.search(raw):
            out.append(_Token("number", _number_value(raw)))
        elif raw[:1].isupper() and not sentence_start and lower not in STOPWORDS and lower not in _CALENDAR:
            if out and out[-1].kind == "name" and not raw.isupper() and not previous_acronym:  # "Paul Sheerin"
                out[-1] = _Token("name", f"{out[-1].value} {stem(lower)}")
            else:
                out.append(_Token("name", stem(lower)))
        elif lower in STOPWORDS:
            out.append(_Token("stop", lower))
        else:
            out.append(_Token("word", stem(lower)))
        previous_acronym = raw.isupper()  # "CEO Tim Cook": a title, then a name
        following = text[match.end() : match.end() + 2]
        sentence_start = following[:1] in (".", "!", "?") or following.startswith(("\n", ":\n"))
    return tuple(out)


def _facts(tokens: tuple[_Token, ...]) -> frozenset[str]:
    return frozenset(t.value for t in tokens if t.kind in ("number", "name"))


def _words(tokens: tuple[_Token, ...]) -> frozenset[str]:
    return frozenset(t.value for t in tokens if t.kind == "word")


def _only(tokens: tuple[_Token, ...], other: tuple[_Token, ...]) -> frozenset[str]:
    """Facts of `tokens` the other text does not state; a name counts as stated when any of its words is."""
    other_numbers = {t.value for t in other if t.kind == "number"}
    other_words = {w for t in other if t.kind != "number" for w in t.value.split()}
    return frozenset(
        t.value
        for t in tokens
        if (t.kind == "number" and t.value not in other_numbers)
        or (t.kind == "name" and not set(t.value.split()) & other_words)
    )


def _anchors(tokens: tuple[_Token, ...], only: frozenset[str]) -> dict[str, set[tuple[int, str]]]:
    """For each fact in `only`: (offset, content word) at up to WINDOW content tokens before (<0) or after it."""
    content = [t for t in tokens if t.kind != "stop"]
    anchors: dict[str, set[tuple[int, str]]] = {}
    for i, token in enumerate(content):
        if token.kind in ("number", "name") and token.value in only:
            near = anchors.setdefault(f"{token.kind}:{token.value}", set())
            for offset in (*range(-WINDOW, 0), *range(1, WINDOW + 1)):
                if 0 <= i + offset < len(content) and content[i + offset].kind == "word":
                    near.add((offset, content[i + offset].value))
    return anchors


def similarity(a: str, b: str) -> float:
    """Dice overlap of the stemmed content words (facts included) of two texts, 0..1."""
    ta, tb = _tokens(a), _tokens(b)
    wa, wb = _words(ta) | _facts(ta), _words(tb) | _facts(tb)
    if not wa or not wb:
        return 1.0 if wa == wb else 0.0
    return 2 * len(wa & wb) / (len(wa) + len(wb))


def conflicts(a: str, b: str) -> tuple[tuple[str, str], ...]:
    """Facts substituted between two answers: each only in one, next to the same word at the same offset."""
    ta, tb = _tokens(a), _tokens(b)
    near_a, near_b = _anchors(ta, _only(ta, tb)), _anchors(tb, _only(tb, ta))
    found = []
    for fact_a, words_a in near_a.items():
        for fact_b, words_b in near_b.items():
            # numbers stand in for numbers, names for names
            if fact_a.split(":")[0] == fact_b.split(":")[0] and words_a & words_b:
                found.append((fact_a.partition(":")[2], fact_b.partition(":")[2]))
    return tuple(sorted(found))


def answers_agree(a: str, b: str, min_similarity: float = MIN_SIMILARITY) -> Agreement:
    """Whether two captured answers to one request agree (see the module doc)."""
    found = conflicts(a, b)
    score = similarity(a, b)
    if found:
        listed = ", ".join(f"{x} vs {y}" for x, y in found[:3])
        return Agreement(False, score, found, f"conflicting facts: {listed}")
    if score < min_similarity:
        return Agreement(False, score, found, f"little shared content (overlap {score:.2f} < {min_similarity:.2f})")
    return Agreement(True, score, found, f"same facts, overlap {score:.2f}")


@lru_cache(maxsize=65_536)  # a page re-render re-judges the same pairs
def pair_agrees(outcome_a: Outcome, outcome_b: Outcome, text_a: str | None, text_b: str | None) -> Agreement:
    """A shadow pair's agreement: same outcome class, and for two captured answers `answers_agree`."""
    if outcome_a != outcome_b:
        return Agreement(False, 0.0, (), f"outcomes differ: {outcome_a} vs {outcome_b}")
    if outcome_a != "answer" or not text_a or not text_b:
        return Agreement(True, 1.0, (), f"same outcome: {outcome_a}")
    return answers_agree(text_a, text_b)
