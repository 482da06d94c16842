"""Lexical features shared by the default checks: content terms, sentences, numbers, names.

Hand-written on purpose: the checks need a few regexes and a stop list, and the default
install stays free of NLP models (no spaCy or NLTK data to download).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

# The checks of one call read the same texts several times; a few hundred entries cover
# that reuse without pinning many large RAG contexts in memory.
_CACHED_TEXTS = 256
# Words (any script), dotted abbreviations ("d.c", "f.e.a.r") and contractions as one token.
_TOKEN = re.compile(r"[^\W_]+(?:[.'][^\W_]+)*")
_SENTENCE_END = re.compile(r"(?<=[.!?:])\s+(?=[A-Z0-9\"'(`])|\n+")
# An enumerator ("1)", "2." at the start of a line, "(3)", or "1) … , 2) …" in a run-on list)
# is layout, not a fact; "(known as NBC 10)" is a fact, so an inline "10) " needs list punctuation before it.
_ENUMERATOR = re.compile(r"(?m)^\s*\d{1,2}[.)]\s|\(\d{1,2}\)|(?<=[:;,]\s)\d{1,2}\)\s")
# Dates, times and dotted versions are one fact each ("1970-01-02" must not pass as 1970, 01, 02).
# Each pattern opens with a lookahead on its first character, so the scan skips other
# characters in C instead of trying every alternative at every position (6x on contexts).
_NUMBER = re.compile(
    r"(?=[-+\d])(?<![\w.])(?:\d{4}-\d{2}-\d{2}(?![\w.])|\d{1,2}:\d{2}(?::\d{2})?(?![\w.])|\d+(?:\.\d+){2,}(?![\w.])"
    r"|[-+]?\d[\d,]*(?:\.\d+)?(?!\w)|\d+(?:\.\d+)?(?=[a-zA-Z%°]))"
)
# A capitalised word, or a dotted abbreviation ("D.C.", "F.E.A.R."), and the capitalised words after it.
_NAME_WORD = r"(?:(?:[A-Z]\.){2,}(?![\w])|[A-Z][\w&'\-]*)"
_NAME = re.compile(rf"(?=[A-Z])\b{_NAME_WORD}(?:\s+(?:of\s+|de\s+|da\s+|van\s+)?{_NAME_WORD})*")
# What may sit between a sentence's end and its first word (quotes, markdown, list marks).
_LEAD_IN = " \t\n\"'“‘(*#->•"
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'"})
_COMBINING = re.compile(r"[\u0300-\u036f]")
_SUFFIXES = (("ies", "y"), ("ied", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", ""))
_THOUSANDS = re.compile(r",(?<=\d,)(?=\d{3}\b)")
_NUMBER_WORDS = {
    word: str(value)
    for value, word in enumerate(
        ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"]
    )
}
_DIGIT = re.compile(r"\d")
_ID_CHAR = re.compile(r"[\d_]")
_NUMBER_WORD = re.compile(r"(?=[otfsenzOTFSENZ])\b(" + "|".join(_NUMBER_WORDS) + r")\b", re.IGNORECASE)
# Identifiers (us-west-2, CACHE_BACKEND, E42, v3.2) are facts as much as numbers are.
_IDENTIFIER = re.compile(r"\b(?=[\w-]*[_\d])[A-Za-z][A-Za-z0-9]*(?:[-_][A-Za-z0-9]+)+\b|\b[A-Z]+\d+\b")
_QUANTITY = re.compile(r"(?=\d)(?<![\w.])(\d+(?:\.\d+)?)\s*-?\s*([a-z]+)")

STOPWORDS = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "against",
        "all",
        "also",
        "am",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "either",
        "else",
        "ever",
        "every",
        "few",
        "for",
        "from",
        "further",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "him",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "itself",
        "just",
        "least",
        "less",
        "let",
        "like",
        "may",
        "me",
        "might",
        "more",
        "most",
        "much",
        "must",
        "my",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "on",
        "once",
        "only",
        "or",
        "other",
        "our",
        "ours",
        "out",
        "over",
        "own",
        "per",
        "same",
        "shall",
        "she",
        "should",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "theirs",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "upon",
        "us",
        "very",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "whose",
        "why",
        "will",
        "with",
        "within",
        "without",
        "would",
        "yes",
        "yet",
        "you",
        "your",
        "yours",
    ]
)
# Capitalised only because they start a sentence or a command, not because they name something.
_COMMON_CAPITALISED = STOPWORDS | frozenset(
    [
        "add",
        "also",
        "always",
        "answer",
        "avoid",
        "call",
        "change",
        "check",
        "choose",
        "click",
        "consider",
        "copy",
        "create",
        "delete",
        "do",
        "don't",
        "enable",
        "ensure",
        "first",
        "go",
        "however",
        "install",
        "it's",
        "keep",
        "make",
        "many",
        "most",
        "never",
        "next",
        "note",
        "open",
        "please",
        "roughly",
        "run",
        "see",
        "select",
        "set",
        "start",
        "still",
        "sure",
        "then",
        "there's",
        "total",
        "try",
        "update",
        "use",
        "well",
        "yes",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
    ]
)


@lru_cache(maxsize=_CACHED_TEXTS)
def normalise(text: str) -> str:
    if not text.isascii():
        # "Angoulême" and "Angoulême" (a combining accent) are one word; so is "Angouleme".
        text = _COMBINING.sub("", unicodedata.normalize("NFKD", text))
    return _THOUSANDS.sub("", text.translate(_APOSTROPHES))


# Words repeat across calls (it is a language), so the stem of each is worth remembering.
@lru_cache(maxsize=1 << 16)
def stem(token: str) -> str:
    """A light suffix strip so 'retries'/'retried'/'retry' meet (and "nixon's"/'nixon'); enough for overlap counting."""
    if token.endswith("'s"):
        token = token[:-2]
    for suffix, keep in _SUFFIXES:
        if len(token) > len(suffix) + 3 and token.endswith(suffix) and not token[0].isdigit():
            return token[: -len(suffix)] + keep
    return token


# The cached functions take raw texts (a call's context, answer, question); the `_x_of`
# helpers take normalised pieces of them (sentences, names) and are not cached, so the
# pieces of one long context never evict the texts the other checks of the call reuse.
def _terms_of(norm: str) -> frozenset[str]:
    return frozenset(stem(t) for t in _TOKEN.findall(norm.lower()) if t not in STOPWORDS)


@lru_cache(maxsize=_CACHED_TEXTS)
def content_terms(text: str) -> frozenset[str]:
    """Stemmed lower-case terms that carry meaning (stop words dropped)."""
    return _terms_of(normalise(text))


def name_terms(name: str) -> frozenset[str]:
    """The content terms of a name as `names` returns it (already normalised)."""
    return _terms_of(name)


def content_list(text: str) -> list[str]:
    return [stem(t) for t in _TOKEN.findall(normalise(text).lower()) if t not in STOPWORDS]


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(normalise(text)) if s and s.strip()]


def _number_value(raw: str) -> str:
    if raw.count(".") > 1 or ":" in raw or raw.count("-") > 1:
        return raw  # a version, time or date: compared as written
    cleaned = raw.replace(",", "").lstrip("+")
    if "." in cleaned:
        cleaned = cleaned.rstrip("0").rstrip(".")
    return cleaned or "0"


@lru_cache(maxsize=_CACHED_TEXTS)
def numbers(text: str, spelled: bool = True) -> frozenset[str]:
    """Numbers stated in a text, normalised ('1,200' -> '1200', '3.50' -> '3.5'); enumerators ignored.

    With `spelled`, small spelled-out numbers count too ('two' -> '2'): a source's 'two teams'
    supports an answer's '2 teams'. An answer's own spelled numbers are usually counts the
    writer inferred ('the two men'), so checks read answers with `spelled=False`."""
    return _numbers_of(normalise(text), content_terms(text) if spelled else frozenset())


def _numbers_of(norm: str, terms: frozenset[str]) -> frozenset[str]:
    """Numbers of a normalised text; spelled ones are read from its `terms` (empty: not read)."""
    found = (
        {_number_value(m.group()) for m in _NUMBER.finditer(_ENUMERATOR.sub(" ", norm))}
        if _DIGIT.search(norm)
        else set()
    )
    found.update(_NUMBER_WORDS[term] for term in terms if term in _NUMBER_WORDS)
    return frozenset(found)


@lru_cache(maxsize=_CACHED_TEXTS)
def quantities(text: str) -> frozenset[tuple[str, str]]:
    """(number, the word it counts): ('10', 'user') for '10 users'; tells swapped numbers apart."""
    body = _NUMBER_WORD.sub(lambda m: _NUMBER_WORDS[m.group().lower()], _ENUMERATOR.sub(" ", normalise(text)))
    return frozenset(
        (_number_value(m.group(1)), stem(m.group(2)))
        for m in _QUANTITY.finditer(body.lower())
        if m.group(2) not in STOPWORDS
    )


@lru_cache(maxsize=_CACHED_TEXTS)
def identifiers(text: str) -> frozenset[str]:
    if not _ID_CHAR.search(text):
        return frozenset()  # every identifier has a digit or an underscore
    return frozenset(m.group().lower() for m in _IDENTIFIER.finditer(normalise(text)))


@lru_cache(maxsize=_CACHED_TEXTS)
def names(text: str, positional: bool = True) -> frozenset[str]:
    """Capitalised names (people, places, products, acronyms) as lower-case phrases."""
    return _names_of(normalise(text), positional)


def _names_of(body: str, positional: bool) -> frozenset[str]:
    found = set()
    for match in _NAME.finditer(body):
        words = match.group().split()
        # drop a leading word capitalised only by its position (sentence start, "The ...")
        while words and words[0].lower().strip("'") in _COMMON_CAPITALISED:
            words = words[1:]
        if positional and words and len(words) == len(match.group().split()) and _starts_sentence(body, match.start()):
            # The first word of a sentence is capitalised whatever it is ("Despite Arbroath's",
            # "Here's"): it is a name only with the evidence of a capitalised word after it. A short
            # reference answer ("Canberra.") is read with positional=False.
            words = words[1:] if len(words) > 1 and not words[0].endswith("'s") else []
        if words and (len(words) > 1 or len(words[0]) > 1):  # a lone letter is a unit or a label ("°C", "Plan B")
            found.add(" ".join(words).lower())
    return frozenset(found)


def _starts_sentence(text: str, start: int) -> bool:
    window = text[max(0, start - 12) : start]
    before = window.rstrip(_LEAD_IN)
    if not before:
        return True  # only quotes, markdown or space since the start of the text (or for 12 chars)
    return before[-1] in ".!?:" or "\n" in window[len(before) :]


def name_supported(name: str, source_terms: frozenset[str]) -> bool:
    """A name is supported when every content word of it occurs in the source."""
    terms = _terms_of(name)
    return bool(terms) and terms <= source_terms


def overlap_f1(answer: str, other: str) -> float:
    """Token F1 of content terms (SQuAD-style), 0..1."""
    a, b = content_terms(answer), content_terms(other)
    if not a or not b:
        return 0.0
    common = len(a & b)
    if common == 0:
        return 0.0
    precision, recall = common / len(a), common / len(b)
    return 2 * precision * recall / (precision + recall)


@lru_cache(maxsize=_CACHED_TEXTS)
def sentence_facts(text: str) -> tuple[tuple[frozenset[str], frozenset[str], frozenset[str]], ...]:
    """Per sentence of `text`: its content terms other than numbers, its numbers, its names.
    Computed once per text, so matching an answer's sentences against a long context stays linear."""
    facts = []
    for sentence in sentences(text):  # normalised already
        terms = _terms_of(sentence)
        words = frozenset(t for t in terms if not t[0].isdigit())
        facts.append((words, _numbers_of(sentence, terms), _names_of(sentence, True)))
    return tuple(facts)


