"""The SQL explorer is read-only because ClickHouse says so (`readonly=1` on the query): every
write, DDL, SYSTEM statement and file()/url() table function is refused and changes nothing,
and the refusal does not leave the process's shared chDB session read-only."""

from __future__ import annotations

import pytest

from dashboards.queries import ReadOnlyRefused, run_readonly


@pytest.fixture
def table(ch_client, ch_database, chdb_path):
    ch_client.command(f"CREATE DATABASE {ch_database}")
    ch_client.command(f"CREATE TABLE {ch_database}.calls (id UInt32, model String) ENGINE = MergeTree ORDER BY id")
    ch_client.command(f"INSERT INTO {ch_database}.calls VALUES (1, 'gpt-5.4'), (2, 'gpt-5.5')")
    return f"chdb://{chdb_path}", f"{ch_database}.calls"


REFUSED = [
    "DROP TABLE {t}",
    "INSERT INTO {t} VALUES (3, 'x')",
    "INSERT INTO {t} SELECT 4, 'y'",
    "ALTER TABLE {t} DELETE WHERE 1",
    "ALTER TABLE {t} ADD COLUMN extra UInt8",
    "TRUNCATE TABLE {t}",
    "CREATE TABLE {t}_copy AS {t}",
    "SYSTEM STOP MERGES {t}",
    "SYSTEM DROP MARK CACHE",
    "SYSTEM FLUSH LOGS",
    "SELECT * FROM file('/etc/passwd', 'LineAsString')",
    "SELECT * FROM url('http://127.0.0.1:9/x', 'LineAsString')",
    "INSERT INTO FUNCTION file('/tmp/cutover-explorer-test.csv', 'CSV') SELECT * FROM {t}",
    "SELECT count() FROM {t} SETTINGS readonly = 0",
    "/* hidden */ DROP TABLE {t}",
    "SELECT 1; DROP TABLE {t}",
    "KILL QUERY WHERE 1 SYNC",
    "SYSTEM STOP MERGES",
    "OPTIMIZE TABLE {t} FINAL",
]


@pytest.mark.parametrize("statement", REFUSED)
def test_writes_ddl_system_and_table_functions_are_refused_and_change_nothing(ch_client, table, statement):
    dsn, name = table
    with pytest.raises(ReadOnlyRefused):
        run_readonly(dsn, statement.format(t=name), row_limit=100, timeout_s=10)
    assert ch_client.query(f"SELECT id, model FROM {name} ORDER BY id").result_rows == [(1, "gpt-5.4"), (2, "gpt-5.5")]
    assert ch_client.command(f"EXISTS TABLE {name}_copy") == 0
    # The process's shared session is not left read-only: the processor can still write.
    ch_client.command(f"INSERT INTO {name} VALUES (9, 'probe')")
    ch_client.command(f"ALTER TABLE {name} DELETE WHERE id = 9 SETTINGS mutations_sync = 1")


def test_reads_work_and_the_row_limit_truncates(table):
    dsn, name = table
    result = run_readonly(dsn, f"SELECT id, model FROM {name} ORDER BY id", row_limit=100, timeout_s=10)
    assert result.frame.to_dict("list") == {"id": [1, 2], "model": ["gpt-5.4", "gpt-5.5"]}
    assert not result.truncated
    big = run_readonly(dsn, "SELECT number FROM system.numbers LIMIT 100000", row_limit=10, timeout_s=10)
    assert len(big.frame) == 10 and big.truncated


def test_a_bad_query_is_an_error_not_a_refusal(table):
    dsn, _ = table
    with pytest.raises(Exception) as raised:
        run_readonly(dsn, "SELEC 1", row_limit=10, timeout_s=10)
    assert not isinstance(raised.value, ReadOnlyRefused)
    assert "Syntax error" in str(raised.value)


def test_show_describe_exists_and_explain_run(table):
    dsn, name = table
    for sql in (f"DESCRIBE TABLE {name}", f"EXISTS TABLE {name}", "SHOW DATABASES", f"EXPLAIN SELECT * FROM {name}"):
        assert not run_readonly(dsn, sql, row_limit=100, timeout_s=10).frame.empty, sql


def test_a_runaway_query_is_stopped_by_the_time_limit(table):
    dsn, _ = table
    with pytest.raises(Exception) as raised:
        run_readonly(dsn, "SELECT count() FROM system.numbers", row_limit=10, timeout_s=1)
    assert "TIMEOUT_EXCEEDED" in str(raised.value) or "Timeout exceeded" in str(raised.value)


def test_every_docs_example_runs_read_only_on_the_configured_database(ch_client, ch_database, chdb_path):
    from dashboards.queries import example_queries
    from tests.dashboard_seed import seed

    seed(ch_client, ch_database, calls=3000, hours=2)
    examples = example_queries(ch_database)
    assert len(examples) >= 5
    for title, sql in examples:
        assert f"{ch_database}." in sql and "cutover." not in sql, title
        run_readonly(f"chdb://{chdb_path}", sql, row_limit=1000, timeout_s=30)  # raises on any error
