"""Shadow comparison: paired deltas (shadow - primary) of latency, tokens and cost, agreement, and a verdict."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from cutover import agreement as agreement_of
from dashboards import context, filters, queries, stats
from dashboards.pair_agreement import PAIRS as AGREEMENT_PAIRS  # the readiness scorecard keeps the same bound

st.title("Shadow comparison")
f = filters.current()
settings = context.settings()
pairs = queries.shadow_pairs(context.client(), context.database(), f, settings.dashboard_shadow_max_pairs)
if pairs.empty:
    context.no_data(
        "shadow pairs",
        "Pairs come from shadow mirroring (a sampled copy of each call sent to the candidate model): is it on in the app? ",
    )
    st.stop()

combos = pairs.groupby(["primary_model", "shadow_model"]).size().sort_values(ascending=False)
labels = [f"{p} → {s}" for p, s in combos.index]
a, b = filters.pair()
default = labels.index(f"{a} → {b}") if f"{a} → {b}" in labels else 0
choice = st.selectbox("Primary → shadow", labels, index=default, key="shadow_combo")
primary_model, shadow_model = combos.index[labels.index(choice)]
p = pairs[(pairs["primary_model"] == primary_model) & (pairs["shadow_model"] == shadow_model)]
if len(p) == settings.dashboard_shadow_max_pairs:
    st.caption(f"The newest {len(p):,} pairs (CUTOVER_DASHBOARD_SHADOW_MAX_PAIRS).")

answered = p[(p["primary_outcome"] != "error") & (p["shadow_outcome"] != "error")]
latency_p95 = stats.quantile_delta(answered["primary_latency_ms"].to_numpy(), answered["shadow_latency_ms"].to_numpy())
latency_mean = stats.mean_delta(answered["primary_latency_ms"].to_numpy(), answered["shadow_latency_ms"].to_numpy())
tokens = stats.mean_delta(answered["primary_tokens"].to_numpy(), answered["shadow_tokens"].to_numpy())
priced = p.dropna(subset=["primary_cost_usd", "shadow_cost_usd"])
cost = stats.mean_delta(priced["primary_cost_usd"].to_numpy(), priced["shadow_cost_usd"].to_numpy())
both_text = (p["primary_captured"] == 1) & (p["shadow_captured"] == 1) & (p["primary_outcome"] == "answer")
# Agreement reads both answers: judged on the newest AGREEMENT_PAIRS pairs (a ±2-point 95% interval at most),
# so a page render stays within a second or two however many pairs the range holds.
judged_pairs = p.head(AGREEMENT_PAIRS)
texts = queries.shadow_pair_texts(
    context.client(), context.database(), f, primary_model, shadow_model, AGREEMENT_PAIRS
).set_index("shadow_pair_id")
captured = both_text.loc[judged_pairs.index]
verdicts = [
    agreement_of.pair_agrees(
        row.primary_outcome,
        row.shadow_outcome,
        texts.at[row.shadow_pair_id, "primary_text"] if ok and row.shadow_pair_id in texts.index else None,
        texts.at[row.shadow_pair_id, "shadow_text"] if ok and row.shadow_pair_id in texts.index else None,
    )
    for row, ok in zip(judged_pairs.itertuples(), captured, strict=True)
]
agree = pd.Series([v.agree for v in verdicts], index=judged_pairs.index, dtype=bool)
agreement = stats.rate(int(agree.sum()), len(judged_pairs))


def ci_words(d: stats.Delta, unit: str, digits: int = 0, prefix: str = "") -> str:
    return f"95% CI {prefix}{d.low:,.{digits}f} to {prefix}{d.high:,.{digits}f}{unit}"


def verdict() -> str:
    parts = []
    if latency_p95 is not None:
        if latency_p95.low > 0 or latency_p95.high < 0:
            word = "slower" if latency_p95.estimate > 0 else "faster"
            parts.append(
                f"{shadow_model} is {abs(latency_p95.estimate):,.0f} ms {word} at p95 ({ci_words(latency_p95, ' ms')})"
            )
        else:
            parts.append(
                f"{shadow_model} shows no clear p95 latency difference ({latency_p95.estimate:+,.0f} ms, {ci_words(latency_p95, ' ms')})"
            )
    if cost is not None:
        word = "more" if cost.estimate > 0 else "less"
        parts.append(f"costs ${abs(cost.estimate):,.5f} {word} per call ({ci_words(cost, '', 5, '$')})")
    if agreement is not None:
        newest = f" (the newest {len(judged_pairs):,})" if len(judged_pairs) < len(p) else ""
        parts.append(f"agrees with {primary_model} on {agreement.estimate:.1%} of pairs{newest}")
    return ", ".join(parts) + f", on {len(p):,} pairs."


st.success(verdict(), icon=":material/gavel:")
cols = st.columns(4)
if latency_p95:
    cols[0].metric(
        "p95 latency Δ",
        f"{latency_p95.estimate:+,.0f} ms",
        help=f"{ci_words(latency_p95, ' ms')}, paired bootstrap, {latency_p95.n:,} pairs where neither call failed",
    )
if latency_mean:
    cols[1].metric(
        "mean latency Δ",
        f"{latency_mean.estimate:+,.0f} ms",
        help=f"{ci_words(latency_mean, ' ms')}, normal approximation",
    )
if tokens:
    cols[2].metric(
        "tokens/call Δ", f"{tokens.estimate:+,.0f}", help=f"{ci_words(tokens, ' tokens')}, normal approximation"
    )
if agreement:
    cols[3].metric(
        "agreement",
        context.pct(agreement.estimate, 1),
        help=f"95% CI {context.pct(agreement.low, 1)} to {context.pct(agreement.high, 1)} (Wilson), "
        f"newest {len(judged_pairs):,} pairs",
    )
st.caption("Δ = shadow − primary on the same request. " + agreement_of.DEFINITION)
disagreed = [(row, v) for row, v in zip(judged_pairs.itertuples(), verdicts, strict=True) if not v.agree]
if disagreed:
    with st.expander(f"Why {len(disagreed):,} pairs disagree"):
        st.dataframe(
            pd.DataFrame(
                [
                    {"last seen": row.last_seen, "pair": row.shadow_pair_id, "why": v.reason, "overlap": v.similarity}
                    for row, v in disagreed[:500]
                ]
            ),
            hide_index=True,
            width="stretch",
        )

intervals = pd.DataFrame(
    [
        {"metric": name, "estimate": d.estimate, "low": d.low, "high": d.high}
        for name, d in (
            ("p95 latency Δ (ms)", latency_p95),
            ("mean latency Δ (ms)", latency_mean),
            ("tokens/call Δ", tokens),
            ("cost/call Δ (USD)", cost),
        )
        if d is not None
    ]
)
left, right = st.columns(2)
with left:
    st.subheader("Per-pair latency difference")
    deltas = pd.DataFrame({"delta_ms": (answered["shadow_latency_ms"] - answered["primary_latency_ms"]).to_numpy()})
    st.altair_chart(
        alt.Chart(deltas)
        .mark_bar()
        .encode(
            alt.X("delta_ms:Q", bin=alt.Bin(maxbins=60), title="shadow − primary latency (ms)"),
            alt.Y("count():Q", title="pairs"),
        ),
        width="stretch",
    )
with right:
    st.subheader("Deltas with 95% intervals")
    zero = alt.Chart(pd.DataFrame({"x": [0]})).mark_rule(color="gray").encode(x="x:Q")
    # One row per metric: their units differ, so each gets its own x axis.
    rows = []
    for metric in intervals["metric"]:
        one = alt.Chart(intervals[intervals["metric"] == metric])
        rows.append(
            alt.layer(
                one.mark_rule(strokeWidth=3).encode(alt.X("low:Q", title=metric), alt.X2("high:Q")),
                one.mark_point(filled=True, size=80).encode(alt.X("estimate:Q"), tooltip=["estimate", "low", "high"]),
                zero,
            ).properties(height=40, width=500)
        )
    if rows:
        st.altair_chart(alt.vconcat(*rows))
outcomes = p.groupby(["primary_outcome", "shadow_outcome"]).size().reset_index(name="pairs")
st.subheader("Outcomes, primary vs shadow")
st.altair_chart(
    alt.Chart(outcomes)
    .mark_rect()
    .encode(
        alt.X("shadow_outcome:N", title=f"shadow ({shadow_model})"),
        alt.Y("primary_outcome:N", title=f"primary ({primary_model})"),
        alt.Color("pairs:Q", scale=alt.Scale(type="log")),
        tooltip=["primary_outcome", "shadow_outcome", "pairs"],
    )
    + alt.Chart(outcomes)
    .mark_text(fontWeight="bold")
    .encode(
        x="shadow_outcome:N",
        y="primary_outcome:N",
        text="pairs:Q",
        color=alt.condition(alt.datum.pairs > outcomes["pairs"].max() ** 0.5, alt.value("white"), alt.value("black")),
    ),
    width="stretch",
)
