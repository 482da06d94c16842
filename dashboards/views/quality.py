"""Quality: refusal and hallucination-flag rates over time per model (Wilson 95% bands), flagged calls."""

from __future__ import annotations

import altair as alt
import streamlit as st

from dashboards import context, filters, queries, stats

st.title("Quality")
f = filters.current()
client, db = context.client(), context.database()
grain = f.grain_minutes
data = queries.quality_over_time(client, db, f, grain)
if data.empty:
    context.no_data()
    st.stop()

totals = data.groupby("model", as_index=False)[["calls", "refusals", "checked", "flagged"]].sum()
cols = st.columns(max(len(totals), 1))
for col, row in zip(cols, totals.itertuples(), strict=True):
    refusal = stats.rate(int(row.refusals), int(row.calls))
    flag = stats.rate(int(row.flagged), int(row.checked))
    with col.container(border=True):
        st.markdown(f"**{row.model}**")
        st.metric(
            "refusal rate",
            context.pct(refusal.estimate),
            help=f"95% CI {context.pct(refusal.low)} to {context.pct(refusal.high)} (Wilson), {int(row.calls):,} calls",
        )
        st.metric(
            "hallucination-flag rate",
            context.pct(flag.estimate) if flag else "not checked",
            help=(
                f"flagged / checked, 95% CI {context.pct(flag.low)} to {context.pct(flag.high)} (Wilson), "
                f"{int(row.checked):,} checked"
            )
            if flag
            else "no call of this model was checked",
        )


def rate_chart(k: str, n: str, title: str) -> alt.LayerChart | None:
    frame = data[data[n] > 0].copy()
    if frame.empty:
        return None
    frame["rate"] = frame[k] / frame[n]
    frame["low"], frame["high"] = stats.wilson(frame[k].to_numpy(), frame[n].to_numpy())
    base = alt.Chart(frame).encode(alt.X("t:T", title="time (UTC)"), color="model:N")
    band = base.mark_area(opacity=0.2).encode(alt.Y("low:Q", title=title, axis=alt.Axis(format="%")), alt.Y2("high:Q"))
    line = base.mark_line(point=len(frame) < 60).encode(
        alt.Y("rate:Q"),
        tooltip=[
            "t:T",
            "model",
            alt.Tooltip("rate:Q", format=".2%"),
            alt.Tooltip("low:Q", format=".2%"),
            alt.Tooltip("high:Q", format=".2%"),
            alt.Tooltip(f"{n}:Q", title=n),
        ],
    )
    return band + line


st.caption(f"Per {grain}-minute bucket; shaded bands are Wilson 95% confidence intervals.")
left, right = st.columns(2)
with left:
    st.subheader("Refusal rate")
    st.altair_chart(rate_chart("refusals", "calls", "refusal rate"), width="stretch")
with right:
    st.subheader("Hallucination-flag rate")
    chart = rate_chart("flagged", "checked", "flagged / checked")
    if chart is None:
        st.info("No call in this range was checked for hallucinations: are the checks enabled in `cutover process`?")
    else:
        st.altair_chart(chart, width="stretch")

st.header("Flagged calls")
limit = st.number_input("Show the newest", min_value=10, max_value=5000, value=200, step=50, key="flag_limit")
flagged = queries.flagged_calls(client, db, f, int(limit))
if flagged.empty:
    st.info("No flagged calls in this range.")
else:
    captured = flagged["content_captured"].fillna(0).astype(int) == 1
    flagged["input"] = flagged["input_text"].where(captured, "(content not captured)")
    flagged["output"] = flagged["output_text"].where(captured, "(content not captured)")
    st.dataframe(
        flagged[
            ["start_time", "model", "task", "service", "check_name", "score", "reason", "input", "output", "trace_id"]
        ],
        hide_index=True,
        width="stretch",
        column_config={
            "start_time": st.column_config.DatetimeColumn("time (UTC)", format="YYYY-MM-DD HH:mm:ss"),
            "score": st.column_config.NumberColumn(format="%.3f"),
        },
    )
