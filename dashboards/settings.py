"""Settings of the Streamlit dashboard (`cutover dashboard`)."""

from __future__ import annotations

from pydantic import Field

from cutover.budget import BudgetSettings


class DashboardSettings(BudgetSettings):  # the budget lines use the processor's budget
    dashboard_host: str = Field(default="127.0.0.1", description="Address the dashboard listens on.")
    dashboard_port: int = Field(default=8501, ge=1, le=65535, description="Port the dashboard listens on.")
    dashboard_refresh_s: int = Field(
        default=10,
        ge=1,
        le=3600,
        description="Seconds between in-place refreshes of the Overview tiles and charts and of the data-freshness line.",
    )
    dashboard_stale_after_s: int = Field(
        default=120,
        ge=10,
        le=86_400,
        description="Seconds without a new call after which every dashboard page warns that the data is not live.",
    )
    dashboard_sql_row_limit: int = Field(
        default=10_000, ge=1, le=1_000_000, description="Most rows the SQL explorer returns for one query."
    )
    dashboard_sql_timeout_s: int = Field(
        default=30, ge=1, le=3600, description="ClickHouse max_execution_time of one SQL explorer query, in seconds."
    )
    dashboard_shadow_max_pairs: int = Field(
        default=50_000, ge=100, le=5_000_000, description="Most recent shadow pairs the Shadow page compares."
    )
    dashboard_agent_api: bool = Field(
        default=False, description="Serve Streamlit's agent API (page contents as JSON) next to the app."
    )
