"""One logging setup for every `cutover` entry point."""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level, format=FORMAT)
    # kafka-python logs every reconnect attempt as an error and every connection at INFO; our own
    # lines report each outage once, so its logger stays quiet unless we debug.
    logging.getLogger("kafka").setLevel(logging.DEBUG if level == "DEBUG" else logging.CRITICAL)
