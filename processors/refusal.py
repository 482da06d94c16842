"""Refusal detection: the API's refusal field, a content-filter finish, or refusal prose.

The prose classifier is lexical: a refusal declines in its opening sentences, in the first
person, with a decline verb aimed at the request ("I can't help with", "I won't write",
"I must decline", "that's not something I can do"). Answers that merely contain "can't"
or "sorry" ("I can't stress enough...", "Sorry for the confusion, here's the fix") don't
pair a decline with a request verb, and a decline followed by "but here's ..." is a
partial answer, not a refusal. Measured on `processors/data/refusals.jsonl` by
`tests/test_refusal.py` and `bench/quality.py`.
"""

from __future__ import annotations

import re

# Refusals lead with the decline; looking only at the opening keeps long answers that
# quote a refusal further down (or discuss one) from matching.
LEAD_CHARS = 320

_FIRST_PERSON_DECLINE = (
    r"\b(?:i|we)\s*(?:"
    r"(?:won'?t|will\s+not)\s+be\s+able\s+to|can'?t|cannot|can\s+not|won'?t|will\s+not|"
    r"(?:'m|am|are)\s+(?:not\s+able|unable|not\s+allowed|not\s+permitted|not\s+going|not\s+comfortable)|"
    r"must\s+(?:decline|refuse)|(?:have|need)\s+to\s+decline|decline|refuse"
    r")"
)
# The decline must be aimed at doing the request, not at e.g. "stress", "see" or "promise".
_REQUEST_VERB = (
    r"(?:help\w*|assist\w*|provid\w*|compl\w*|fulfil\w*|do\b|doing|writ\w*|creat\w*|generat\w*|"
    r"shar\w*|answer\w*|continu\w*|produc\w*|giv\w*|mak\w*|support\w*|engag\w*|offer\w*|"
    r"participat\w*|proceed\w*|reveal\w*|disclos\w*)"
)
_DECLINE = re.compile(
    rf"{_FIRST_PERSON_DECLINE}(?:\s+to)?(?:\s+\w+){{0,3}}?\s+{_REQUEST_VERB}"
    rf"|{_FIRST_PERSON_DECLINE}\s*[.!]"
    rf"|{_FIRST_PERSON_DECLINE}\s+(?:to\s+\w+\s+)?(?:this|that|your|the)\s+(?:request|task|question)"
    r"|\b(?:not|isn'?t|is\s+not)\s+something\s+(?:that\s+)?i\s*(?:can|am\s+able\s+to|'m\s+able\s+to)\b"
    r"|\boutside\s+(?:of\s+)?what\s+i\s+can\b"
    r"|\b(?:have|need)\s+to\s+decline\b"
    r"|\bviolat\w*\s+(?:our|the|my|openai'?s)\s+(?:usage\s+|content\s+|safety\s+)?polic"
    r"|\bagainst\s+(?:my|our|the)\s+(?:guidelines|policies|usage\s+polic)"
    r"|\bunable\s+to\s+(?:help|assist|comply|provide\s+assistance)"
    r"|\bcannot\s+provide\s+assistance\b"
)
# A decline that goes on to deliver ("..., but here's a skeleton") is a partial answer.
_DELIVERS = re.compile(r"\bbut\s+here(?:'s|\s+is|\s+are)\b|```")
_IRREGULAR_SPACE = re.compile(r"\s\s|[^\S ]")
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})


def is_refusal_text(text: str) -> bool:
    """Whether a model's answer declines the request (the prose classifier)."""
    if not text:
        return False
    lead = text[:LEAD_CHARS].lower()
    if "\u2019" in lead or "\u2018" in lead or "\u02bc" in lead:
        lead = lead.translate(_APOSTROPHES)
    if _IRREGULAR_SPACE.search(lead):
        lead = " ".join(lead.split())
    decline = _DECLINE.search(lead)
    if decline is None:
        return False
    return _DELIVERS.search(lead, decline.end()) is None


def refusal_source(api_refusal: bool, finish_reason: str, output_text: str) -> str:
    """Why a call counts as refused: 'api', 'content_filter', 'classifier', or '' if it was not."""
    if api_refusal:
        return "api"
    if finish_reason == "content_filter":
        return "content_filter"
    if is_refusal_text(output_text):
        return "classifier"
    return ""
