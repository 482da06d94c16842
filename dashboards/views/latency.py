"""Latency: distribution and CDF per model, percentiles over time, TTFT and output speed, timeout advisor."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from dashboards import context, filters, queries, stats, timeseries

st.title("Latency")
f = filters.current()
client, db = context.client(), context.database()
merged = queries.merged_buckets(client, db, f, "latency_ms")
if merged.empty:
    context.no_data("latency histograms")
    st.stop()
st.caption(
    "From the per-minute exponential histograms: successful and timed-out calls, each in the minute it ended; fast failures excluded."
)

dist = pd.concat(
    [stats.distribution(row.buckets, row.zero_count).assign(model=row.model) for row in merged.itertuples()],
    ignore_index=True,
)
bins = pd.concat(
    [stats.display_bins(row.buckets).assign(model=row.model) for row in merged.itertuples()], ignore_index=True
)
hist_col, cdf_col = st.columns(2)
with hist_col:
    st.subheader("Distribution")
    # The last bin's upper edge closes each model's step, so a single bin still draws with its width.
    edges = pd.concat([bins, bins.groupby("model").tail(1).assign(low=lambda b: b["high"], share=0.0)])
    st.altair_chart(
        alt.Chart(edges)
        .mark_area(opacity=0.45, interpolate="step-after")
        .encode(
            alt.X("low:Q", title="latency (ms, log scale)", scale=alt.Scale(type="log")),
            alt.Y("share:Q", title="share of calls", stack=None, axis=alt.Axis(format="%")),
            color="model:N",
            tooltip=[
                "model",
                alt.Tooltip("low:Q", title="from ms", format=",.0f"),
                alt.Tooltip("high:Q", title="to ms", format=",.0f"),
                "count",
            ],
        ),
        width="stretch",
    )
    st.caption("Ten log-spaced bins per decade of latency; an empty bin between calls draws as zero.")
with cdf_col:
    st.subheader("CDF")
    st.altair_chart(
        alt.Chart(dist)
        .mark_line(interpolate="step-after")
        .encode(
            alt.X("high:Q", title="latency (ms, log scale)", scale=alt.Scale(type="log")),
            alt.Y("cdf:Q", title="calls finished", axis=alt.Axis(format="%")),
            color="model:N",
            tooltip=["model", alt.Tooltip("high:Q", format=",.0f"), alt.Tooltip("cdf:Q", format=".3%")],
        ),
        width="stretch",
    )


def percentiles_over_time(metric: str) -> pd.DataFrame:
    return timeseries.percentiles_over_time(client, db, f, metric, f.grain_minutes)


st.subheader("Percentiles over time")
st.altair_chart(timeseries.line(percentiles_over_time("latency_ms"), "latency (ms)"), width="stretch")
speeds = [
    (
        "Time to first token",
        "ttft_ms",
        "TTFT (ms)",
        "No streamed calls in this range: time to first token is only known for streams.",
    ),
    ("Output tokens/s", "output_tps", "output tokens/s", "No output speed recorded in this range."),
]
for column, (title, metric, axis, empty) in zip(st.columns(2), speeds, strict=True):
    with column:
        st.subheader(title)
        frame = percentiles_over_time(metric)
        if frame.empty:
            st.info(empty)
        else:
            st.altair_chart(timeseries.line(frame, axis), width="stretch")

st.header("Timeout advisor")
target = st.number_input(
    "Target success rate (%)",
    min_value=50.0,
    max_value=99.99,
    value=99.5,
    step=0.1,
    format="%.2f",
    key="target_success",
)
per_task = queries.merged_buckets(client, db, f, "latency_ms", by=("model", "task"))
in_force = queries.timeouts_in_force(client, db, f).set_index(["model", "task"])
advice_rows = []
for row in per_task.itertuples():
    advice = stats.advise_timeout(row.buckets, row.zero_count, target / 100)
    if advice is None:
        continue
    current = in_force.loc[(row.model, row.task)] if (row.model, row.task) in in_force.index else None
    advice_rows.append(
        {
            "model": row.model,
            "task": row.task,
            "recommended timeout (s)": round(advice.timeout_ms / 1000, 3),
            "calls": advice.total,
            "calls it would cut": advice.cut,
            "cut %": 100 * advice.cut / advice.total,
            "timeout in force (s)": None if current is None or pd.isna(current.timeout_s) else float(current.timeout_s),
            "timed out at it": None if current is None else int(current.timed_out),
        }
    )
advice = pd.DataFrame(advice_rows)
st.caption(
    "Recommended timeout: the upper edge of the histogram bucket in which the target share of calls had finished, "
    "so every call counted as kept really finished in time. Timed-out calls count at the time they were cut: "
    "a recommendation at or above the timeout in force means the current timeout is the binding limit."
)
if advice.empty:
    st.info("No model and task has enough latency data for a recommendation in this range.")
else:
    # A static table, not st.dataframe: its canvas is blank in headless screenshots, and this
    # recommendation is what gets pasted into an incident channel.
    st.table(
        advice.style.hide(axis="index").format(
            {
                "recommended timeout (s)": "{:,.3f}",
                "calls": "{:,}",
                "calls it would cut": "{:,}",
                "cut %": "{:.3f}%",
                "timeout in force (s)": "{:,.3f}",
                "timed out at it": "{:,.0f}",
            },
            na_rep="–",
        )
    )
