"""SIGKILL `cutover process` mid-stream, restart it: every call is present exactly once."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from kafka import KafkaConsumer
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError
from kafka.structs import TopicPartition

from tests.processor_workload import make_calls, messages, produce
from tests.support import query_chdb_in_subprocess


def committed_total(admin: KafkaAdminClient, group: str) -> int:
    try:
        offsets = admin.list_group_offsets({group: None}).get(group, {})
    except KafkaError:  # the group coordinator is not there until the group's first join
        return 0
    return sum(meta.offset for meta in offsets.values() if meta.offset > 0)


def end_total(bootstrap: str, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        return sum(consumer.end_offsets(partitions).values())
    finally:
        consumer.close()


def start_processor(env: dict[str, str], log) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "cutover.cli", "process"], env=env, stdout=log, stderr=subprocess.STDOUT
    )


def wait_for(predicate, timeout: float, what: str, process: subprocess.Popen, log_path) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert process.poll() is None, f"processor exited early:\n{log_path.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{log_path.read_text()[-3000:]}"
        time.sleep(0.1)


def test_sigkill_mid_stream_then_restart_gives_every_call_exactly_once(kafka_bootstrap, topic, cutover_env, tmp_path):
    calls = make_calls(6000, seed=21)
    items = list(messages(calls, per_message=20))
    produce(kafka_bootstrap, topic, items)
    total = end_total(kafka_bootstrap, topic)
    assert total == len(items)
    group = f"g_{topic}"
    env = dict(
        cutover_env,
        CUTOVER_SPANS_TOPIC=topic,
        CUTOVER_DLQ_TOPIC=f"{topic}_dlq",
        CUTOVER_CONSUMER_GROUP=group,
        CUTOVER_BATCH_MAX_CALLS="200",  # many small batches: the kill lands between and within commits
        CUTOVER_BATCH_MAX_WAIT_S="0.2",
        CUTOVER_POLL_MAX_RECORDS="5",
    )
    log_path = tmp_path / "processor.log"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    with log_path.open("wb") as log:
        first = start_processor(env, log)
        try:
            wait_for(lambda: committed_total(admin, group) >= total // 4, 120, "first commits", first, log_path)
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(30)
        committed_at_kill = committed_total(admin, group)
        assert 0 < committed_at_kill < total, "the kill must land mid-stream"

        second = start_processor(env, log)
        try:
            wait_for(lambda: committed_total(admin, group) == total, 180, "all offsets", second, log_path)
        finally:
            second.send_signal(signal.SIGTERM)
            code = second.wait(60)
    admin.close()
    assert code == 0, log_path.read_text()[-3000:]
    assert "stopped:" in log_path.read_text()

    dsn = env["CUTOVER_CLICKHOUSE_URL"]
    ((final_count, unique, raw_count),) = query_chdb_in_subprocess(
        dsn,
        "SELECT (SELECT count() FROM cutover.llm_calls FINAL), (SELECT uniqExact(span_id) FROM cutover.llm_calls),"
        " (SELECT count() FROM cutover.llm_calls)",
    )
    assert int(final_count) == int(unique) == len(calls)
    assert int(raw_count) >= len(calls)  # replayed rows may exist before merges; FINAL collapses them
    ((histogram_calls,),) = query_chdb_in_subprocess(
        dsn, "SELECT sum(count) FROM cutover.latency_histograms FINAL WHERE metric = 'latency_ms'"
    )
    assert int(histogram_calls) == sum(c.in_histograms for c in calls)


def test_processor_waits_for_an_unreachable_kafka_and_stops_cleanly_on_sigterm(cutover_env, tmp_path):
    from cutover.local_kafka import free_port

    env = dict(cutover_env, CUTOVER_KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port()}", CUTOVER_RETRY_MAX_BACKOFF_S="1")
    log_path = tmp_path / "processor.log"
    with log_path.open("wb") as log:
        process = start_processor(env, log)
        deadline = time.monotonic() + 60
        while "Kafka connection failed" not in log_path.read_text():
            assert process.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.2)
        time.sleep(2)
        assert process.poll() is None  # still retrying, not crashed
        process.send_signal(signal.SIGTERM)
        code = process.wait(30)
    text = log_path.read_text()
    assert code == 0, text[-3000:]
    assert "Traceback" not in text and text.count("Kafka connection failed") == 1  # logged once, not per attempt
