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
    # --- cutover decisions: the Overview's comparisons and the Readiness page (issue 12) ---
    dashboard_compare_min_calls: int = Field(
        default=200,
        ge=1,
        le=10_000_000,
        description="Fewest calls a model needs in the range before its Overview tiles are compared with A's; "
        "below it the tiles carry a 'too few calls' marker.",
    )
    dashboard_scorecard_min_pairs: int = Field(
        default=200,
        ge=20,
        le=10_000_000,
        description="Fewest shadow pairs a task (or service) needs before the scorecard gives a verdict or the "
        "projection projects it; below it: hold.",
    )
    dashboard_scorecard_max_p95_increase: float = Field(
        default=0.10,
        ge=0,
        le=10,
        description="Scorecard: most the candidate's p95 latency may exceed the primary's on the same requests, "
        "as a fraction (0.10 = 10% slower).",
    )
    dashboard_scorecard_max_error_increase: float = Field(
        default=0.005,
        ge=0,
        le=1,
        description="Scorecard: most the candidate's error rate may exceed the primary's, as a fraction of calls "
        "(0.005 = half a percentage point).",
    )
    dashboard_scorecard_max_timeout_increase: float = Field(
        default=0.005,
        ge=0,
        le=1,
        description="Scorecard: most the candidate's timeout rate may exceed the primary's, as a fraction of calls.",
    )
    dashboard_scorecard_max_refusal_increase: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="Scorecard: most the candidate's refusal rate may exceed the primary's, as a fraction of calls "
        "(0.01 = one percentage point).",
    )
    dashboard_scorecard_max_flag_increase: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="Scorecard: most the candidate's hallucination-flag rate (flagged / checked) may exceed the "
        "primary's, as a fraction.",
    )
    dashboard_scorecard_min_agreement: float = Field(
        default=0.90,
        ge=0,
        le=1,
        description="Scorecard: least share of pairs in which the two models agree (cutover/agreement.py: same "
        "outcome and, where both answers were captured, no conflicting facts and enough shared content).",
    )
    dashboard_scorecard_max_cost_increase: float = Field(
        default=0.60,
        ge=0,
        le=100,
        description="Scorecard: most the candidate's cost per call may exceed the primary's on the same requests, "
        "as a fraction (0.60 = 60% dearer, the top of the brief's 20-60% range).",
    )
    dashboard_timeout_target: float = Field(
        default=0.995,
        gt=0.5,
        lt=1,
        description="Readiness page: the success rate the recommended timeout lets finish, and the share the "
        "projection's timeout column is read against.",
    )
