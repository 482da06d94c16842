"""Overview: live per-model tiles and per-minute charts, refreshed in place; B's tiles show the change against A."""

from __future__ import annotations

from datetime import datetime, timedelta

import altair as alt
import pandas as pd
import streamlit as st
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from dashboards import context, filters, queries, stats, timeseries

st.title("Overview")


def traffic_minutes(first_call: object, f: queries.Filters) -> float:
    """Minutes of the range with traffic: from the model's first call in it to the range's end (or now)."""
    first = pd.Timestamp(first_call)
    first = first.tz_convert(None) if first.tzinfo else first
    start: datetime = max(first.to_pydatetime(), f.start)
    return max((min(f.end, filters.now()) - start).total_seconds() / 60, 1.0)


def _tiles(summary: pd.DataFrame, latency: pd.DataFrame, f: queries.Filters) -> pd.DataFrame:
    """One row per model with every tile's number."""
    rows = []
    lat = {row.model: row for row in latency.itertuples()}
    every = int(summary["calls"].sum())
    for row in summary.itertuples():
        hist = lat.get(row.model)
        p50, p95, p99 = stats.percentiles(hist.buckets, hist.zero_count) if hist is not None else (None, None, None)
        minutes = traffic_minutes(row.first_call, f)
        priced = row.calls - row.unpriced
        rows.append(
            {
                "model": row.model,
                "calls": int(row.calls),
                "shadow_calls": int(row.shadow_calls),
                "share": row.calls / every,
                "minutes": minutes,
                "calls_per_min": row.calls / minutes,
                "p50_ms": p50,
                "p95_ms": p95,
                "p99_ms": p99,
                "error_rate": row.errors / row.calls,
                "refusal_rate": row.refusals / row.calls,
                "flag_rate": row.flagged / row.checked if row.checked else None,
                "checked": int(row.checked),
                "cost_per_call": row.spend_usd / priced if priced else None,
                "cost_per_hour": row.spend_usd / (minutes / 60) if priced else None,
                "unpriced": int(row.unpriced),
                "tokens_per_call": (row.input_tokens + row.output_tokens) / row.calls,
            }
        )
    return pd.DataFrame(rows)


def _delta(b: float | None, a: float | None, fmt: str) -> str | None:
    """B minus A in the tile's unit; None (no delta shown) when either side is unknown."""
    if a is None or b is None or pd.isna(a) or pd.isna(b):
        return None
    return fmt.format(b - a)


def _model_tiles(t: dict, base: dict | None) -> None:
    least = context.settings().dashboard_compare_min_calls
    few = base is not None and min(t["calls"], base["calls"]) < least

    def d(key: str, fmt: str) -> str | None:
        return _delta(t[key], base[key], fmt) if base and not few else None

    with st.container(border=True):
        st.subheader(f"{t['model']}{' (B)' if base else ''}")
        if few:
            st.warning(
                f"Too few calls to compare with {base['model']} (fewer than {least:,} on one side, "  # type: ignore[index]
                "CUTOVER_DASHBOARD_COMPARE_MIN_CALLS): no deltas shown.",
                icon=":material/scale:",
            )
        c = st.columns(3)
        c[0].metric(
            "calls/min",
            f"{t['calls_per_min']:,.1f}",
            help=f"calls ÷ the {t['minutes']:,.1f} minutes with its traffic (from its first call in the range to the "
            "range's end or now), not the whole range; the chart below shows each minute",
        )
        c[1].metric("calls", f"{t['calls']:,}")
        c[2].metric(
            "traffic share",
            context.pct(t["share"], 1),
            help=f"its share of all calls in the range; {t['shadow_calls']:,} of its calls are shadow copies. "
            "B's tiles compare per call, never totals, so a 10% shadow is not read as a saving",
        )
        c = st.columns(3)
        c[0].metric("p50 latency", context.ms(t["p50_ms"]), d("p50_ms", "{:+,.0f} ms"), delta_color="inverse")
        c[1].metric("p95 latency", context.ms(t["p95_ms"]), d("p95_ms", "{:+,.0f} ms"), delta_color="inverse")
        c[2].metric("p99 latency", context.ms(t["p99_ms"]), d("p99_ms", "{:+,.0f} ms"), delta_color="inverse")
        pt = "{:+.2%}"
        c = st.columns(3)
        c[0].metric("error %", context.pct(t["error_rate"]), d("error_rate", pt), delta_color="inverse")
        c[1].metric("refusal %", context.pct(t["refusal_rate"]), d("refusal_rate", pt), delta_color="inverse")
        c[2].metric(
            "flagged %",
            context.pct(t["flag_rate"]),
            d("flag_rate", pt),
            delta_color="inverse",
            help=f"hallucination flags / calls checked ({t['checked']:,} checked)",
        )
        c = st.columns(3)  # three a row: a dollar figure in a quarter of the tile is cut to "$0.…"
        c[0].metric(
            "cost/call",
            context.usd(t["cost_per_call"]),
            d("cost_per_call", "{:+,.5f} $"),
            delta_color="inverse",
            help="priced spend ÷ priced calls",
        )
        c[1].metric(
            "cost/hour",
            context.usd(t["cost_per_hour"]),
            help="priced spend ÷ the hours with its traffic: its own traffic share, so not compared across models",
        )
        c[2].metric(
            "tokens/call", f"{t['tokens_per_call']:,.0f}", d("tokens_per_call", "{:+,.0f}"), delta_color="inverse"
        )
        c = st.columns(3)
        c[0].metric(
            "unpriced calls", f"{t['unpriced']:,}", help="calls without a price: left out of the cost, never $0"
        )


