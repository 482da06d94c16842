"""Percentile time series from the merged per-minute histograms, and the line chart that draws them
(the Latency page's panels and the Overview's live p95 chart)."""

from __future__ import annotations

import altair as alt
import pandas as pd
from clickhouse_connect.driver.client import Client

from dashboards import queries, stats

PERCENTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}


def percentiles_over_time(
    client: Client,
    db: str,
    f: queries.Filters,
    metric: str,
    grain_minutes: int,
    percentiles: dict[str, float] = PERCENTILES,
) -> pd.DataFrame:
    """One row per (time bucket, model, percentile): the percentile of the bucket's merged histogram."""
    rows = []
    for row in queries.buckets_over_time(client, db, f, metric, grain_minutes).itertuples():
        values = stats.percentiles(row.buckets, row.zero_count, tuple(percentiles.values()))
        rows += [
            {"t": row.t, "model": row.model, "percentile": name, "value": value}
            for name, value in zip(percentiles, values, strict=True)
        ]
    return pd.DataFrame(rows, columns=["t", "model", "percentile", "value"])


def line(data: pd.DataFrame, title: str, dash: str | None = "percentile", height: int | None = None) -> alt.Chart:
    """`value` over `t`, one colour per model (and one dash per `dash` value)."""
    tooltip = ["t:T", "model", *([dash] if dash else []), alt.Tooltip("value:Q", format=",.1f")]
    encodings = {"strokeDash": f"{dash}:N"} if dash else {}
    chart: alt.Chart = (
        alt.Chart(data)
        .mark_line(point=len(data) < 60)
        .encode(
            alt.X("t:T", title="time (UTC)"),
            alt.Y("value:Q", title=title),
            color="model:N",
            tooltip=tooltip,
            **encodings,
        )
    )
    return chart.properties(height=height) if height else chart
