"""The sidebar: time range, service/task/model filters and the A-vs-B model pair, shared by all pages."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, time, timedelta

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
# An hour: live rates and tail latencies of now, not averaged over a day of traffic.
DEFAULT_RANGE = "Last hour"


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _ceil_minute(moment: datetime) -> datetime:
    floor = moment.replace(second=0, microsecond=0)
    return floor if floor == moment else floor + timedelta(minutes=1)


def time_range() -> tuple[datetime, datetime]:
    """The selected range as whole UTC minutes (histograms are per minute); relative presets move with now."""
    span = PRESETS.get(st.session_state.get("range", DEFAULT_RANGE))
    if span is not None:
        end = _ceil_minute(now())
        return end - span, end
    start = datetime.combine(st.session_state["from_day"], st.session_state["from_time"]).replace(
        second=0, microsecond=0
    )
    end = _ceil_minute(datetime.combine(st.session_state["to_day"], st.session_state["to_time"]))
    return start, max(end, start + timedelta(minutes=1))


def _range_from_link() -> None:
    """Open the range a shared link names (`?range=Last+hour` or `?from=...&to=...`, ISO UTC) on first load."""
    if "range" in st.session_state:
        return
    link = st.query_params
    try:
        start, end = datetime.fromisoformat(link["from"]), datetime.fromisoformat(link["to"])
    except (KeyError, ValueError):
        if link.get("range") in PRESETS:
            st.session_state["range"] = link["range"]
        return
    st.session_state.update(
        range="Custom", from_day=start.date(), from_time=start.time(), to_day=end.date(), to_time=end.time()
    )


def _custom_range_inputs() -> None:
    # Default custom window: 13:30-14:30 UTC yesterday, the shape of "what happened at 14:00?"
    yesterday = now().date() - timedelta(days=1)
    for key, value in (
        ("from_day", yesterday),
        ("from_time", time(13, 30)),
        ("to_day", yesterday),
        ("to_time", time(14, 30)),
    ):
        st.session_state.setdefault(key, value)
    left, right = st.columns(2)
    left.date_input("From (UTC)", key="from_day")
    right.time_input("at", key="from_time", step=300)
    left, right = st.columns(2)
    left.date_input("To (UTC)", key="to_day")
    right.time_input("at", key="to_time", step=300)


@st.cache_data(ttl=60, show_spinner=False)
def _dimensions(database: str, start: datetime, end: datetime) -> pd.DataFrame:
    """The filter choices; cached a minute so page switches and widget changes do not rescan the range."""
    return queries.dimensions(context.client(), database, start, end)


def _default_pair(models: list[str]) -> None:
    """A and B: the two busiest models until picked. A pick that left the range, or a B still empty
    (a cutover starts with one model), follows the busiest again, so B's deltas appear by themselves."""
    a = st.session_state.get("model_a")
    if a not in models:
        a = st.session_state["model_a"] = models[0] if models else None
    if st.session_state.get("model_b") not in models:
        st.session_state["model_b"] = next((m for m in models if m != a), None)


def sidebar() -> None:
    """Draw the filters; pages read them back with `current()`."""
    with st.sidebar:
        _range_from_link()
        st.session_state.setdefault("range", DEFAULT_RANGE)
        st.selectbox("Time range (UTC)", list(PRESETS), key="range")
        if st.session_state["range"] == "Custom":
            _custom_range_inputs()
        start, end = time_range()
        if st.session_state["range"] == "Custom":
            st.query_params.from_dict({"from": start.isoformat(), "to": end.isoformat()})
        else:
            st.query_params.from_dict({"range": st.session_state["range"]})
        st.caption(f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC · the page link keeps this range")
        dims = _dimensions(context.database(), start, end)
        by_model = dims.groupby("model")["calls"].sum().sort_values(ascending=False)
        models = list(by_model.index)
        st.session_state["listed_models"] = models
        if not models:
            st.info(
                "No calls in this range, so no services, tasks or models to pick yet.", icon=":material/filter_alt_off:"
            )
        st.multiselect("Services", sorted(dims["service"].unique()), key="services", placeholder="all services")
        st.multiselect("Tasks", sorted(dims["task"].unique()), key="tasks", placeholder="all tasks")
        st.multiselect("Models", models, key="models", placeholder="all models")
        st.divider()
        st.caption("A vs B: the two busiest models unless you pick others")
        _default_pair(models)
        left, right = st.columns(2)
        left.selectbox("A (baseline)", models, key="model_a")
        right.selectbox("B (candidate)", models, key="model_b")
        st.caption(f"ClickHouse: `{context.database()}` on `{context.settings().clickhouse_dsn}`")


def follow_new_models(seen: Iterable[str]) -> None:
    """For live fragments, which redraw without the sidebar: a model the sidebar does not list yet
    (the page opened on an empty store, or a cutover's second model just arrived) redraws the
    whole page, so the filters and the A-vs-B pair take it in."""
    if set(seen) - set(st.session_state.get("listed_models", ())):
        _dimensions.clear()
        st.rerun()


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
