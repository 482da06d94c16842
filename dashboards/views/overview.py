"""Overview: live per-model tiles, refreshed in place; B's tiles show the change against A."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboards import context, filters, queries, stats

st.title("Overview")


def _tiles(summary: pd.DataFrame, latency: pd.DataFrame, f: queries.Filters) -> pd.DataFrame:
    """One row per model with every tile's number."""
    rows = []
    lat = {row.model: row for row in latency.itertuples()}
    for row in summary.itertuples():
        hist = lat.get(row.model)
        p50, p95, p99 = stats.percentiles(hist.buckets, hist.zero_count) if hist is not None else (None, None, None)
        rows.append(
            {
                "model": row.model,
                "calls": int(row.calls),
                "calls_per_min": row.calls / f.minutes,
                "p50_ms": p50,
                "p95_ms": p95,
                "p99_ms": p99,
                "error_rate": row.errors / row.calls,
                "refusal_rate": row.refusals / row.calls,
                "flag_rate": row.flagged / row.checked if row.checked else None,
                "checked": int(row.checked),
                "cost_per_hour": row.spend_usd / (f.minutes / 60),
                "unpriced": int(row.unpriced),
                "tokens_per_call": (row.input_tokens + row.output_tokens) / row.calls,
            }
        )
    return pd.DataFrame(rows)


def _delta(b: float | None, a: float | None, scale: float = 1.0, unit: str = "") -> str | None:
    if a is None or b is None or pd.isna(a) or pd.isna(b):
        return None
    return f"{(b - a) * scale:+,.2f}{unit} vs A"


def _model_tiles(t: dict, base: dict | None) -> None:
    g = (lambda key: base.get(key)) if base else (lambda key: None)
    with st.container(border=True):
        role = " (B)" if base else ""
        st.subheader(f"{t['model']}{role}")
        c = st.columns(4)
        c[0].metric("calls/min", f"{t['calls_per_min']:,.1f}", _delta(t["calls_per_min"], g("calls_per_min")), delta_color="off")
        c[1].metric("p50 latency", context.ms(t["p50_ms"]), _delta(t["p50_ms"], g("p50_ms"), unit=" ms"), delta_color="inverse")
        c[2].metric("p95 latency", context.ms(t["p95_ms"]), _delta(t["p95_ms"], g("p95_ms"), unit=" ms"), delta_color="inverse")
        c[3].metric("p99 latency", context.ms(t["p99_ms"]), _delta(t["p99_ms"], g("p99_ms"), unit=" ms"), delta_color="inverse")
        c = st.columns(4)
        c[0].metric("error %", context.pct(t["error_rate"]), _delta(t["error_rate"], g("error_rate"), 100, " pt"), delta_color="inverse")
        c[1].metric("refusal %", context.pct(t["refusal_rate"]), _delta(t["refusal_rate"], g("refusal_rate"), 100, " pt"), delta_color="inverse")
        c[2].metric(
            "hallucination-flag %",
            context.pct(t["flag_rate"]),
            _delta(t["flag_rate"], g("flag_rate"), 100, " pt"),
            delta_color="inverse",
            help=f"flagged / checked; {t['checked']:,} calls checked",
        )
        c[3].metric("tokens/call", f"{t['tokens_per_call']:,.0f}", _delta(t["tokens_per_call"], g("tokens_per_call")), delta_color="inverse")
        c = st.columns(4)
        c[0].metric("cost/hour", context.usd(t["cost_per_hour"]), _delta(t["cost_per_hour"], g("cost_per_hour"), unit=" $"), delta_color="inverse")
        c[1].metric("unpriced calls", f"{t['unpriced']:,}", help="calls without a price: not in the cost numbers")
        c[2].metric("calls", f"{t['calls']:,}")


@st.fragment(run_every=context.settings().dashboard_refresh_s)
def live() -> None:
    f = filters.current()
    client, db = context.client(), context.database()
    summary = queries.model_summary(client, db, f)
    if summary.empty:
        context.no_data()
        return
    tiles = _tiles(summary, queries.merged_buckets(client, db, f, "latency_ms"), f)
    unpriced = int(tiles["unpriced"].sum())
    st.caption(
        f"{f.start:%Y-%m-%d %H:%M} to {f.end:%H:%M} UTC, refreshed every {context.settings().dashboard_refresh_s} s · "
        f"{int(tiles['calls'].sum()):,} calls · {unpriced:,} unpriced"
    )
    if unpriced:
        st.warning(f"{unpriced:,} calls have no price (unknown model or price table): cost tiles leave them out.")
    by_model = {t["model"]: t for t in tiles.to_dict("records")}
    a, b = filters.pair()
    order = [m for m in (a, b) if m in by_model] + [m for m in by_model if m not in (a, b)]
    left, right = st.columns(2)
    for i, model in enumerate(order):
        with (left if i % 2 == 0 else right):
            base = by_model[a] if (model == b and a in by_model and a != b) else None
            _model_tiles(by_model[model], base)


live()
