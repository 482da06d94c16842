"""Settings of `cutover process` (env prefix `CUTOVER_`, see README's configuration table)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cutover.settings import CutoverSettings


class ProcessorSettings(CutoverSettings):
    batch_max_calls: int = Field(
        default=50_000,
        ge=1,
        le=1_000_000,
        description="Write a batch to ClickHouse once it holds this many calls (large batches insert fastest).",
    )
    batch_max_wait_s: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="Write a batch at the latest this many seconds after its first message (bounds freshness).",
    )
    poll_max_records: int = Field(
        default=2_000, ge=1, le=100_000, description="Kafka messages fetched per consumer poll."
    )
    retention_days: int = Field(
        default=90,
        ge=0,
        le=3650,
        description="Days ClickHouse keeps calls, flags and histograms (TTL); 0 keeps them forever.",
    )
    alert_interval_s: float = Field(
        default=30.0, gt=0, le=3600, description="Seconds between two evaluations of the alert rules."
    )
    retry_max_backoff_s: float = Field(
        default=30.0,
        gt=0,
        le=600,
        description="Longest wait between two attempts when ClickHouse or the DLQ is unavailable (backoff doubles up to it).",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Log level of `cutover process` (logs go to stderr)."
    )
