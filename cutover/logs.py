"""One logging setup for every `cutover` entry point."""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level, format=FORMAT)
    # kafka-python logs every reconnect attempt as an error and every connection at INFO, and
    # clickhouse-connect a traceback for each failed insert it re-raises; our own lines report
    # each outage or cause once, so both stay quiet unless we debug.
    for noisy in ("kafka", "clickhouse_connect"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if level == "DEBUG" else logging.CRITICAL)
