"""The cutover projection: if the candidate took a share x of the primary's traffic, what spend,
latency, timeouts, refusals and errors would follow, per task and in total.

Each task's figure comes from the paired shadow calls of that task (the same requests on both
models), scaled by the primary's own volume of that task: projected spend/day = today's spend/day
+ x · calls/day · mean paired cost delta (95% interval: normal approximation of the mean delta,
tasks combined as independent). Rates move by x times the paired difference. A task with fewer
pairs than `dashboard_scorecard_min_pairs` is not projected: its spend stays at today's, and says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dashboards import stats

DAY_MINUTES = 1440
MONTH_DAYS = 30
COLUMNS = [
    "task", "calls/day", "pairs", "projected", "spend/day today", "timeout (s)", "cost Δ/call", "spend/day", "spend/day low",
    "spend/day high", "p95 (ms)", "p99 (ms)", "over timeout", "refusal today", "refusal", "error today", "error",
]  # fmt: skip


@dataclass(frozen=True)
class Total:
    calls_per_day: float
    spend_today: float  # per day
    spend: float  # per day, projected
    low: float
    high: float
    refusal_today: float | None
    refusal: float | None
    error_today: float | None
    error: float | None
    projected_tasks: int
    skipped: list[str]


def per_task(
    pairs: pd.DataFrame, volume: pd.DataFrame, window_minutes: float, share: float, min_pairs: int
) -> pd.DataFrame:
    """One row per task the primary served. `volume`: the primary's `queries.serving_volume` rows;
    `pairs`: its `queries.readiness_pairs` rows with the candidate; `window_minutes`: the time
    with traffic (the primary's first call in the range to the range's end or now)."""
    rows = []
    tasks = volume.groupby("task").agg(
        calls=("calls", "sum"),
        spend=("spend_usd", "sum"),
        errors=("errors", "sum"),
        refusals=("refusals", "sum"),
    )
    # The timeout most of the task's calls ran with: that of its busiest service.
    timeouts = volume.sort_values("calls", ascending=False).groupby("task")["timeout_s"].first()
    per_day = DAY_MINUTES / max(window_minutes, 1.0)
    for task, t in tasks.sort_values("calls", ascending=False).iterrows():
        p = pairs[pairs["task"] == task]
        n = len(p)
        calls_day = float(t.calls) * per_day
        spend_today = float(t.spend) * per_day
        timeout_s = timeouts.get(task)
        row: dict[str, object] = {
            "task": task,
            "calls/day": calls_day,
            "pairs": n,
            "spend/day today": spend_today,
            "timeout (s)": None if timeout_s is None or pd.isna(timeout_s) else float(timeout_s),
        }
        if n < min_pairs:
            rows.append({**row, "projected": f"no: fewer than {min_pairs:,} pairs"})
            continue
        priced = p.dropna(subset=["primary_cost_usd", "shadow_cost_usd"])
        delta = stats.mean_delta(priced["primary_cost_usd"].to_numpy(float), priced["shadow_cost_usd"].to_numpy(float))
        timed = p[(p["shadow_error"] == 0) | (p["shadow_timeout"] == 1)]["shadow_latency_ms"].to_numpy(float)
        over = None
        if row["timeout (s)"] is not None:
            limit_ms = float(row["timeout (s)"]) * 1000  # type: ignore[arg-type]
            over = float(((p["shadow_timeout"] == 1) | (p["shadow_latency_ms"] > limit_ms)).sum()) / n
        # int(): the flag columns are UInt8, whose numpy sums would wrap below zero when the candidate does better.
        refusal_change = (int(p["shadow_refusal"].sum()) - int(p["primary_refusal"].sum())) / n
        error_change = (int(p["shadow_error"].sum()) - int(p["primary_error"].sum())) / n
        rows.append(
            {
                **row,
                "projected": "yes",
                "cost Δ/call": None if delta is None else delta.estimate,
                "spend/day": None if delta is None else spend_today + share * calls_day * delta.estimate,
                "spend/day low": None if delta is None else spend_today + share * calls_day * delta.low,
                "spend/day high": None if delta is None else spend_today + share * calls_day * delta.high,
                "p95 (ms)": float(np.quantile(timed, 0.95)) if len(timed) else None,
                "p99 (ms)": float(np.quantile(timed, 0.99)) if len(timed) else None,
                "over timeout": over,
                "refusal today": float(t.refusals) / float(t.calls),
                "refusal": float(t.refusals) / float(t.calls) + share * refusal_change,
                "error today": float(t.errors) / float(t.calls),
                "error": float(t.errors) / float(t.calls) + share * error_change,
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def total(tasks: pd.DataFrame) -> Total:
    """All tasks: projected ones at their projection, the others at today's spend."""
    projected = tasks[tasks["spend/day"].notna()]
    skipped = tasks[~tasks.index.isin(projected.index)]
    today = float(tasks["spend/day today"].sum())
    spend = float(projected["spend/day"].sum()) + float(skipped["spend/day today"].sum())
    # Independent tasks: half-widths add in quadrature.
    half = math.sqrt(float(((projected["spend/day high"] - projected["spend/day low"]) / 2).pow(2).sum()))
    weights = projected["calls/day"]

    def mix(column: str) -> float | None:
        return float((projected[column] * weights).sum() / weights.sum()) if weights.sum() else None

    return Total(
        calls_per_day=float(tasks["calls/day"].sum()),
        spend_today=today,
        spend=spend,
        low=spend - half,
        high=spend + half,
        refusal_today=mix("refusal today") if len(projected) else None,
        refusal=mix("refusal") if len(projected) else None,
        error_today=mix("error today") if len(projected) else None,
        error=mix("error") if len(projected) else None,
        projected_tasks=len(projected),
        skipped=[str(t) for t in skipped["task"]],
    )
