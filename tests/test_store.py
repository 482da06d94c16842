from datetime import datetime, timezone

import pytest

from cutover.settings import CutoverSettings
from cutover.store import open_client, ping
from processors.schema import migrate


def test_create_insert_and_query_on_chdb(ch_client, ch_database):
    ch_client.command(f"CREATE DATABASE {ch_database}")
    ch_client.command(f"CREATE TABLE {ch_database}.t (id UInt64, model LowCardinality(String), ms Float64) ENGINE = MergeTree ORDER BY id")
    rows = [[i, "gpt-5.4" if i % 3 else "gpt-5.5", i * 1.5] for i in range(10_000)]
    ch_client.insert(f"{ch_database}.t", rows, column_names=["id", "model", "ms"])
    result = ch_client.query(
        f"SELECT model, count(), sum(ms) FROM {ch_database}.t WHERE model = %(m)s GROUP BY model", parameters={"m": "gpt-5.5"}
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
        [["t1", "s1", datetime(2026, 4, 23, tzinfo=timezone.utc), "gpt-5.5", 812.5, 1]],
        column_names=["trace_id", "span_id", "start_time", "model", "latency_ms", "version"],
    )
    assert ch_client.command(f"SELECT count() FROM {ch_database}.llm_calls FINAL") == 1


def test_http_dsn_goes_through_the_same_client_code_and_fails_clearly_when_down():
    settings = CutoverSettings(clickhouse_url="http://127.0.0.1:1")
    assert not settings.uses_chdb
    with pytest.raises(Exception) as raised:
        open_client(settings.clickhouse_dsn)
    assert "127.0.0.1" in str(raised.value) or "refused" in str(raised.value).lower()
