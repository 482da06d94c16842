"""A throwaway local Kafka broker and folder for one bench run (benches measure the real path)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cutover.local_kafka import LocalBroker, free_port
from processors.settings import ProcessorSettings

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


def processor_settings(broker: LocalBroker, name: str) -> ProcessorSettings:
    """Settings (defaults, `CUTOVER_*` from the environment apply) of a processor reading `<name>_spans` on this
    broker into database `name`; the topic and its dead-letter topic are created."""
    topic = f"{name}_spans"
    broker.create_topics([topic, f"{topic}_dlq"])
    return ProcessorSettings(
        kafka_bootstrap=broker.bootstrap, spans_topic=topic, dlq_topic=f"{topic}_dlq",
        consumer_group=name, clickhouse_database=name,
    )  # fmt: skip
