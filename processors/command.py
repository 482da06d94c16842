"""`cutover process`: run the processor service in the foreground until SIGTERM/SIGINT."""

from __future__ import annotations

import logging


def process() -> None:
    """Consume OTLP spans from Kafka into ClickHouse (at least once, idempotent writes) until SIGTERM/SIGINT."""
    # Imported here so other `cutover` commands do not pay for the processor's imports.
    from cutover.settings import load
    from processors.service import ProcessorService
    from processors.settings import ProcessorSettings

    settings = load(ProcessorSettings)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # kafka-python logs every reconnect attempt as an error; our own lines report each outage once.
    logging.getLogger("kafka").setLevel(logging.DEBUG if settings.log_level == "DEBUG" else logging.CRITICAL)
    # clickhouse-connect logs a traceback for each failed insert it re-raises; our line names the cause once.
    logging.getLogger("clickhouse_connect").setLevel(
        logging.DEBUG if settings.log_level == "DEBUG" else logging.CRITICAL
    )
    ProcessorService(settings).run_forever()
