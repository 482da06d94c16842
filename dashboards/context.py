"""What every page needs: the settings, the shared ClickHouse client, and number formatting."""

from __future__ import annotations

import math

import streamlit as st
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError, OperationalError

from cutover.settings import load
from cutover.store import client_for
from dashboards.settings import DashboardSettings

_settings: DashboardSettings | None = None


def use(settings: DashboardSettings) -> None:
    """Make the app use these settings (set by `serve` in the same process)."""
    global _settings
    _settings = settings


def settings() -> DashboardSettings:
    global _settings
    if _settings is None:
        _settings = load(DashboardSettings)
    return _settings


def client() -> Client:
    """The process-wide client: on chDB it is shared with a processor running in this process."""
    return client_for(settings())


def database() -> str:
    return settings().clickhouse_database


# On chdb:// no separate `cutover process` can open the store: the dashboard process runs it.
PROCESSOR = "the processor (`cutover process`, or inside `cutover dashboard` on chdb://)"


def no_data(what: str = "calls", hint: str = "") -> None:
    st.info(
        f"No {what} in this range. {hint}Is {PROCESSOR} running and consuming "
        f"`{settings().spans_topic}`? Widen the time range or clear the filters in the sidebar.",
        icon=":material/hourglass_empty:",
    )


MISSING_CODES = ("Code: 81.", "Code: 60.")  # UNKNOWN_DATABASE, UNKNOWN_TABLE


def store_error(error: ClickHouseError) -> None:
    """Say plainly what is wrong with the store and what to do, instead of a traceback."""
    where = f"`{settings().clickhouse_dsn}`, database `{database()}`"
    first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
    if any(code in str(error) for code in MISSING_CODES):
        st.warning(
            f"No cutover tables in {where} yet: start `cutover process`, which creates them, "
            f"or check `CUTOVER_CLICKHOUSE_DATABASE`.",
            icon=":material/table_view:",
        )
    elif isinstance(error, OperationalError):
        st.error(
            f"ClickHouse at {where} does not answer: {first_line}. Is it running? The page retries on refresh.",
            icon=":material/cloud_off:",
        )
    else:
        st.error(f"ClickHouse error on {where}: {first_line}", icon=":material/error:")


def ms(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.0f} ms"


def pct(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value * 100:.{digits}f}%"


def usd(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"${value:,.4f}" if abs(value) < 1 else f"${value:,.2f}"