def _calls_per_minute(calls: pd.DataFrame, f: queries.Filters, grain: int) -> pd.DataFrame:
    """Calls per minute per (time bucket, model), 0 where a model had none. Only whole buckets: the one
    in progress, or one cut by the range's start, would read as a drop in traffic."""
    last = min(f.end, filters.now())
    # Buckets start at multiples of the grain (as toStartOfInterval's), from the first with a call: a store
    # that began mid-range draws no flat zero line before its first call.
    first = max(pd.Timestamp(f.start).ceil(f"{grain}min"), pd.Timestamp(calls["t"].min()))
    times = [
        t
        for t in pd.date_range(first, f.end, freq=f"{grain}min", inclusive="left")
        if t + timedelta(minutes=grain) <= last
    ]
    grid = pd.MultiIndex.from_product([times, sorted(calls["model"].unique())], names=["t", "model"])
    counted = calls.set_index(["t", "model"])["calls"].reindex(grid, fill_value=0)
    return (counted / grain).rename("value").reset_index()


def _charts(client: Client, db: str, f: queries.Filters, models: list[str]) -> None:
    """Calls/min and p95 per time bucket, one line per model, coloured alike in both charts."""
    color = alt.Color("model:N", scale=alt.Scale(domain=models))
    grain = f.grain_minutes
    bucket = "each minute" if grain == 1 else f"each {grain}-minute bucket"
    calls = _calls_per_minute(queries.quality_over_time(client, db, f, grain), f, grain)
    p95 = timeseries.percentiles_over_time(client, db, f, "latency_ms", grain, {"p95": 0.95})
    left, right = st.columns(2)
    with left:
        st.markdown(f"**Calls per minute** ({bucket}; only whole ones)")
        if calls.empty:
            unit = "minute" if grain == 1 else f"{grain}-minute bucket"
            st.info(f"No whole {unit} with calls yet: the first point appears when the first {unit} with calls ends.")
        else:
            st.altair_chart(
                timeseries.line(calls, "calls/min", dash=None, height=220).encode(color=color), width="stretch"
            )
    with right:
        st.markdown(f"**p95 latency** ({bucket}, from the merged histograms)")
        if p95.empty:
            st.info("No latency histograms in this range yet.")
        else:
            chart = timeseries.line(p95, "p95 latency (ms)", dash=None, height=220).encode(color=color)
            st.altair_chart(chart, width="stretch")


@st.fragment(run_every=context.settings().dashboard_refresh_s)
def live() -> None:
    f = filters.current()
    client, db = context.client(), context.database()
    try:  # a fragment rerun is not inside the app's handler
        summary = queries.model_summary(client, db, f)
        if summary.empty:
            context.no_data()
            return
        latency = queries.merged_buckets(client, db, f, "latency_ms")
    except ClickHouseError as error:
        context.store_error(error)
        return
    filters.follow_new_models(summary["model"])
    tiles = _tiles(summary, latency, f)
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
        with left if i % 2 == 0 else right:
            base = by_model[a] if (model == b and a in by_model and a != b) else None
            _model_tiles(by_model[model], base)
    try:
        _charts(client, db, f, order)
    except ClickHouseError as error:
        context.store_error(error)


live()
