"""Settings of the collectors: instrumentation, the Kafka span exporter and `cutover collect`."""

from __future__ import annotations

from pydantic import Field

from cutover.settings import CutoverSettings


class CollectorSettings(CutoverSettings):
    service_name: str = Field(
        default="llm-app",
        min_length=1,
        description="`service.name` of spans from `collectors.instrument` when the code does not pass one.",
    )
    environment: str = Field(
        default="dev",
        min_length=1,
        description="`deployment.environment.name` of spans from `collectors.instrument` when the code does not pass one.",
    )
    capture_content: bool = Field(
        default=False,
        description="Record prompts, responses, reference answers and RAG context on spans (after the redaction hook).",
    )
    exporter_queue_size: int = Field(
        default=2048,
        ge=1,
        le=1_000_000,
        description="Spans the in-app batch processor holds before it drops (and counts) new ones.",
    )
    exporter_buffer_bytes: int = Field(
        default=32 * 1024 * 1024,
        ge=1024 * 1024,
        description="Bytes of spans handed to Kafka and not yet acknowledged (broker slow or down); beyond it spans are dropped and counted.",
    )
    exporter_schedule_delay_s: float = Field(
        default=0.5,
        gt=0,
        le=60,
        description="Seconds the in-app batch processor waits for a full batch (512 spans) before exporting what it has; bounds freshness at low traffic.",
    )
    exporter_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="Seconds a span batch may wait for Kafka before it counts as dropped; also bounds flush on shutdown.",
    )
    collect_host: str = Field(
        default="127.0.0.1", min_length=1, description="Address `cutover collect` listens on (0.0.0.0 for all)."
    )
    collect_port: int = Field(default=4318, ge=1, le=65535, description="Port of `cutover collect` (OTLP/HTTP).")
    collector_metrics_port: int = Field(
        default=9465, ge=0, le=65535, description="Port of `cutover collect`'s Prometheus `/metrics` (0 = off)."
    )
    collect_max_body_bytes: int = Field(
        default=20 * 1024 * 1024,
        ge=1024,
        description="Largest OTLP/HTTP request `cutover collect` accepts, after gunzip; larger ones get 413.",
    )
    collect_ack_timeout_s: float = Field(
        default=5.0,
        gt=0,
        le=120,
        description="Seconds `cutover collect` waits for Kafka to acknowledge a request before answering 503.",
    )
    collect_stats_interval_s: float = Field(
        default=60.0,
        ge=0,
        description="Seconds between `cutover collect` log lines counting accepted spans and rejections (0: none).",
    )
