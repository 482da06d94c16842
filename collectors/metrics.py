"""Prometheus metrics of `cutover collect` and of the in-app Kafka span exporter (prometheus-client)."""

from __future__ import annotations

from prometheus_client import Counter

REQUESTS = Counter("cutover_collector_requests", "OTLP/HTTP trace requests answered, by HTTP status", ["status"])
SPANS = Counter("cutover_collector_spans", "Spans accepted and acknowledged by Kafka")
MESSAGES = Counter("cutover_collector_messages", "Kafka messages (one per trace) written to the spans topic")
EXPORTER_DROPPED = Counter(
    "cutover_exporter_dropped_spans", "Spans the Kafka span exporter dropped (Kafka down, buffer full, shut down)"
)
