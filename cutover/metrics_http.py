"""Serving `/metrics` (prometheus-client's default registry) for any `cutover` service."""

from __future__ import annotations

import logging

from prometheus_client import start_http_server

log = logging.getLogger("cutover.metrics")
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
    log.info("metrics on http://0.0.0.0:%d/metrics", port)
