"""The sidebar: time range, service/task/model filters and the A-vs-B model pair, shared by all pages."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pandas as pd
import streamlit as st

from dashboards import context, queries
from dashboards.queries import Filters

PRESETS = {
    "Last 15 minutes": timedelta(minutes=15),
    "Last hour": timedelta(hours=1),
    "Last 6 hours": timedelta(hours=6),
    "Last 24 hours": timedelta(hours=24),
    "Last 7 days": timedelta(days=7),
    "Last 30 days": timedelta(days=30),
    "Custom": None,
}


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _ceil_minute(moment: datetime) -> datetime:
    floor = moment.replace(second=0, microsecond=0)
    return floor if floor == moment else floor + timedelta(minutes=1)


def time_range() -> tuple[datetime, datetime]:
    """The selected range as whole UTC minutes (histograms are per minute); relative presets move with now."""
    preset = st.session_state.get("range", "Last 24 hours")
    span = PRESETS.get(preset)
    if span is not None:
        end = _ceil_minute(now())
        return end - span, end
    day = st.session_state.get("custom_day", now().date())
    start = datetime.combine(day, st.session_state.get("custom_from", time(0, 0)))
    end = datetime.combine(day, st.session_state.get("custom_to", time(23, 59)))
    end = _ceil_minute(end if end > start else start + timedelta(minutes=1))
    return start.replace(second=0, microsecond=0), end


def _dimensions(start: datetime, end: datetime) -> pd.DataFrame:
    return queries.dimensions(context.client(), context.database(), start, end)


def sidebar() -> None:
    """Draw the filters; pages read them back with `current()`."""
    with st.sidebar:
        st.selectbox("Time range (UTC)", list(PRESETS), index=3, key="range")
        if st.session_state["range"] == "Custom":
            st.date_input("Day", value=now().date() - timedelta(days=1), key="custom_day", max_value=date.today())
            left, right = st.columns(2)
            left.time_input("From", value=time(13, 30), key="custom_from", step=300)
            right.time_input("To", value=time(14, 30), key="custom_to", step=300)
        start, end = time_range()
        st.caption(f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC")
        dims = _dimensions(start, end)
        by_model = dims.groupby("model")["calls"].sum().sort_values(ascending=False)
        models = list(by_model.index)
        st.multiselect("Services", sorted(dims["service"].unique()), key="services", placeholder="all services")
        st.multiselect("Tasks", sorted(dims["task"].unique()), key="tasks", placeholder="all tasks")
        st.multiselect("Models", models, key="models", placeholder="all models")
        st.divider()
        st.caption("A vs B: the two busiest models unless you pick others")
        left, right = st.columns(2)
        left.selectbox("A (baseline)", models, index=0 if models else None, key="model_a")
        right.selectbox("B (candidate)", models, index=1 if len(models) > 1 else None, key="model_b")
        st.caption(f"ClickHouse: `{context.database()}` on `{context.settings().clickhouse_dsn}`")


def current() -> Filters:
    start, end = time_range()
    return Filters(
        start=start,
        end=end,
        services=tuple(st.session_state.get("services") or ()),
        tasks=tuple(st.session_state.get("tasks") or ()),
        models=tuple(st.session_state.get("models") or ()),
    )


def pair() -> tuple[str | None, str | None]:
    """The A (baseline) and B (candidate) models."""
    return st.session_state.get("model_a"), st.session_state.get("model_b")


def grain_minutes(f: Filters) -> int:
    """A time bucket that gives a readable number of points for the range."""
    for limit, grain in ((120, 1), (720, 5), (2880, 15), (11520, 60)):
        if f.minutes <= limit:
            return grain
    return 360
