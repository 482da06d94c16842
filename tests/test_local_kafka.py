import subprocess
import sys
import uuid

from cutover import kafka_clients
from cutover.kafka_clients import KafkaConnection
from cutover.local_kafka import free_port, port_open


def test_produce_and_consume_across_partitions(kafka_bootstrap, topic):
    connection = KafkaConnection.plaintext(kafka_bootstrap)
    producer = kafka_clients.producer(connection, "test")
    sent = {}
    for i in range(40):
        key, value = f"trace-{i}".encode(), uuid.uuid4().bytes
        meta = producer.send(topic, key=key, value=value).get(timeout=30)
        sent[value] = (key, meta.partition)
    producer.close()
    assert len({partition for _, partition in sent.values()}) > 1, "keys should spread over partitions"

    consumer = kafka_clients.consumer(
        connection, "test", topic, auto_offset_reset="earliest", consumer_timeout_ms=10000
    )
    received = {record.value: (record.key, record.partition) for record in consumer}
    consumer.close()
    assert received == sent


def test_local_broker_creates_spans_and_dlq_topics(kafka_broker):
    kafka_broker.create_topics(["otlp_spans", "otlp_spans_dlq"])
    admin = kafka_clients.admin(kafka_broker.connection, "test")
    try:
        described = {t["name"]: len(t["partitions"]) for t in admin.describe_topics(["otlp_spans", "otlp_spans_dlq"])}
    finally:
        admin.close()
    assert described == {"otlp_spans": 4, "otlp_spans_dlq": 4}


def _cutover(env, *args):
    return subprocess.run(
        [sys.executable, "-m", "cutover.cli", *args], env=env, capture_output=True, text=True, timeout=300
    )


def test_cli_start_is_idempotent_stop_frees_ports_status_tracks_state(cutover_env, kafka_broker, tmp_path):
    port, controller = free_port(), free_port()
    env = dict(cutover_env, CUTOVER_KAFKA_BOOTSTRAP=f"127.0.0.1:{port}", CUTOVER_KAFKA_CONTROLLER_PORT=str(controller))
    try:
        first = _cutover(env, "kafka", "start")
        assert first.returncode == 0, first.stderr
        assert "started" in first.stdout
        second = _cutover(env, "kafka", "start")
        assert second.returncode == 0 and "already running" in second.stdout

        status = _cutover(env, "kafka", "status")
        assert status.returncode == 0 and "broker.log" in status.stdout

        checked = _cutover(env, "check")
        assert checked.returncode == 0, checked.stderr
        assert "Kafka round trip OK" in checked.stdout and "ClickHouse OK" in checked.stdout
    finally:
        stopped = _cutover(env, "kafka", "stop")
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert not port_open("127.0.0.1", port) and not port_open("127.0.0.1", controller)
    down = _cutover(env, "kafka", "status")
    assert down.returncode == 1 and "not running" in down.stderr


def test_missing_java_names_what_to_install(cutover_env):
    env = dict(cutover_env, PATH="/nonexistent", CUTOVER_KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port()}")
    done = _cutover(env, "kafka", "start")
    assert done.returncode == 1
    assert "java" in done.stderr and "mvn" in done.stderr and "Traceback" not in done.stderr
