"""Cutover readiness: the projection ("if the candidate took X% of this traffic"), the per-task (or
per-service) scorecard with a verdict each, the timeout advisor for one task, and the rollout tracker."""

from __future__ import annotations

from datetime import timedelta

import altair as alt
import pandas as pd
import streamlit as st

from cutover import agreement
from cutover.histogram import bucket_bounds
from dashboards import context, filters, pair_agreement, projection, queries, scorecard, stats

st.title("Cutover readiness")
f = filters.current()
settings = context.settings()
client, db = context.client(), context.database()
pairs = queries.readiness_pairs(client, db, f, settings.dashboard_shadow_max_pairs)
if pairs.empty:
    context.no_data(
        "shadow pairs",
        "The projection and the scorecard compare the same requests on both models: is shadow mirroring on? ",
    )
    st.stop()

combos = pairs.groupby(["primary_model", "shadow_model"]).size().sort_values(ascending=False)
labels = [f"{p} → {s}" for p, s in combos.index]
a, b = filters.pair()
default = labels.index(f"{a} → {b}") if f"{a} → {b}" in labels else 0
left, right = st.columns([2, 1])
choice = left.selectbox("Primary → candidate", labels, index=default, key="readiness_combo")
share = right.slider("Candidate's share of the primary's traffic (%)", 5, 100, 100, step=5, key="readiness_share")
primary, candidate = combos.index[labels.index(choice)]
p = pairs[(pairs["primary_model"] == primary) & (pairs["shadow_model"] == candidate)]
if len(p) == settings.dashboard_shadow_max_pairs:
    st.caption(f"The newest {len(p):,} pairs (CUTOVER_DASHBOARD_SHADOW_MAX_PAIRS).")
least = settings.dashboard_scorecard_min_pairs

# --- projection ---------------------------------------------------------------------------------

st.header("Projection")
volume = queries.serving_volume(client, db, f)
mine = volume[volume["model"] == primary]
first = scorecard.naive(mine["first_call"]).min() if len(mine) else pd.Timestamp(f.start)
window = max((min(f.end, filters.now()) - max(first.to_pydatetime(), f.start)).total_seconds() / 60, 1.0)
tasks = projection.per_task(p, mine, window, share / 100, least)
total = projection.total(tasks)
if total.projected_tasks == 0:
    st.warning(
        f"No task has {least:,} pairs yet (CUTOVER_DASHBOARD_SCORECARD_MIN_PAIRS): nothing is projected. "
        "Widen the time range or let the shadow run longer.",
        icon=":material/hourglass_top:",
    )
else:
    change = total.spend / total.spend_today - 1 if total.spend_today else float("nan")
    skipped = (
        f" {len(total.skipped)} task(s) not projected (too few pairs), kept at today's spend: {', '.join(total.skipped)}."
        if total.skipped
        else ""
    )
    sentence = (
        f"If {candidate} took {share}% of {primary}'s traffic ({total.calls_per_day:,.0f} calls/day at today's task mix), "
        f"spend would be {context.usd(total.spend)}/day ({context.usd(total.spend * projection.MONTH_DAYS)}/month, "
        f"95% CI {context.usd(total.low)} to {context.usd(total.high)}/day), {change:+.1%} against "
        f"{context.usd(total.spend_today)}/day today; refusals {context.pct(total.refusal_today)} → "
        f"{context.pct(total.refusal)}, errors {context.pct(total.error_today)} → {context.pct(total.error)}; "
        f"on {int(tasks['pairs'].sum()):,} pairs.{skipped}"
    )
    st.info(sentence, icon=":material/query_stats:")
shown = tasks.drop(columns=["spend/day low", "spend/day high"])
shown.insert(
    shown.columns.get_loc("spend/day") + 1,
    "spend/day 95% CI",
    [
        "–" if pd.isna(lo) else f"{context.usd(lo)} to {context.usd(hi)}"
        for lo, hi in zip(tasks["spend/day low"], tasks["spend/day high"], strict=True)
    ],
)
formats = {
    "calls/day": "{:,.0f}",
    "pairs": "{:,}",
    "spend/day today": context.usd,
    "spend/day": context.usd,
    "cost Δ/call": "{:+,.5f}",
    "timeout (s)": "{:,.1f}",
    "p95 (ms)": "{:,.0f}",
    "p99 (ms)": "{:,.0f}",
    "over timeout": "{:.2%}",
    "refusal today": "{:.2%}",
    "refusal": "{:.2%}",
    "error today": "{:.2%}",
    "error": "{:.2%}",
}
st.table(
    shown.style.hide(axis="index").format(formats, na_rep="–")
)  # static: readable in a screenshot and pasteable into a change request
st.caption(
    f"Per task: calls/day is {primary}'s served calls (shadow copies left out) over the {window:,.0f} minutes with its "
    f"traffic in the range; spend/day = today's + {share}% × calls/day × the mean paired cost delta (95% CI: normal "
    f"approximation). p95/p99 and 'over timeout' are {candidate}'s on the mirrored requests, against the client timeout "
    f"most of {primary}'s calls of the task ran with. Refusal and error rates move by {share}% of the paired difference. "
    f"A month is {projection.MONTH_DAYS} days."
)

