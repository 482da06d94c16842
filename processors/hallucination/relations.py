"""Relations between facts the context does state: a negation the answer flips, and a cause the
answer asserts between two facts the context never links. Word and fact matching cannot see
these (every word of "will be finalised on Friday" is in "will not be finalised until Friday").

Lexical on purpose, like the rest of the default checks: sentence by sentence against the
context's sentences (`text.units`), no parser or model. Each rule was kept only if it flagged
hallucinated answers of the public dev splits (FaithBench, HaluEval QA) several times as
often as faithful ones (bench/quality.py); attribution ("X said …" with a speaker the
context does not tie to the claim) was measured and left out: 1 hit at no false positive
on FaithBench, 0 on HaluEval, too little to pay for its cost.
"""

from __future__ import annotations

import itertools
import re

from processors.hallucination.text import STOPWORDS, relation_key, units

Unit = tuple[str, tuple[str, ...], frozenset[str]]

NEGATORS = frozenset(["not", "no", "never", "none", "nobody", "nothing", "neither", "nor", "without", "cannot", "n't"])
# Negative in meaning without a negator ("failed to progress" = "have not progressed"): the
# context may state a negation this way, so they keep a context sentence from counting as positive.
IMPLICIT_NEGATIVES = frozenset(
    ["fail", "failed", "fails", "unable", "refused", "refuses", "denied", "denies", "lack", "lacks", "lacked"]
)
# Any negator, to skip the sentence-by-sentence reading when neither text has one.
_ANY_NEGATOR = re.compile(r"(?=[nwcNWC])\b(?:not|no|never|none|nobody|nothing|neither|nor|without|cannot)\b|n't", re.I)
# Words a negation skips on its way to what it negates ("has not yet been finalised").
_NEGATION_SKIPS = STOPWORDS | frozenset(["yet", "been", "be", "any", "even", "ever", "always", "necessarily"])
# A negator binds the first content word within this many tokens after it.
NEGATION_REACH = 3
# An answer sentence restates a context sentence when this share of its (at least
# RESTATE_MIN_TERMS) content words are that sentence's.
RESTATE_SHARE = 0.6
RESTATE_MIN_TERMS = 4
# Causal connectives that assert a cause ("lead to" alone is too often "extended the lead to 4-2").
_CAUSAL = re.compile(
    r"(?=[abdilrcto])\b(?:because(?:\s+of)?|due\s+to|led\s+to|leading\s+to|result(?:ed|ing|s)?\s+in|caused\s+by"
    r"|thanks\s+to|owing\s+to|resulted\s+from|triggered\s+by|as\s+a\s+result\s+of|in\s+response\s+to)\b",
    re.IGNORECASE,
)
# Words with which a context relates two facts in time or cause; a window that links both
# sides with one of these supports the answer's causal claim (the cause may be told as sequence).
_LINKING = frozenset(
    [
        "because",
        "due",
        "led",
        "lead",
        "leading",
        "result",
        "resulted",
        "resulting",
        "cause",
        "caused",
        "causing",
        "thanks",
        "owing",
        "prompted",
        "prompt",
        "prompting",
        "so",
        "after",
        "since",
        "as",
        "following",
        "amid",
        "over",
        "reason",
        "why",
        "therefore",
        "thus",
        "hence",
        "consequence",
        "consequently",
        "blamed",
        "blame",
        "sparked",
        "triggered",
        "forced",
        "when",
    ]
)
# Each side of a causal claim must be mostly stated by the context (else it is the other
# checks' business: an unsupported fact) for the link between them to be what is judged.
SIDE_SUPPORT = 0.5
SIDE_MIN_TERMS = 2
QUOTE_CHARS = 90


def _polarity(tokens: tuple[str, ...]) -> dict[str, set[bool]]:
    """Content key -> the polarities (negated or not) with which the tokens state it."""
    polarity: dict[str, set[bool]] = {}
    negator_at = -NEGATION_REACH - 1
    for i, token in enumerate(tokens):
        if token in NEGATORS:
            negator_at = i
            continue
        if token in _NEGATION_SKIPS:
            continue
        negated = i - negator_at <= NEGATION_REACH
        polarity.setdefault(relation_key(token), set()).add(negated)
        if negated:
            negator_at = -NEGATION_REACH - 1  # a negation binds one word
    return polarity


