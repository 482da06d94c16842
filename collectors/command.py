"""The `cutover collect` command (registered in `cutover/cli.py`)."""

from __future__ import annotations

from collectors.settings import CollectorSettings
from cutover.settings import load


def collect() -> None:
    """Receive OTLP/HTTP traces (POST /v1/traces, protobuf or JSON, gzip) and write them to Kafka."""
    settings = load(CollectorSettings)
    from collectors.receiver import serve  # starlette and uvicorn load only for this command

    serve(settings)