# --- scorecard ----------------------------------------------------------------------------------

st.header("Readiness scorecard")
by = st.radio("Per", ["task", "service"], horizontal=True, key="readiness_by")
p = pair_agreement.judge(p, by, queries.pair_texts(client, db, f, pair_agreement.to_read(p, by)))
cards = scorecard.by_group(p, by, settings)
counts = pd.Series([c.verdict for c in cards]).value_counts()
st.markdown(
    f"**{candidate} vs {primary}**, per {by}: "
    + ", ".join(f"{counts.get(v, 0)} {v}" for v in ("ready", "hold", "regression"))
)


def _verdict_colour(value: object) -> str:
    colour = {"ready": "#d4edda", "hold": "#fff3cd", "regression": "#f8d7da"}.get(str(value))
    return f"background-color: {colour}" if colour else ""


card_table = scorecard.table(cards, by)
st.table(card_table.style.hide(axis="index").map(_verdict_colour, subset=["verdict"]).format({"pairs": "{:,}"}))
s = settings
st.caption(
    "Each cell: ✓ within the limit (the whole 95% interval), ✗ beyond it (the whole interval), ? not yet settled; "
    "candidate minus primary on the same requests [95% interval]. Limits (CUTOVER_DASHBOARD_SCORECARD_*): "
    f"p95 latency ≤ {s.dashboard_scorecard_max_p95_increase:+.0%} (paired bootstrap of the p95 ratio, fast failures "
    f"left out); error rate ≤ {s.dashboard_scorecard_max_error_increase * 100:+.2f} pts, timeout rate ≤ "
    f"{s.dashboard_scorecard_max_timeout_increase * 100:+.2f} pts, refusal rate ≤ "
    f"{s.dashboard_scorecard_max_refusal_increase * 100:+.2f} pts, hallucination-flag rate (flagged / checked) ≤ "
    f"{s.dashboard_scorecard_max_flag_increase * 100:+.2f} pts (Newcomb hybrid score intervals); agreement ≥ "
    f"{s.dashboard_scorecard_min_agreement:.0%} (Wilson); cost per call ≤ "
    f"{s.dashboard_scorecard_max_cost_increase:+.0%} (paired delta method). Ready: every metric within its limit; "
    f"regression: one beyond it; hold: fewer than {least:,} pairs, or an interval still straddling its limit (the pairs "
    "it needs are estimated from the interval's width, which shrinks with the square root of the pairs)."
)
judged = p[p["agree"].notna()]
on_text = int(judged["on_text"].sum())
st.caption(
    f"Agreement is the Shadow page's: {agreement.DEFINITION} Judged on each {by}'s newest "
    f"{pair_agreement.PAIRS:,} pairs: here {on_text:,} pairs on both answers' text and {len(judged) - on_text:,} on "
    "the outcome alone (an answer's text not captured, or a refusal or error on either side)."
)

# --- timeout advisor ----------------------------------------------------------------------------


@st.cache_data(ttl=600, show_spinner=False)
def _past_buckets(database: str, past: queries.Filters) -> pd.DataFrame:
    """A day's or a week's histograms: cached ten minutes, as the month's budget burn is (a minute more of
    history does not move what a timeout would have cut)."""
    return queries.merged_buckets(context.client(), database, past, "latency_ms")


st.header("Timeout advisor")
task_names = sorted(p["task"].unique())
task = st.selectbox("Task", task_names, key="readiness_task")
target = settings.dashboard_timeout_target
one_task = queries.Filters(f.start, f.end, f.services, (task,), (primary, candidate))
merged = queries.merged_buckets(client, db, one_task, "latency_ms")
in_force = queries.timeouts_in_force(client, db, one_task)
curves, marks = [], []
for row in merged.itertuples():
    dist = stats.distribution(row.buckets, row.zero_count)
    curves.append(dist.assign(model=row.model))
    advice = stats.advise_timeout(row.buckets, row.zero_count, target)
    today = in_force[in_force["model"] == row.model]["timeout_s"]
    if len(today) and pd.notna(today.iloc[0]):
        marks.append({"model": row.model, "what": "today's timeout", "ms": float(today.iloc[0]) * 1000})
    if advice is not None:
        marks.append({"model": row.model, "what": f"recommended ({target:.1%})", "ms": advice.timeout_ms})
