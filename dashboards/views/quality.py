"""Quality: refusal and hallucination-flag rates over time per model (Wilson 95% bands), flagged calls."""

from __future__ import annotations

import altair as alt
import pandas as pd
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
            context.pct(refusal.estimate) if refusal else "no calls",
            help=f"95% CI {context.pct(refusal.low)} to {context.pct(refusal.high)} (Wilson), {int(row.calls):,} calls"
            if refusal
            else None,
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
    return alt.LayerChart(layer=[band, line])


st.caption(f"Per {grain}-minute bucket; shaded bands are Wilson 95% confidence intervals.")
left, right = st.columns(2)
with left:
    st.subheader("Refusal rate")
    refusals = rate_chart("refusals", "calls", "refusal rate")
    if refusals is not None:  # every bucket holds a call, so never None; narrowed for the type
        st.altair_chart(refusals, width="stretch")
with right:
    st.subheader("Hallucination-flag rate")
    chart = rate_chart("flagged", "checked", "flagged / checked")
    if chart is None:
        st.info("No call in this range was checked for hallucinations: are the checks enabled in `cutover process`?")
    else:
        st.altair_chart(chart, width="stretch")

st.header("How far to trust each check")
rates = queries.check_rates(client, db, f)
agreement = queries.judge_agreement(client, db, f).set_index("check_name")
trust_rows = []
for check in rates.itertuples():
    flag_rate = stats.rate(int(check.flagged), int(check.ran))
    trust: dict[str, object] = {
        "check": check.check_name,
        "calls checked": int(check.ran),
        "flag rate": context.pct(flag_rate.estimate) if flag_rate else "–",
    }
    if check.check_name in agreement.index:
        a = agreement.loc[check.check_name]
        agree = stats.rate(int(a["agree"]), int(a["calls"]))
        precision = stats.rate(int(a["both"]), int(a["flagged"]))
        recall = stats.rate(int(a["both"]), int(a["judge_flagged"]))
        trust.update(
            {
                "judged alongside": int(a["calls"]),
                "agrees with judge": context.pct(agree.estimate) if agree else "–",
                "precision vs judge": (
                    f"{context.pct(precision.estimate)} ({context.pct(precision.low)}–{context.pct(precision.high)})"
                    if precision
                    else "no flag judged"
                ),
                "recall vs judge": context.pct(recall.estimate) if recall else "judge flagged none",
            }
        )
    trust_rows.append(trust)
if trust_rows:
    st.dataframe(pd.DataFrame(trust_rows), hide_index=True, width="stretch")
st.caption(
    "Per check: share of the calls it ran on that it flagged. Where the `llm_judge` check also read a call, "
    "“precision vs judge” is the share of this check's flags the judge confirmed (Wilson 95% interval): an "
    "estimate of how often a flag of this check is right on this traffic; “recall vs judge” the share of the "
    "judge's flags this check raised too. The service filter does not apply to this table."
)

st.subheader("LLM judge")
today = filters.now().replace(hour=0, minute=0, second=0, microsecond=0)
budget = queries.judge_budget(client, db, today)
if budget.empty:
    st.info(
        "The `llm_judge` check has not run today (it is off by default: list `llm_judge` in "
        "CUTOVER_HALLUCINATION_CHECKS, see docs/llm-judge.md). Without it, how often a lexical flag is right "
        "on this traffic is unknown."
    )
for judge in budget.itertuples():
    tiles = st.columns(4)
    tiles[0].metric("judge spend today", f"${judge.spent_usd:,.4f}", help=f"budget ${judge.budget_usd:,.2f}/day (UTC)")
    tiles[1].metric("judge requests today", f"{int(judge.requests or 0):,}", help=f"judge model {judge.judge_model}")
    tiles[2].metric("failed judge requests", f"{int(judge.failed or 0):,}", help="after retries; counted, never fatal")
    tiles[3].metric("skipped: budget spent", f"{int(judge.skipped_budget):,}")
    if pd.notna(judge.exhausted_at):
        st.warning(
            f"The judge's daily budget is spent (${judge.spent_usd:,.4f} of ${judge.budget_usd:,.2f}): it stopped "
            f"judging at {pd.Timestamp(judge.exhausted_at):%H:%M} UTC and resumes at midnight UTC "
            "(CUTOVER_JUDGE_DAILY_BUDGET_USD).",
            icon=":material/money_off:",
        )
st.caption(
    "The judge's own tokens and cost are stored apart (`judge_usage`) and are not part of the application's "
    "spend on the Cost page."
)

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
