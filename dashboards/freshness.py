"""How old the newest stored call is, on every page: the first thing to check before trusting a number."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pandas as pd
import streamlit as st
from clickhouse_connect.driver.exceptions import ClickHouseError

from dashboards import context, queries

HINT = f"is {context.PROCESSOR} running, and is the application sending spans?"


@dataclass(frozen=True)
class Freshness:
    calls: int
    start_age_s: float | None  # since the newest call started (the application's clock)
    ingest_age_s: float | None  # since the newest row was stored (ClickHouse's clock)
    checked_at: datetime


def read() -> Freshness:
    row = queries.freshness(context.client(), context.database()).iloc[0]
    now = row["now"]

    def age(moment: object) -> float | None:
        return None if pd.isna(moment) else max((now - moment).total_seconds(), 0.0)

    return Freshness(int(row["calls"]), age(row["newest_start"]), age(row["newest_ingested"]), now.to_pydatetime())


def ago(seconds: float) -> str:
    """An age as an SRE reads it: 4 s, 7 min, 2 h 5 min, 3 days."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = int(seconds // 60)
    if minutes < 120:
        return f"{minutes} min"
    hours = minutes // 60
    return f"{hours} h {minutes % 60} min" if hours < 48 else f"{hours // 24} days"


def verdict(fresh: Freshness, stale_after_s: int) -> tuple[str, str]:
    """("live" | "stale" | "behind" | "empty", the sentence to show)."""
    if fresh.calls == 0 or fresh.start_age_s is None:
        return "empty", f"No calls stored yet in `{context.database()}`: {HINT}"
    stored = f", stored {ago(fresh.ingest_age_s)} ago" if fresh.ingest_age_s is not None else ""
    if fresh.start_age_s <= stale_after_s:
        return "live", f"Live: newest call started {ago(fresh.start_age_s)} ago{stored}."
    if fresh.ingest_age_s is not None and fresh.ingest_age_s <= stale_after_s:
        # Rows still arrive, but only old calls: a processor working through a backlog, or late verdicts.
        return "behind", (
            f"Data is {ago(fresh.start_age_s)} behind: rows are still being stored ({ago(fresh.ingest_age_s)} ago) but "
            f"the newest call started {ago(fresh.start_age_s)} ago. Is the processor catching up on a backlog, "
            f"or did the application stop sending spans?"
        )
    return "stale", f"No new calls for {ago(fresh.start_age_s)}{stored}: {HINT}"


@st.fragment(run_every=context.settings().dashboard_refresh_s)
def banner() -> None:
    """One caption while data is live; a plain warning when it is not. Refreshed in place."""
    try:  # a fragment rerun is not inside the app's handler
        fresh = read()
    except ClickHouseError as error:
        context.store_error(error)
        return
    state, text = verdict(fresh, context.settings().dashboard_stale_after_s)
    checked = f" · checked {fresh.checked_at:%H:%M:%S} UTC"
    if state == "live":
        st.caption(f":green[:material/radio_button_checked:] {text}{checked}")
    else:
        st.warning(f"{text}{checked}", icon=":material/sensors_off:")
