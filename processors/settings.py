"""Settings of `cutover process` (env prefix `CUTOVER_`, see README's configuration table)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from cutover.budget import BudgetSettings


class ProcessorSettings(BudgetSettings):
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
    decode_workers: int = Field(
        default=0,
        ge=0,
        le=16,
        description="Worker processes that decode OTLP for the processor (0 = decode in the processor itself). 1 puts a second core to work: the main process keeps Kafka, enrichment and the ClickHouse writes.",
    )
    histogram_interval_s: float = Field(
        default=0.0,
        ge=0,
        le=300,
        description="Recompute latency histograms (then commit offsets) at most this often; 0 = after every batch. Try 5 at sustained rates above ~10k calls/s.",
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
    # Enrichment: pricing, hallucination checks, alerts (processors/pricing.py, hallucination/, alerts.py).
    prices_file: Path | None = Field(
        default=None,
        description="Price book YAML (versioned, dated USD per 1M tokens); default: the packaged processors/prices.yaml.",
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
    hallucination_checks: str = Field(
        default="context_grounding,unsupported_facts,reference_mismatch,shadow_disagreement,answer_relevance",
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
    hallucination_batch_size: int = Field(
        default=2_000, ge=1, le=100_000, description="Calls checked and written per hallucination-worker batch."
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

    @field_validator("hallucination_checks")
    @classmethod
    def _checks(cls, value: str) -> str:
        from processors.hallucination.registry import CHECK_NAMES

        unknown = [name for name in split_names(value) if name not in CHECK_NAMES]
        if unknown:
            raise ValueError(f"unknown check(s) {', '.join(unknown)}; known: {', '.join(CHECK_NAMES)}")
        return value

    @property
    def model_timeouts_s(self) -> dict[str, float]:
        pairs = (item.partition("=") for item in split_names(self.model_timeouts))
        return {model.strip().lower(): float(seconds) for model, _, seconds in pairs}

    @property
    def hallucination_check_names(self) -> list[str]:
        return split_names(self.hallucination_checks)


def split_names(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]
