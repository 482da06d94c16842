"""Cost and tokens: cost per model, request and task; token efficiency; budget burn with projection."""

from __future__ import annotations

from datetime import datetime, timedelta

import altair as alt
import pandas as pd
import streamlit as st

from cutover.budget import period_bounds
from dashboards import context, filters, queries

st.title("Cost and tokens")
f = filters.current()
client, db, settings = context.client(), context.database(), context.settings()
data = queries.cost_and_tokens(client, db, f)
if data.empty:
    context.no_data()
    st.stop()

unpriced = int(data["unpriced"].sum())
top = st.columns(4)
top[0].metric("spend in range", context.usd(float(data["spend_usd"].sum())))
top[1].metric("calls", f"{int(data['calls'].sum()):,}")
top[2].metric(
    "unpriced calls", f"{unpriced:,}", help="No price for their model: never counted as $0, left out of every cost."
)
top[3].metric("unpriced share", context.pct(unpriced / int(data["calls"].sum())))
if unpriced:
    st.warning(f"{unpriced:,} calls are unpriced: add their model to the price table, costs below leave them out.")

per_model = data.groupby("model", as_index=False)[["calls", "unpriced", "spend_usd"]].sum(
    min_count=1
)  # all unpriced: NaN, not $0
per_model["priced"] = per_model["calls"] - per_model["unpriced"]
per_model["cost_per_request"] = per_model["spend_usd"] / per_model["priced"].where(per_model["priced"] > 0)
left, right = st.columns(2)
with left:
    st.subheader("Cost per model")
    st.altair_chart(
        alt.Chart(per_model)
        .mark_bar()
        .encode(
            alt.X("spend_usd:Q", title="USD in range"),
            alt.Y("model:N", sort="-x"),
            color="model:N",
            tooltip=["model", alt.Tooltip("spend_usd:Q", format="$,.4f"), "calls", "unpriced"],
        ),
        width="stretch",
    )
with right:
    st.subheader("Cost per request")
    st.altair_chart(
        alt.Chart(per_model)
        .mark_bar()
        .encode(
            alt.X("cost_per_request:Q", title="USD per priced call"),
            alt.Y("model:N", sort="-x"),
            color="model:N",
            tooltip=["model", alt.Tooltip("cost_per_request:Q", format="$,.6f"), "priced"],
        ),
        width="stretch",
    )

per_task = data.copy()
per_task["priced"] = per_task["calls"] - per_task["unpriced"]
per_task["cost_per_request"] = per_task["spend_usd"] / per_task["priced"].where(per_task["priced"] > 0)
st.subheader("Cost per request by task")
st.altair_chart(
    alt.Chart(per_task)
    .mark_bar()
    .encode(
        alt.X("model:N", title=None),
        alt.Y("cost_per_request:Q", title="USD per priced call"),
        color="model:N",
        column=alt.Column("task:N", title=None),
        tooltip=["task", "model", alt.Tooltip("cost_per_request:Q", format="$,.6f"), "calls"],
    ),
)

st.subheader("Token efficiency: tokens per call by task")
st.caption("Input includes cached input; output includes reasoning (OpenAI's conventions). Bars split them out.")
tokens = per_task.assign(
    uncached_input=(per_task["input_tokens"] - per_task["cached_input_tokens"]) / per_task["calls"],
    cached_input=per_task["cached_input_tokens"] / per_task["calls"],
    visible_output=(per_task["output_tokens"] - per_task["reasoning_tokens"]) / per_task["calls"],
    reasoning=per_task["reasoning_tokens"] / per_task["calls"],
).melt(
    id_vars=["model", "task", "calls"],
    value_vars=["uncached_input", "cached_input", "visible_output", "reasoning"],
    var_name="kind",
    value_name="tokens_per_call",
)
st.altair_chart(
    alt.Chart(tokens)
    .mark_bar()
    .encode(
        alt.X("model:N", title=None),
        alt.Y("sum(tokens_per_call):Q", title="tokens per call"),
        color="kind:N",
        column=alt.Column("task:N", title=None),
        tooltip=["task", "model", "kind", alt.Tooltip("tokens_per_call:Q", format=",.0f")],
    ),
)

st.header("Budget burn")


@st.cache_data(ttl=600, show_spinner=False)
def spend_history(database: str, start: datetime, end: datetime) -> pd.DataFrame:
    """Spend of the period's finished hours: they barely change, so one scan per 10 minutes."""
    return queries.spend_by_hour(context.client(), database, start, end)


now = filters.now()
p_start, p_end = period_bounds(now, settings.budget_period)
this_hour = now.replace(minute=0, second=0, microsecond=0)
history = spend_history(db, p_start, this_hour)
spend = pd.concat([history, queries.spend_by_hour(client, db, this_hour, p_end)], ignore_index=True)
spent = float(spend["spend_usd"].sum()) if not spend.empty else 0.0
# Projection at the recent rate (the last 24 hours, or the period so far if shorter), not the period's average.
window_h = min(24.0, max((now - p_start).total_seconds() / 3600, 1 / 60))
recent = (
    float(spend.loc[spend["hour"] >= now - timedelta(hours=window_h), "spend_usd"].sum()) if not spend.empty else 0.0
)
projected = spent + recent / window_h * ((p_end - now).total_seconds() / 3600)
budget = float(settings.budget_usd)
cols = st.columns(4)
cols[0].metric(f"spent this {settings.budget_period}", context.usd(spent))
cols[1].metric(
    "projected at period end",
    context.usd(projected),
    help="Spent so far plus the last 24 hours' hourly rate continued to the period end.",
)
cols[2].metric("budget", context.usd(budget) if budget else "not set")
cols[3].metric("projected share of budget", context.pct(projected / budget, 0) if budget else "–")
if not budget:
    st.caption("Set `CUTOVER_BUDGET_USD` to draw the 50/75/90% budget lines.")
elif projected >= budget:
    st.error(f"At this rate the {settings.budget_period}'s budget runs out before {p_end:%Y-%m-%d %H:%M} UTC.")
cumulative = (
    spend.assign(spent=spend["spend_usd"].cumsum(), line="actual")[["hour", "spent", "line"]]
    if not spend.empty
    else pd.DataFrame(columns=["hour", "spent", "line"])
)
projection = pd.DataFrame({"hour": [now, p_end], "spent": [spent, projected], "line": ["projected", "projected"]})
burn = pd.concat([cumulative, projection], ignore_index=True)
chart = (
    alt.Chart(burn)
    .mark_line(point=True)
    .encode(
        alt.X("hour:T", title="time (UTC)", scale=alt.Scale(domain=[p_start.isoformat(), p_end.isoformat()])),
        alt.Y("spent:Q", title="cumulative spend (USD)"),
        strokeDash="line:N",
        color=alt.value("#1f77b4"),
        tooltip=["hour:T", alt.Tooltip("spent:Q", format="$,.2f"), "line"],
    )
)
if budget:
    lines = pd.DataFrame({"level": ["50%", "75%", "90%", "100%"], "usd": [budget * x for x in (0.5, 0.75, 0.9, 1.0)]})
    rules = (
        alt.Chart(lines)
        .mark_rule(strokeDash=[4, 4])
        .encode(
            y="usd:Q",
            color=alt.Color(
                "level:N",
                title="budget",
                scale=alt.Scale(
                    domain=["50%", "75%", "90%", "100%"], range=["#f2c744", "#f28e2b", "#e15759", "#7f0000"]
                ),
            ),
            tooltip=["level", alt.Tooltip("usd:Q", format="$,.2f")],
        )
    )
    chart = chart + rules
st.altair_chart(chart, width="stretch")
