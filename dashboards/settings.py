"""Settings of the Streamlit dashboard (`cutover dashboard`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cutover.settings import CutoverSettings


class DashboardSettings(CutoverSettings):
    dashboard_host: str = Field(default="127.0.0.1", description="Address the dashboard listens on.")
    dashboard_port: int = Field(default=8501, ge=1, le=65535, description="Port the dashboard listens on.")
    dashboard_refresh_s: int = Field(
        default=10, ge=1, le=3600, description="Seconds between in-place refreshes of the Overview tiles."
    )
    dashboard_sql_row_limit: int = Field(
        default=10_000, ge=1, le=1_000_000, description="Most rows the SQL explorer returns for one query."
    )
    dashboard_sql_timeout_s: int = Field(
        default=30, ge=1, le=3600, description="ClickHouse max_execution_time of one SQL explorer query, in seconds."
    )
    # The same variables as the processor's budget alerts, so the burn chart and the alerts agree.
    budget_usd: float = Field(
        default=0.0, ge=0, description="Spend budget in USD per budget period; 0 hides the budget lines (shared with the processor)."
    )
    budget_period: Literal["day", "month"] = Field(
        default="month", description="Period the budget covers, UTC calendar day or month (shared with the processor)."
    )
    dashboard_shadow_max_pairs: int = Field(
        default=50_000, ge=100, le=5_000_000, description="Most recent shadow pairs the Shadow page compares."
    )
    dashboard_agent_api: bool = Field(
        default=False, description="Serve Streamlit's agent API (page contents as JSON) next to the app."
    )
