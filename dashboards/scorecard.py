"""The readiness scorecard: per task (or service), candidate (shadow) vs primary on the same requests,
each metric tested against a tolerance from the settings, and one verdict: ready, hold or regression.

A metric *passes* when its whole 95% interval lies within the tolerance (non-inferiority shown),
*fails* when its whole interval lies beyond it (a regression shown), and is *unsure* otherwise. A
group with fewer pairs than `dashboard_scorecard_min_pairs` is on hold whatever its intervals say;
otherwise any failed metric makes a regression, any unsure one a hold, and none a ready.
Tests: p95 latency ratio, paired percentile bootstrap; error/timeout/refusal/flag rate differences,
Newcomb hybrid score; agreement (`pair_agreement.judge`), Wilson; cost per call ratio, paired delta method.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from dashboards import stats
from dashboards.settings import DashboardSettings

Status = Literal["pass", "fail", "unsure", "n/a"]
Verdict = Literal["ready", "hold", "regression"]


@dataclass(frozen=True)
class Check:
    """One metric of one group: both sides, the candidate's change with its interval, the tolerance."""

    metric: str
    unit: Literal["ratio", "points", "share"]  # ratio: relative change; points: rate difference; share: agreement
    primary: float | None
    candidate: float | None
    change: stats.Delta | None
    limit: float  # the worst change allowed (for agreement: the least share)
    test: str
    status: Status
    more_pairs: int | None  # pairs needed, at the present spread, for the interval to settle


@dataclass(frozen=True)
class Scorecard:
    group: str
    pairs: int
    checks: list[Check]
    verdict: Verdict
    reason: str


def _settle(change: stats.Delta, limit: float, higher_is_worse: bool) -> tuple[Status, int | None]:
    """Status of a change against its limit and, if unsure, how many more pairs would settle it
    (an interval's half-width shrinks with the square root of the pairs)."""
    low, high = (change.low, change.high) if higher_is_worse else (-change.high, -change.low)
    estimate, bound = (change.estimate, limit) if higher_is_worse else (-change.estimate, -limit)
    if high <= bound:
        return "pass", None
    if low > bound:
        return "fail", None
    gap = abs(bound - estimate)
    half = max(high - estimate, estimate - low)
    if gap == 0 or half == 0:
        return "unsure", None
    return "unsure", max(1, math.ceil(change.n * (half / gap) ** 2) - change.n)


def _rate_check(metric: str, k: tuple[int, int], n: tuple[int, int], limit: float) -> Check:
    """k, n: (primary, candidate) counts; the change is candidate - primary."""
    change = stats.rate_difference(k[1], n[1], k[0], n[0])
    primary, candidate = (k[i] / n[i] if n[i] else None for i in (0, 1))
    if change is None:
        return Check(metric, "points", primary, candidate, None, limit, "Newcomb hybrid score", "n/a", None)
    status, more = _settle(change, limit, higher_is_worse=True)
    return Check(metric, "points", primary, candidate, change, limit, "Newcomb hybrid score", status, more)


def _ratio_check(
    metric: str, sides: tuple[float, float] | None, change: stats.Delta | None, limit: float, test: str
) -> Check:
    """sides: (primary, candidate) figures, None when no pair has them; the change is candidate / primary - 1."""
    primary, candidate = sides if sides is not None else (None, None)
    if change is None:
        return Check(metric, "ratio", primary, candidate, None, limit, test, "n/a", None)
    status, more = _settle(change, limit, higher_is_worse=True)
    return Check(metric, "ratio", primary, candidate, change, limit, test, status, more)


def checks(pairs: pd.DataFrame, settings: DashboardSettings) -> list[Check]:
    """Every metric of one group of pairs (`queries.readiness_pairs` rows judged by `pair_agreement.judge`)."""
    s = settings
    n = len(pairs)
    out: list[Check] = []
    # Latency as the histograms see it: fast failures (errors that are not timeouts) left out on both sides.
    timed = pairs[
        ((pairs["primary_error"] == 0) | (pairs["primary_timeout"] == 1))
        & ((pairs["shadow_error"] == 0) | (pairs["shadow_timeout"] == 1))
    ]
    p_lat, s_lat = timed["primary_latency_ms"].to_numpy(float), timed["shadow_latency_ms"].to_numpy(float)
    out.append(
        _ratio_check(
            "p95 latency",
            (float(np.quantile(p_lat, 0.95)), float(np.quantile(s_lat, 0.95))) if len(timed) else None,
            stats.quantile_ratio(p_lat, s_lat, 0.95),
            s.dashboard_scorecard_max_p95_increase,
            "paired bootstrap of the p95 ratio",
        )
    )
    for metric, column, limit in (
        ("error rate", "error", s.dashboard_scorecard_max_error_increase),
        ("timeout rate", "timeout", s.dashboard_scorecard_max_timeout_increase),
        ("refusal rate", "refusal", s.dashboard_scorecard_max_refusal_increase),
    ):
        k = (int(pairs[f"primary_{column}"].sum()), int(pairs[f"shadow_{column}"].sum()))
        out.append(_rate_check(metric, k, (n, n), limit))
    flags = (int(pairs["primary_flag"].sum()), int(pairs["shadow_flag"].sum()))
    checked = (int(pairs["primary_checked"].sum()), int(pairs["shadow_checked"].sum()))
    out.append(_rate_check("hallucination-flag rate", flags, checked, s.dashboard_scorecard_max_flag_increase))
    # `pair_agreement.judge` judged the pairs (cutover.agreement: on both answers' text where captured).
    judged = pairs[pairs["agree"].notna()]
    on_text = int(judged["on_text"].sum())
    test = f"Wilson; {on_text:,} pairs judged on their answers' text, {len(judged) - on_text:,} on the outcome alone"
    agreement = stats.rate(int(judged["agree"].astype(bool).sum()), len(judged))
    if agreement is None:
        out.append(
            Check("agreement", "share", None, None, None, s.dashboard_scorecard_min_agreement, test, "n/a", None)
        )
    else:
        status, more = _settle(agreement, s.dashboard_scorecard_min_agreement, higher_is_worse=False)
        out.append(
            Check("agreement", "share", None, agreement.estimate, agreement, s.dashboard_scorecard_min_agreement,
                  test, status, more)
        )  # fmt: skip
    priced = pairs.dropna(subset=["primary_cost_usd", "shadow_cost_usd"])
    p_cost, s_cost = priced["primary_cost_usd"].to_numpy(float), priced["shadow_cost_usd"].to_numpy(float)
    out.append(
        _ratio_check(
            "cost per call",
            (float(p_cost.mean()), float(s_cost.mean())) if len(priced) else None,
            stats.mean_ratio(p_cost, s_cost),
            s.dashboard_scorecard_max_cost_increase,
            "paired delta method on the ratio of mean costs",
        )
    )
    return out


