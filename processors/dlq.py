"""The dead-letter topic: a bad message's original bytes, with why and where it came from."""

from __future__ import annotations

from dataclasses import dataclass

from kafka import KafkaProducer
from kafka.errors import KafkaError
from kafka.producer.future import FutureRecordMetadata


@dataclass
class DeadLetter:
    """One message sent (or to be re-sent) to the DLQ; the batch holds it until acknowledged."""

    key: bytes | None
    value: bytes | None
    topic: str
    partition: int
    offset: int
    reason: str
    future: FutureRecordMetadata | None = None

    def headers(self) -> list[tuple[str, bytes]]:
        return [
            ("error", self.reason.encode()[:4000]),
            ("source.topic", self.topic.encode()),
            ("source.partition", str(self.partition).encode()),
            ("source.offset", str(self.offset).encode()),
        ]


def make_producer(bootstrap: list[str], bootstrap_timeout_ms: int) -> KafkaProducer:
    # acks=all and idempotence: a dead letter must be durable before its offset is committed.
    return KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_block_ms=10_000,  # never hold the consumer thread for a minute on missing DLQ metadata
        max_request_size=16_777_216,
        client_id="cutover-processor-dlq",
        bootstrap_timeout_ms=bootstrap_timeout_ms,
    )


def send(producer: KafkaProducer, dlq_topic: str, letter: DeadLetter) -> None:
    """Start producing `letter` (asynchronous); `confirm` waits for it and re-sends it if this failed."""
    try:
        letter.future = producer.send(dlq_topic, key=letter.key, value=letter.value, headers=letter.headers())
    except KafkaError:
        letter.future = None


def confirm(producer: KafkaProducer, dlq_topic: str, letters: list[DeadLetter], timeout_s: float = 30.0) -> None:
    """Block until every letter is acknowledged, re-sending those that failed; raises if one still fails."""
    for letter in letters:
        if letter.future is None or (letter.future.is_done and letter.future.failed()):
            send(producer, dlq_topic, letter)
    producer.flush(timeout=timeout_s)
    for letter in letters:
        if letter.future is None:
            raise KafkaError(f"could not produce to the DLQ topic {dlq_topic}")
        letter.future.get(timeout=timeout_s)