def _quote(sentence: str) -> str:
    sentence = " ".join(sentence.split())
    return f"'{sentence[:QUOTE_CHARS]}…'" if len(sentence) > QUOTE_CHARS else f"'{sentence}'"


def _keys(tokens: tuple[str, ...] | list[str]) -> frozenset[str]:
    return frozenset(relation_key(t) for t in tokens if t not in STOPWORDS and t not in NEGATORS)


def _best(terms: frozenset[str], context: tuple[Unit, ...]) -> tuple[Unit | None, float]:
    best, best_shared = None, 0
    for unit in context:
        shared = len(terms & unit[2])
        if shared > best_shared:
            best, best_shared = unit, shared
    return best, best_shared / len(terms) if terms else 0.0


def polarity_flips(answer: str, context: str) -> list[str]:
    """Words an answer sentence states with the opposite polarity of the context sentence it
    restates: "will be finalised on Friday" for "will not be finalised until Friday" (dropped),
    "X is not an American musician" for "X is an American musician" (added). A negation is
    'added' only when the context never negates the word and its sentence negates nothing,
    'dropped' only when the context never states the word without a negation."""
    if not (_ANY_NEGATOR.search(answer) or _ANY_NEGATOR.search(context)):
        return []  # nothing to flip: spares splitting the context (most calls)
    source = units(context)
    found: list[str] = []
    for sentence, tokens, _ in units(answer):
        terms = _keys(tokens)
        if len(terms) < RESTATE_MIN_TERMS:
            continue
        best, share = _best(terms, source)
        if best is None or share < RESTATE_SHARE:
            continue
        context_polarity = _polarity(best[1])
        context_negates = bool(set(best[1]) & (NEGATORS | IMPLICIT_NEGATIVES))
        answer_negates = bool(set(tokens) & NEGATORS)
        for key, stated in _polarity(tokens).items():
            said = context_polarity.get(key)
            if not said:
                continue
            if stated == {True} and not context_negates:
                flip = "negates"
            elif stated == {False} and said == {True} and not answer_negates:
                flip = "drops the negation of"
            else:
                continue
            # The context may state it the answer's way elsewhere (read only for candidates: rare).
            elsewhere = (_polarity(unit[1]).get(key, set()) for unit in source if unit is not best)
            if not any((True in p) if stated == {True} else (False in p) for p in elsewhere):
                found.append(f"{_quote(sentence)} {flip} {_quote(best[0])}")
                break
    return found


def _supports(terms: frozenset[str], window: frozenset[str]) -> bool:
    return len(terms & window) / len(terms) >= SIDE_SUPPORT


def unsupported_links(answer: str, context: str) -> list[str]:
    """Causal claims ("X due to Y", "X led to Y") joining two facts the context states but never
    relates: no context sentence, or pair of adjacent sentences, holds both sides with a word
    that links them (a cause, or a sequence: "after", "following", "amid")."""
    if not _CAUSAL.search(answer):
        return []
    source = units(context)
    windows = [(a[1] + b[1], a[2] | b[2]) for a, b in itertools.pairwise(source)] + [(u[1], u[2]) for u in source]
    found: list[str] = []
    for sentence, tokens, _ in units(answer):
        text = " ".join(tokens)
        for match in _CAUSAL.finditer(text):
            left, right = _keys(text[: match.start()].split()), _keys(text[match.end() :].split())
            if len(left) < SIDE_MIN_TERMS or len(right) < SIDE_MIN_TERMS:
                continue
            if not any(_supports(left, w) for _, w in windows) or not any(_supports(right, w) for _, w in windows):
                continue
            if not any(
                _supports(left, w) and _supports(right, w) and _LINKING.intersection(words) for words, w in windows
            ):
                found.append(f"{_quote(sentence)} ('{match.group()}')")
    return found