# Any sentence end: lower-cased news text (". the blast occurred …") starts sentences in lower case.
_ANY_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
# Phrases whose "not"/"no" negates nothing ("not only X but Y", "no longer", "no doubt").
_FALSE_NEGATION = re.compile(
    r"(?=[nN])\b(?:not\s+only|not\s+just|not\s+merely|no\s+longer|no\s+doubt)\b", re.IGNORECASE
)


@lru_cache(maxsize=1 << 16)
def relation_key(token: str) -> str:
    """A token's stem, spelling-neutral ("finalized"/"finalised"), for matching one word across texts."""
    return stem(token.replace("iz", "is"))


def _unit_tokens(sentence: str) -> tuple[str, ...]:
    # "hasn't" -> "has", "n't": the negation is a word of its own
    return tuple(_TOKEN.findall(_FALSE_NEGATION.sub(" ", sentence).lower().replace("n't", " n't")))


@lru_cache(maxsize=_CACHED_TEXTS)
def units(text: str) -> tuple[tuple[str, tuple[str, ...], frozenset[str]], ...]:
    """Per sentence of `text` (any sentence end, lower case too): the sentence, its lower-case
    tokens ("n't" split off, "not only" dropped) and its content keys (`relation_key`)."""
    found = []
    for sentence in _ANY_SENTENCE_END.split(normalise(text)):
        tokens = _unit_tokens(sentence)
        if tokens:
            found.append((sentence, tokens, frozenset(relation_key(t) for t in tokens if t not in STOPWORDS)))
    return tuple(found)


# The cached feature functions (bench/enrichment.py clears them to measure cold calls).
CACHED = (normalise, content_terms, numbers, quantities, identifiers, names, sentence_facts, units)
