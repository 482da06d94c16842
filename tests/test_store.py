from datetime import UTC, datetime

import pytest

from cutover.settings import CutoverSettings
from cutover.store import open_client, ping
from processors.schema import migrate


def test_create_insert_and_query_on_chdb(ch_client, ch_database):
    ch_client.command(f"CREATE DATABASE {ch_database}")
    ch_client.command(
        f"CREATE TABLE {ch_database}.t (id UInt64, model LowCardinality(String), ms Float64) ENGINE = MergeTree ORDER BY id"
    )
    rows = [[i, "gpt-5.4" if i % 3 else "gpt-5.5", i * 1.5] for i in range(10_000)]
    ch_client.insert(f"{ch_database}.t", rows, column_names=["id", "model", "ms"])
    result = ch_client.query(
        f"SELECT model, count(), sum(ms) FROM {ch_database}.t WHERE model = %(m)s GROUP BY model",
        parameters={"m": "gpt-5.5"},
    )
    expected = [r for r in rows if r[1] == "gpt-5.5"]
    assert result.result_rows == [("gpt-5.5", len(expected), sum(r[2] for r in expected))]
    assert ping(ch_client)


def test_schema_migration_is_idempotent(ch_client, ch_database):
    migrate(ch_client, ch_database, retention_days=30)
    migrate(ch_client, ch_database, retention_days=30)
    tables = {row[0] for row in ch_client.query(f"SHOW TABLES FROM {ch_database}").result_rows}
    assert {"llm_calls", "latency_histograms", "hallucination_flags", "alerts"} <= tables
    ch_client.insert(
        f"{ch_database}.llm_calls",
        # A recent call: the 30-day TTL may drop older rows at any merge.
        [["t1", "s1", datetime.now(UTC), "gpt-5.5", 812.5, 1]],
        column_names=["trace_id", "span_id", "start_time", "model", "latency_ms", "version"],
    )
    assert ch_client.command(f"SELECT count() FROM {ch_database}.llm_calls FINAL") == 1


def test_http_dsn_goes_through_the_same_client_code_and_fails_clearly_when_down():
    settings = CutoverSettings(clickhouse_url="http://127.0.0.1:1")
    assert not settings.uses_chdb
    with pytest.raises(Exception) as raised:
        open_client(settings.clickhouse_dsn)
    assert "127.0.0.1" in str(raised.value) or "refused" in str(raised.value).lower()


def test_a_chdb_path_held_by_another_process_is_one_clear_line_not_endless_retries(cutover_env, tmp_path):
    import subprocess
    import sys

    from tests.support import REPO

    dsn = cutover_env["CUTOVER_CLICKHOUSE_URL"]
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from cutover.store import open_client; client = open_client(sys.argv[1]); print('open', flush=True); time.sleep(120)", dsn],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "open"
        done = subprocess.run(
            [sys.executable, "-m", "cutover.cli", "process"],
            env=cutover_env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == 1, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert "open in another process" in last and "cutover dashboard" in last and "Traceback" not in done.stderr
