"""`cutover process`: run the processor service in the foreground until SIGTERM/SIGINT."""

from __future__ import annotations


def process() -> None:
    """Consume OTLP spans from Kafka into ClickHouse (at least once, idempotent writes) until SIGTERM/SIGINT."""
    # Imported here so other `cutover` commands do not pay for the processor's imports.
    from cutover.logs import setup_logging
    from cutover.settings import load
    from processors.service import ProcessorService
    from processors.settings import ProcessorSettings

    settings = load(ProcessorSettings)
    setup_logging(settings.log_level)
    ProcessorService(settings).run_forever()
