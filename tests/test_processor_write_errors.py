"""A write that retrying cannot fix stops `cutover process` with one clear line and exit code 1; nothing is committed."""

from __future__ import annotations

import subprocess
import sys

from kafka.admin import KafkaAdminClient

from tests.processor_workload import make_calls, messages, produce

# An earlier hand-made change gave `trace_id` the wrong type: every insert of a real batch fails the same way.
_BREAK_THE_STORE = """
import sys
from cutover.store import open_client
from processors.schema import migrate
client = open_client(sys.argv[1])
migrate(client, "cutover")
client.command("ALTER TABLE cutover.llm_calls MODIFY COLUMN trace_id UInt64")
"""


def test_a_permanent_write_error_stops_the_processor_with_one_line_and_exit_1(
    kafka_bootstrap, topic, cutover_env, tmp_path
):
    dsn = cutover_env["CUTOVER_CLICKHOUSE_URL"]
    subprocess.run([sys.executable, "-c", _BREAK_THE_STORE, dsn], check=True, timeout=120)
    produce(kafka_bootstrap, topic, list(messages(make_calls(100, seed=3), per_message=20)))
    group = f"g_{topic}"
    env = dict(
        cutover_env,
        CUTOVER_SPANS_TOPIC=topic,
        CUTOVER_DLQ_TOPIC=f"{topic}_dlq",
        CUTOVER_CONSUMER_GROUP=group,
        CUTOVER_PROCESSOR_METRICS_PORT="0",
        CUTOVER_RETRY_MAX_BACKOFF_S="0.5",
    )
    done = subprocess.run(
        [sys.executable, "-m", "cutover.cli", "process"], env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 1, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, done.stderr[-3000:]
    assert "ClickHouse write failed permanently" in errors[0] and "Traceback" not in done.stderr
    assert "retrying with backoff" not in done.stderr  # never retried
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        committed = admin.list_group_offsets({group: None}).get(group, {})
    finally:
        admin.close()
    assert all(meta.offset <= 0 for meta in committed.values())