if curves:
    curve = pd.concat(curves, ignore_index=True)
    lines = (
        alt.Chart(curve)
        .mark_line(interpolate="step-after")
        .encode(
            alt.X("high:Q", title="timeout (ms, log scale)", scale=alt.Scale(type="log")),
            alt.Y("cdf:Q", title="calls that would finish", axis=alt.Axis(format="%"), scale=alt.Scale(zero=False)),
            color="model:N",
            tooltip=["model", alt.Tooltip("high:Q", format=",.0f"), alt.Tooltip("cdf:Q", format=".3%")],
        )
    )
    rules = (
        alt.Chart(pd.DataFrame(marks, columns=["model", "what", "ms"]))
        .mark_rule(strokeWidth=2)
        .encode(
            x="ms:Q",
            color="model:N",
            strokeDash="what:N",
            tooltip=["model", "what", alt.Tooltip("ms:Q", format=",.0f")],
        )
    )
    st.altair_chart((lines + rules).properties(height=280), width="stretch")
    cut_rows = []
    last = min(f.end, filters.now()).replace(second=0, microsecond=0)  # whole minutes: one cache key a minute
    for label, span in (("last day", timedelta(days=1)), ("last week", timedelta(days=7))):
        past = queries.Filters(last - span, last, f.services, (task,), (primary, candidate))
        history = {r.model: r for r in _past_buckets(db, past).itertuples()}
        for mark in marks:
            if not mark["what"].startswith("recommended") or mark["model"] not in history:
                continue
            h = history[mark["model"]]
            above = sum(int(v) for k, v in h.buckets.items() if bucket_bounds(int(k))[1] > mark["ms"])
            total_calls = int(h.zero_count) + sum(int(v) for v in h.buckets.values())
            cut_rows.append(
                {"model": mark["model"], "window": label, "recommended (s)": mark["ms"] / 1000, "calls": total_calls,
                 "it would have cut": above, "cut %": above / total_calls if total_calls else None}
            )  # fmt: skip
    if cut_rows:
        st.table(
            pd.DataFrame(cut_rows)
            .style.hide(axis="index")
            .format({"recommended (s)": "{:,.3f}", "calls": "{:,}", "it would have cut": "{:,}", "cut %": "{:.3%}"})
        )
    st.caption(
        f"Share of {task} calls finished by each timeout (merged histograms; fast failures left out), per model; the "
        f"recommended timeout lets {target:.1%} finish (CUTOVER_DASHBOARD_TIMEOUT_TARGET). 'It would have cut': calls of "
        "the last day and week slower than it (whole histogram buckets, so exact)."
    )

# --- rollout tracker ----------------------------------------------------------------------------

st.header("Rollout tracker")
grain = f.grain_minutes
traffic = queries.traffic_by_role(client, db, queries.Filters(f.start, f.end, f.services, f.tasks), grain)
if not traffic.empty:
    serving = traffic[traffic["role"] != "shadow"].groupby("t")["calls"].transform("sum")
    traffic = traffic.assign(share=0.0)
    traffic.loc[traffic["role"] != "shadow", "share"] = traffic["calls"] / serving
    totals = traffic[traffic["role"] != "shadow"].groupby("t")["calls"].sum()
    mirrored = traffic[traffic["role"] == "shadow"].copy()
    mirrored["share"] = mirrored["calls"] / mirrored["t"].map(totals)
    shares = pd.concat([traffic[traffic["role"] != "shadow"], mirrored], ignore_index=True)
    shares["series"] = shares["model"] + " · " + shares["role"]
    st.altair_chart(
        alt.Chart(shares)
        .mark_line(point=len(shares) < 60)
        .encode(
            alt.X("t:T", title="time (UTC)"),
            alt.Y("share:Q", title="share of served calls", axis=alt.Axis(format="%")),
            color=alt.Color("series:N", title="model · role"),
            tooltip=["t:T", "model", "role", "calls", alt.Tooltip("share:Q", format=".1%")],
        )
        .properties(height=260),
        width="stretch",
    )
    st.caption(
        "Per time bucket: each model's share of the calls served (live: not mirrored; primary: served and mirrored) and, "
        "for shadow, mirrored copies as a share of the calls served. A cutover reads as shadow at 5–10%, then the "
        "candidate's live share rising task by task."
    )
# Three earlier points and now (the table above, not computed twice).
cuts = list(pd.date_range(pd.Timestamp(f.start), pd.Timestamp(f.end), periods=5)[1:-1])
now_row = pd.DataFrame([{"t": pd.Timestamp(f.end), by: c.group, "verdict": c.verdict, "pairs": c.pairs} for c in cards])
history = pd.concat([scorecard.over_time(p, by, cuts, settings), now_row], ignore_index=True)
if not history.empty:
    st.altair_chart(
        alt.Chart(history)
        .mark_rect()
        .encode(
            alt.X("t:O", title="verdict on the pairs up to", timeUnit="yearmonthdatehoursminutes"),
            alt.Y(f"{by}:N", axis=alt.Axis(labelOverlap=False)),
            alt.Color(
                "verdict:N",
                scale=alt.Scale(domain=["ready", "hold", "regression"], range=["#2ca02c", "#f0ad4e", "#d62728"]),
            ),
            tooltip=["t:T", by, "verdict", "pairs"],
        )
        .properties(height=60 + 32 * history[by].nunique()),
        width="stretch",
    )
    st.caption("The scorecard's verdict per " + by + " as it read at each point, on the pairs seen up to it.")
