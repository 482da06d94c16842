"""A throwaway local Kafka broker and folder for one bench run (benches measure the real path)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cutover.local_kafka import LocalBroker, free_port

REPO = Path(__file__).resolve().parents[1]


@contextmanager
def scratch_broker(prefix: str) -> Iterator[tuple[LocalBroker, Path]]:
    """A started 4-partition broker (jars from the repo's cache) and a scratch folder; both gone afterwards."""
    with tempfile.TemporaryDirectory(prefix=prefix) as folder:
        scratch = Path(folder)
        broker = LocalBroker(
            state=scratch / "kafka",
            libs=REPO / ".cutover" / "kafka" / "libs",
            port=free_port(),
            controller_port=free_port(),
            partitions=4,
        )
        broker.start()
        try:
            yield broker, scratch
        finally:
            broker.stop()