def change_words(check: Check) -> str:
    """The change as an SRE reads it: '+12.3%', '+1.40 pts' or '93.1%' (agreement)."""
    if check.change is None:
        return "–"
    if check.unit == "ratio":
        return f"{check.change.estimate:+.1%}"
    if check.unit == "points":
        return f"{check.change.estimate * 100:+.2f} pts"
    return f"{check.change.estimate:.1%}"


def interval_words(check: Check) -> str:
    if check.change is None:
        return "–"
    d = check.change
    if check.unit == "ratio":
        return f"{d.low:+.1%} to {d.high:+.1%}"
    if check.unit == "points":
        return f"{d.low * 100:+.2f} to {d.high * 100:+.2f} pts"
    return f"{d.low:.1%} to {d.high:.1%}"


def limit_words(check: Check) -> str:
    if check.unit == "ratio":
        return f"≤ {check.limit:+.0%}"
    if check.unit == "points":
        return f"≤ {check.limit * 100:+.2f} pts"
    return f"≥ {check.limit:.0%}"


def score(group: str, pairs: pd.DataFrame, settings: DashboardSettings) -> Scorecard:
    found = checks(pairs, settings)
    n, least = len(pairs), settings.dashboard_scorecard_min_pairs
    failed = [c for c in found if c.status == "fail"]
    if n < least:
        return Scorecard(group, n, found, "hold", f"{least - n:,} more pairs (fewer than {least:,})")
    if failed:
        words = "; ".join(f"{c.metric} {change_words(c)} (limit {limit_words(c)})" for c in failed)
        return Scorecard(group, n, found, "regression", words)
    # A metric with nothing to measure (no hallucination checks, unpriced calls) does not hold a verdict
    # forever: it is named instead.
    unmeasured = [c.metric for c in found if c.status == "n/a"]
    aside = f" (not measured: {', '.join(unmeasured)})" if unmeasured else ""
    unsure = [c for c in found if c.status == "unsure"]
    if unsure:
        more = [c.more_pairs for c in unsure if c.more_pairs is not None]
        need = f"≈{max(more):,} more pairs" if more else "more pairs"
        return Scorecard(group, n, found, "hold", f"{need} to settle {', '.join(c.metric for c in unsure)}{aside}")
    return Scorecard(group, n, found, "ready", f"every metric within its limit{aside}")


# The columns a scorecard reads: slicing the pairs down to them first keeps each group's copy small.
_READ = [
    f"{side}_{name}"
    for side in ("primary", "shadow")
    for name in ("latency_ms", "error", "timeout", "refusal", "checked", "flag", "cost_usd")
] + ["agree", "on_text"]


def by_group(pairs: pd.DataFrame, column: str, settings: DashboardSettings) -> list[Scorecard]:
    """One scorecard per value of `column` ('task' or 'service'), largest first."""
    slim = pairs[[column, *_READ]]
    return [score(str(g), one, settings) for g, one in sorted(slim.groupby(column), key=lambda item: -len(item[1]))]


def table(cards: list[Scorecard], label: str) -> pd.DataFrame:
    """One row per group: the verdict, its reason, pairs, and each metric's change with its interval."""
    rows = []
    for card in cards:
        row: dict[str, object] = {label: card.group, "verdict": card.verdict, "why": card.reason, "pairs": card.pairs}
        for c in card.checks:
            mark = {"pass": "✓", "fail": "✗", "unsure": "?", "n/a": "–"}[c.status]
            row[c.metric] = f"{mark} {change_words(c)} [{interval_words(c)}]"
        rows.append(row)
    return pd.DataFrame(rows)


def naive(times: pd.Series) -> pd.Series:
    """Times as naive UTC (chDB returns DateTime64 columns with their time zone)."""
    times = pd.to_datetime(times)
    return times.dt.tz_convert(None) if times.dt.tz is not None else times


def over_time(pairs: pd.DataFrame, column: str, cuts: list[pd.Timestamp], settings: DashboardSettings) -> pd.DataFrame:
    """The verdict per group as it would have read at each cut: on the pairs seen up to it."""
    rows = []
    seen = naive(pairs["last_seen"])
    pairs = pairs[[column, *_READ]]
    for cut in cuts:
        upto = pairs[seen < cut]
        for card in by_group(upto, column, settings):
            rows.append({"t": cut, column: card.group, "verdict": card.verdict, "pairs": card.pairs})
    return pd.DataFrame(rows, columns=["t", column, "verdict", "pairs"])
