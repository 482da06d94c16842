"""Which shadow pairs the readiness scorecard judges for agreement, and how: `cutover.agreement`
(the Shadow page's definition) on both answers' text where both were captured, on the outcome
(answer, refusal or error) alone where they were not.

Reading and judging text is the page's cost, so each group (task or service) is judged on its
newest `PAIRS` pairs, the bound the Shadow page keeps (a ±1.4-point 95% interval at most); a
group's older pairs carry no agreement verdict.
"""

from __future__ import annotations

import pandas as pd

from cutover import agreement
from cutover.agreement import Outcome

PAIRS = 5_000
_TEXTS = ("primary_text", "shadow_text")


def outcome(error: int, refusal: int) -> Outcome:
    """An error is never counted as a refusal."""
    return "error" if error else "refusal" if refusal else "answer"


def _newest(pairs: pd.DataFrame, by: str) -> pd.DataFrame:
    """The newest `PAIRS` pairs of each value of `by`."""
    return pairs.sort_values("last_seen", ascending=False, kind="stable").groupby(by, sort=False).head(PAIRS)


def _both_answers_captured(pairs: pd.DataFrame) -> pd.Series:
    return (
        (pairs["primary_captured"] == 1)
        & (pairs["shadow_captured"] == 1)
        & (pairs["primary_error"] == 0)
        & (pairs["primary_refusal"] == 0)
        & (pairs["shadow_error"] == 0)
        & (pairs["shadow_refusal"] == 0)
    )


def to_read(pairs: pd.DataFrame, by: str) -> list[str]:
    """The pair ids whose answers' text the judgement needs (`queries.pair_texts`)."""
    chosen = _newest(pairs, by)
    return [str(i) for i in chosen.loc[_both_answers_captured(chosen), "shadow_pair_id"]]


def judge(pairs: pd.DataFrame, by: str, texts: pd.DataFrame) -> pd.DataFrame:
    """`pairs` (`queries.readiness_pairs` rows) with `agree` (nullable boolean: NA for a pair not judged)
    and `on_text` (judged on both answers' text rather than on the outcome alone).
    `texts`: `queries.pair_texts` rows for the ids `to_read` gave."""
    chosen = _newest(pairs, by)
    by_id = texts.set_index("shadow_pair_id")
    agree, on_text = [], []
    for row, captured in zip(chosen.itertuples(index=False), _both_answers_captured(chosen), strict=True):
        a, b = (by_id.at[row.shadow_pair_id, c] if row.shadow_pair_id in by_id.index else "" for c in _TEXTS)
        read = bool(captured) and bool(a) and bool(b)
        verdict = agreement.pair_agrees(
            outcome(row.primary_error, row.primary_refusal),
            outcome(row.shadow_error, row.shadow_refusal),
            a if read else None,
            b if read else None,
        )
        agree.append(verdict.agree)
        on_text.append(read)
    return pairs.assign(
        agree=pd.Series(agree, index=chosen.index, dtype="boolean").reindex(pairs.index),
        on_text=pd.Series(on_text, index=chosen.index, dtype=bool).reindex(pairs.index, fill_value=False),
    )
