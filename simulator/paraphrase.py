"""How a candidate model words an answer: the same facts as the corpus answer in other words.

Real models never repeat each other's text, so a simulator that answers two models with one
string would make shadow agreement (cutover/agreement.py) look perfect. Phrase swaps and a
lead-in change the wording; numbers, names, identifiers and code blocks are never touched, so
a planted wrong fact survives the rewording and a right one stays right. The verb that states
a fact ("was approved by") is kept: agreement finds a substituted fact by its unchanged
neighbours, and a model that rewords both the fact and its neighbours is a case it can miss.
"""

from __future__ import annotations

import re

# Phrase -> its rewording; whole words, first letter's case kept.
_SWAPS = {
    "according to the incident report,": "the incident report says",
    "according to": "as per",
    "was released": "came out",
    "by default": "unless configured otherwise",
    "is about": "is roughly",
    "at most": "no more than",
    "must be claimed": "have to be claimed",
    "tall": "high",
    "long": "in length",
    "uses": "relies on",
    "during": "in the course of",
    "within": "inside",
    "retried": "tried again",
    "is currently": "is right now",
    "could you": "would you",
    "succeeded": "went through",
    "healthy": "in good shape",
}
_LEADS = ("", "In short: ", "To answer directly, ", "Based on what is known, ")
_SWAP = re.compile(r"\b(" + "|".join(re.escape(p) for p in sorted(_SWAPS, key=len, reverse=True)) + r")(?=\W|$)", re.I)
_ARTICLES = frozenset({"The", "A", "An", "Per"})
_CODE = re.compile(r"(```.*?```)", re.S)


def _swap(match: re.Match[str]) -> str:
    found = match.group()
    new = _SWAPS[found.lower()]
    return new[:1].upper() + new[1:] if found[:1].isupper() else new


def _prose(text: str, lead: str) -> str:
    reworded = _SWAP.sub(_swap, text)
    if not lead or not reworded:
        return reworded
    if reworded.split(" ", 1)[0] in _ARTICLES:  # "The Danube" -> "In short: the Danube"; names keep capitals
        reworded = reworded[0].lower() + reworded[1:]
    return lead + reworded


def paraphrase(text: str, pick: int) -> str:
    """`text` in other words (which ones depends on `pick`); code blocks stay verbatim."""
    lead = _LEADS[pick % len(_LEADS)]
    parts = _CODE.split(text)
    out = []
    for i, part in enumerate(parts):
        if i % 2:  # a code block
            out.append(part)
        else:
            out.append(_prose(part, lead if i == 0 else ""))
    reworded = "".join(out)
    return reworded if reworded != text else "In short: " + text
