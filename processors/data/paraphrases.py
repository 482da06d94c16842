"""Answer pairs for measuring shadow agreement on real model text (FaithBench dev, `../shared/quality-data/`).

- *paraphrase pairs*: two summaries of one passage by different models, both judged faithful
  by FaithBench's annotators (worst label Consistent or Benign): they should mostly agree.
- *changed-number pairs*: a faithful summary and the same summary with one number changed
  (the kind of substitution a hallucination makes): they must disagree.
- *other-passage pairs*: summaries of two different passages, to place the similarity threshold.
"""

from __future__ import annotations

import itertools
import random
import re
from collections import defaultdict

from processors.data import public

FAITHFUL = ("Consistent", "Benign")
_NUMBER = re.compile(r"(?<![\w.,])\d+(?:\.\d+)?(?![\w.,]\d)")


def faithful_summaries() -> dict[str, list[tuple[str, str]]]:
    """passage -> [(model, summary)] of the summaries annotators found faithful."""
    by_passage: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for row in public("faithbench.dev.jsonl"):
        if row["worst_label"] in FAITHFUL and row["summary"].strip():
            by_passage[row["source"]].append((row["llm"], row["summary"].strip()))
    return dict(by_passage)


def paraphrase_pairs() -> list[tuple[str, str]]:
    return [
        (a, b)
        for summaries in faithful_summaries().values()
        for (model_a, a), (model_b, b) in itertools.combinations(summaries, 2)
        if model_a != model_b
    ]


def changed_number(text: str, rng: random.Random) -> str | None:
    """The text with one of its numbers replaced by a different plausible one (None if it states none)."""
    # a number stated once, changed to one the text does not state: a clean substitution
    found = [
        m for m in _NUMBER.finditer(text) if len(re.findall(rf"(?<![\w.]){re.escape(m.group())}(?![\w])", text)) == 1
    ]
    if not found:
        return None
    match = rng.choice(found)
    value = match.group()
    number = float(value)
    if "." in value:
        new = f"{number * rng.choice((0.8, 1.25)):.{len(value.split('.')[1])}f}"
    elif 1900 <= number <= 2100:
        new = str(int(number) + rng.choice((-3, -1, 1, 2)))
    else:
        new = str(max(int(number) + rng.choice((1, 2, 3)), int(number * rng.choice((2, 3)))))
    if new in text:
        new = str(int(number) + 7) if "." not in value else f"{number + 0.7:.{len(value.split('.')[1])}f}"
    return text[: match.start()] + new + text[match.end() :]


def changed_number_pairs(seed: int = 7) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    summaries = [text for group in faithful_summaries().values() for _, text in group]
    return [(text, changed) for text in summaries if (changed := changed_number(text, rng)) is not None]


def other_passage_pairs(count: int = 500, seed: int = 7) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    groups = list(faithful_summaries().values())
    pairs = []
    for _ in range(count):
        first, second = rng.sample(groups, 2)
        pairs.append((rng.choice(first)[1], rng.choice(second)[1]))
    return pairs
