"""Prometheus metrics of `cutover collect` and of the in-app Kafka span exporter (prometheus-client)."""

from __future__ import annotations

import logging

from prometheus_client import Counter, start_http_server

log = logging.getLogger("cutover.collect")

REQUESTS = Counter("cutover_collector_requests", "OTLP/HTTP trace requests answered, by HTTP status", ["status"])
SPANS = Counter("cutover_collector_spans", "Spans accepted and acknowledged by Kafka")
MESSAGES = Counter("cutover_collector_messages", "Kafka messages (one per trace) written to the spans topic")
EXPORTER_DROPPED = Counter(
    "cutover_exporter_dropped_spans", "Spans the Kafka span exporter dropped (Kafka down, buffer full, shut down)"
)
_served: set[int] = set()


def serve(port: int) -> None:
    """Serve `/metrics` on `port` once per process (0 = off); a busy port is logged, not fatal."""
    if port == 0 or port in _served:
        return
    try:
        start_http_server(port)
    except OSError as error:
        log.warning("cannot serve metrics on port %d (%s); running without /metrics", port, error.strerror)
        return
    _served.add(port)
