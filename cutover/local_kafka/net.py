"""Ports and the produce/consume round trip that proves a broker serves clients."""

from __future__ import annotations

import socket
import time
import uuid

from cutover import kafka_clients
from cutover.kafka_clients import KafkaConnection
from cutover.local_kafka.tools import BrokerError

HEALTH_TOPIC = "__cutover_health"


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    with socket.socket() as sock:
        sock.settimeout(timeout)
        return sock.connect_ex((host, port)) == 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def round_trip(connection: KafkaConnection, timeout: float = 30.0) -> float:
    """Produce one message to any broker and read it back; returns the seconds it took."""
    from kafka import TopicPartition

    began = time.monotonic()
    marker = uuid.uuid4().bytes
    deadline = began + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            producer = kafka_clients.producer(connection, "health", request_timeout_ms=5000, max_block_ms=5000)
            try:
                sent = producer.send(HEALTH_TOPIC, marker).get(timeout=10)
            finally:
                producer.close(timeout=2)
            consumer = kafka_clients.consumer(connection, "health", enable_auto_commit=False, consumer_timeout_ms=5000)
            try:
                partition = TopicPartition(HEALTH_TOPIC, sent.partition)
                consumer.assign([partition])
                consumer.seek(partition, sent.offset)
                if any(record.value == marker for record in consumer):
                    return time.monotonic() - began
            finally:
                consumer.close()
        except Exception as error:  # a starting broker refuses for a while; retry until the deadline
            last_error = error
            time.sleep(0.5)
    servers = ",".join(connection.bootstrap)
    raise BrokerError(f"no produce/consume round trip with {servers} in {timeout:.0f}s: {last_error}")
