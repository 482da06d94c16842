"""The dead-letter topic: a bad message's original bytes, with why and where it came from."""

from __future__ import annotations

from dataclasses import dataclass

from kafka import KafkaProducer
from kafka.errors import KafkaError
from kafka.producer.future import FutureRecordMetadata

from cutover import kafka_clients
from cutover.kafka_clients import KafkaConnection


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


class DeadLetterQueue:
    """Produces dead letters; `confirm` is the gate before offsets may be committed past them."""

    def __init__(self, connection: KafkaConnection, topic: str, bootstrap_timeout_ms: int) -> None:
        self.connection = connection
        self.topic = topic
        self.bootstrap_timeout_ms = bootstrap_timeout_ms
        self.producer = self._producer()

    def _producer(self) -> KafkaProducer:
        # acks=all and idempotence: a dead letter must be durable before its offset is committed.
        return kafka_clients.producer(
            self.connection,
            "processor-dlq",
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_block_ms=10_000,  # never hold the consumer thread for a minute on missing DLQ metadata
            max_request_size=16_777_216,
            bootstrap_timeout_ms=self.bootstrap_timeout_ms,
        )

    def send(self, letter: DeadLetter) -> None:
        """Start producing `letter` (asynchronous); `confirm` waits for it and re-sends it if this failed."""
        try:
            letter.future = self.producer.send(self.topic, key=letter.key, value=letter.value, headers=letter.headers())
        except KafkaError:
            letter.future = None

    def confirm(self, letters: list[DeadLetter], timeout_s: float = 30.0) -> None:
        """Block until every letter is acknowledged, re-sending those that failed; raises if one still fails."""
        for letter in letters:
            if letter.future is None or (letter.future.is_done and letter.future.failed()):
                self.send(letter)
        self.producer.flush(timeout=timeout_s)
        try:
            for letter in letters:
                if letter.future is None:
                    raise KafkaError(f"could not produce to the DLQ topic {self.topic}")
                letter.future.get(timeout=timeout_s)
        except KafkaError:
            # An idempotent producer keeps failing every send after a fatal error (e.g. a
            # record the broker refused): the next attempt gets a fresh one.
            self.producer.close(timeout=5)
            self.producer = self._producer()
            raise

    def close(self) -> None:
        self.producer.close(timeout=5)
