"""Settings of `cutover process` (env prefix `CUTOVER_`, see README's configuration table)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from cutover.budget import BudgetSettings


class ProcessorSettings(BudgetSettings):
    batch_max_calls: int = Field(
        default=50_000,
        ge=1,
        le=1_000_000,
        description="Write a batch to ClickHouse once it holds this many calls (large batches insert fastest).",
    )
    batch_max_wait_s: float = Field(
        default=0.5,
        gt=0,
        le=60,
        description="Write a batch at the latest this many seconds after its first message: bounds freshness; larger values trade it for throughput (fewer, larger inserts).",
    )
    poll_max_records: int = Field(
        default=2_000, ge=1, le=100_000, description="Kafka messages fetched per consumer poll."
    )
    fetch_max_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=64 * 1024,
        le=512 * 1024 * 1024,
        description="Bytes the consumer asks Kafka for in one fetch (all partitions); fetched data waits in memory until polled. Kafka still returns a larger message whole.",
    )
    partition_fetch_max_bytes: int = Field(
        default=2 * 1024 * 1024,
        ge=64 * 1024,
        le=512 * 1024 * 1024,
        description="Bytes per partition in one fetch (a larger message still comes whole).",
    )
    decode_workers: int = Field(
        default=0,
        ge=0,
        le=16,
        description="Worker processes that decode OTLP and enrich the calls for the processor (0 = in the processor itself). 1 puts a second core to work: the main process keeps Kafka, the ClickHouse writes and the histograms.",
    )
    histogram_interval_s: float = Field(
        default=1.0,
        ge=0,
        le=300,
        description="Recompute latency histograms (in the background; then commit offsets) at most this often; 0 = as soon as the previous recompute is done. Larger values mean fewer recomputes, histograms that far behind the calls, and that many seconds of batches re-read after a crash.",
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
    stats_log_interval_s: float = Field(
        default=60.0,
        gt=0,
        le=86400,
        description="Seconds between two progress lines (counters, lag) in the processor log.",
    )
    stall_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="Rejoin the consumer group when this instance has owned no partitions for this long while partitions of the topic lag with no live consumer; at the next group look (every 5 s) already when the group is stable and names this instance their owner (kafka-python lost its assignment).",
    )
    malloc_trim_interval_s: float = Field(
        default=5.0,
        ge=0,
        le=3600,
        description="Seconds between two returns of glibc malloc's free pages to the system by the processor (0 = never); large buffers go to mmap and back at once.",
    )
    processor_metrics_port: int = Field(
        default=9464,
        ge=0,
        le=65535,
        description="Port of the processor's Prometheus `/metrics` (0 = off).",
    )
    # Enrichment: pricing, hallucination checks, alerts (processors/pricing.py, hallucination/, alerts.py).
    prices_file: Path | None = Field(
        default=None,
        description="Price book YAML (versioned, dated USD per 1M tokens); default: the packaged processors/prices.yaml.",
    )
    logs_join_window_s: float = Field(
        default=600.0,
        gt=0,
        le=86_400,
        description="Seconds a GenAI content log record waits for its call row (and later records of the same call merge into it).",
    )
    logs_join_max_pending: int = Field(
        default=100_000,
        ge=100,
        le=10_000_000,
        description="Calls whose log content the processor holds at most; beyond it the oldest are dropped and counted.",
    )
    logs_join_max_pending_mb: int = Field(
        default=32,
        ge=1,
        le=100_000,
        description="MB of log content (texts, ~1 KB more per call) the processor holds at most; beyond it the oldest calls are dropped and counted.",
    )
    logs_join_interval_s: float = Field(
        default=2.0, gt=0, le=300, description="Seconds between two joins of received log content onto call rows."
    )
    price_fallback: bool = Field(
        default=True,
        description="Price models the price book lacks from the genai-prices database (its historic list prices).",
    )
    model_timeouts: str = Field(
        default="",
        description="Client timeouts in seconds per model family, e.g. `gpt-5.4=30,gpt-5.5=45`; p99 above it alerts.",
    )
    default_timeout_s: float = Field(
        default=60.0, gt=0, le=3600, description="Timeout in seconds of models not listed in CUTOVER_MODEL_TIMEOUTS."
    )
    alert_window_minutes: int = Field(
        default=15, ge=1, le=1440, description="Window of the p99 and refusal/error-rate alert rules, in minutes."
    )
    alert_min_calls: int = Field(
        default=100,
        ge=10,
        le=1_000_000,
        description="Fewest calls per model in the window before a p99 or rate alert can fire.",
    )
    alert_rate_z: float = Field(
        default=3.0,
        gt=0,
        le=20,
        description="z score (two-proportion test) above which a model's refusal or error rate is called higher than the other's.",
    )
    alert_rate_min_diff: float = Field(
        default=0.02, ge=0, le=1, description="Smallest absolute rate difference (0.02 = 2 points) worth an alert."
    )
    alert_repeat_minutes: int = Field(
        default=60,
        ge=1,
        le=10080,
        description="A p99 or rate alert that persists is recorded and logged again after this many minutes.",
    )
    alert_webhooks: str = Field(
        default="",
        description="Where each new alert is also sent: comma-separated `kind=url`, kind `slack` (Slack-compatible "
        "JSON) or `alertmanager` (Prometheus Alertmanager API v2), e.g. `slack=https://hooks.slack.com/services/...`.",
    )
    alert_webhook_attempts: int = Field(
        default=5, ge=1, le=20, description="Attempts per alert and webhook (connection errors, 429 and 5xx retry)."
    )
    alert_webhook_timeout_s: float = Field(
        default=10.0, gt=0, le=120, description="Seconds one webhook request may take."
    )
    alert_webhook_max_backoff_s: float = Field(
        default=30.0,
        gt=0,
        le=600,
        description="Longest wait between two attempts of a webhook (backoff doubles up to it).",
    )
    hallucination_checks: str = Field(
        default="context_grounding,unsupported_facts,reference_mismatch,shadow_disagreement",
        description="Comma-separated hallucination checks to run; `embedding_similarity` needs the [embeddings] extra.",
    )
    hallucination_flag_score: float = Field(
        default=0.5, gt=0, lt=1, description="A hallucination check flags a call when its score (0..1) reaches this."
    )
    hallucination_queue_size: int = Field(
        default=20_000,
        ge=100,
        le=10_000_000,
        description="Calls waiting for hallucination checks; when full, calls are sampled (rate recorded per row).",
    )
    hallucination_queue_mb: int = Field(
        default=32,
        ge=1,
        le=100_000,
        description="MB of calls (their texts and ~1 KB each) waiting for hallucination checks; when full, calls are sampled as for the queue size.",
    )
    hallucination_batch_size: int = Field(
        default=2_000, ge=1, le=100_000, description="Calls checked and written per hallucination-worker batch."
    )
    # The `llm_judge` check (processors/hallucination/judge.py, docs/llm-judge.md): on when listed in
    # CUTOVER_HALLUCINATION_CHECKS.
    judge_base_url: str = Field(
        default="https://api.openai.com/v1", description="OpenAI-compatible endpoint of the `llm_judge` check."
    )
    judge_model: str = Field(
        default="gpt-4o-mini",
        min_length=1,
        description="Model the `llm_judge` check asks; must be priced in the price book (its spend is budgeted).",
    )
    judge_api_key_env: str = Field(
        default="OPENAI_API_KEY",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Name of the environment variable holding the judge endpoint's API key (the key is never a setting).",
    )
    judge_sample_rate: float = Field(
        default=0.05, gt=0, le=1, description="Share of checked calls (with context or a reference) the judge reads."
    )
    judge_daily_budget_usd: float = Field(
        default=5.0,
        ge=0,
        le=1_000_000,
        description="USD the judge may spend per UTC day (priced with the price book); then it stops until midnight.",
    )
    judge_concurrency: int = Field(default=4, ge=1, le=64, description="Judge requests in flight at once.")
    judge_timeout_s: float = Field(default=30.0, gt=0, le=600, description="Timeout of one judge request, in seconds.")
    judge_max_retries: int = Field(
        default=2, ge=0, le=10, description="Retries (with backoff) of a judge request that failed or timed out."
    )
    judge_queue_size: int = Field(
        default=1_000, ge=1, le=1_000_000, description="Calls waiting for the judge; when full, newer ones are skipped."
    )
    judge_max_evidence_chars: int = Field(
        default=16_000, ge=500, le=1_000_000, description="Context sent to the judge is cut to this many characters."
    )

    @field_validator("prices_file")
    @classmethod
    def _prices(cls, value: Path | None) -> Path | None:
        if value is None:
            return value
        from pydantic import ValidationError

        from processors.pricing import PriceBook

        try:
            PriceBook.load(value)
        except OSError as error:
            raise ValueError(f"cannot read {value}: {error.strerror}") from None
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ValueError(f"{value}: {where}: {first['msg']} ({error.error_count()} problem(s))") from None
        except Exception as error:
            raise ValueError(f"{value}: {type(error).__name__}: {str(error).splitlines()[0]}") from None
        return value

    @field_validator("model_timeouts")
    @classmethod
    def _timeouts(cls, value: str) -> str:
        for item in filter(None, (part.strip() for part in value.split(","))):
            model, _, seconds = item.partition("=")
            try:
                ok = bool(model.strip()) and float(seconds) > 0
            except ValueError:
                ok = False
            if not ok:
                raise ValueError(f"expected model=seconds[,model=seconds...], got {item!r}")
        return value

    @field_validator("alert_webhooks")
    @classmethod
    def _webhooks(cls, value: str) -> str:
        from processors.alert_delivery import parse_webhooks

        parse_webhooks(value)
        return value

    @field_validator("hallucination_checks")
    @classmethod
    def _checks(cls, value: str) -> str:
        from processors.hallucination.registry import CHECK_NAMES

        unknown = [name for name in split_names(value) if name not in CHECK_NAMES]
        if unknown:
            raise ValueError(f"unknown check(s) {', '.join(unknown)}; known: {', '.join(CHECK_NAMES)}")
        return value

    @model_validator(mode="after")
    def _judge_ready(self) -> ProcessorSettings:
        """The `llm_judge` check fails at start, in one line, rather than on its first call."""
        if "llm_judge" not in self.hallucination_check_names:
            return self
        from processors.pricing import PriceBook

        if PriceBook.load(self.prices_file).family(self.judge_model) is None:
            raise ValueError(
                f"CUTOVER_JUDGE_MODEL={self.judge_model!r} has no price in the price book, so the judge's daily "
                "budget cannot be enforced: add it to CUTOVER_PRICES_FILE or pick a priced model"
            )
        if not os.environ.get(self.judge_api_key_env):
            raise ValueError(
                f"llm_judge needs an API key in ${self.judge_api_key_env} (CUTOVER_JUDGE_API_KEY_ENV names the variable)"
            )
        return self

    @property
    def model_timeouts_s(self) -> dict[str, float]:
        pairs = (item.partition("=") for item in split_names(self.model_timeouts))
        return {model.strip().lower(): float(seconds) for model, _, seconds in pairs}

    @property
    def hallucination_check_names(self) -> list[str]:
        return split_names(self.hallucination_checks)


def split_names(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]
