import re
import subprocess
import types
from pathlib import Path

import pytest

from processors.columns import CALL_COLUMNS, COLUMNS, DECODED_FIELDS, STORED
from processors.decode import decode
from processors.enrich import Enricher
from processors.pricing import PriceBook
from processors.refusal import refusal
from processors.schema import RETENTION, migrate
from processors.writer import CallWriter
from tests.processor_workload import make_calls, request_bytes

REPO = Path(__file__).resolve().parents[1]


def ttl_of(client, database: str) -> dict[str, str]:
    rows = client.query(
        "SELECT name, engine_full FROM system.tables WHERE database = %(db)s", parameters={"db": database}
    ).result_rows
    return {name: engine for name, engine in rows if name in RETENTION}


def test_migrate_is_idempotent_and_follows_a_retention_change(ch_client, ch_database):
    migrate(ch_client, ch_database, retention_days=90)
    migrate(ch_client, ch_database, retention_days=90)
    tables = {row[0] for row in ch_client.query(f"SHOW TABLES FROM {ch_database}").result_rows}
    assert {"llm_calls", "hallucination_flags", "latency_histograms", "alerts"} <= tables
    assert all("toIntervalDay(90)" in engine for engine in ttl_of(ch_client, ch_database).values())

    migrate(ch_client, ch_database, retention_days=7)
    assert all("toIntervalDay(7)" in engine for engine in ttl_of(ch_client, ch_database).values())

    migrate(ch_client, ch_database, retention_days=0)
    assert all(" TTL " not in engine for engine in ttl_of(ch_client, ch_database).values())
    migrate(ch_client, ch_database, retention_days=30)
    assert all("toIntervalDay(30)" in engine for engine in ttl_of(ch_client, ch_database).values())


# --- one definition of llm_calls: DDL, migrations, insert order, docs -------------------------------

# The last commit whose schema.py wrote the llm_calls DDL by hand: a store made by that version.
OLD_SCHEMA_COMMIT = "00d69d5"


def describe(client, database: str) -> list[tuple[str, str, str, str]]:
    rows = client.query(f"DESCRIBE TABLE {database}.llm_calls").result_rows
    return [(name, type_, default, codec) for name, type_, _, default, _, codec, _ in rows]


def definition() -> list[tuple[str, str, str, str]]:
    return [(c.name, c.type, c.default, c.codec) for c in STORED]


def old_schema_module() -> types.ModuleType:
    source = subprocess.run(
        ["git", "show", f"{OLD_SCHEMA_COMMIT}:processors/schema.py"], cwd=REPO, capture_output=True, text=True
    )
    assert source.returncode == 0, source.stderr
    module = types.ModuleType("old_schema")
    exec(compile(source.stdout, "old_schema.py", "exec"), module.__dict__)
    return module


def test_describe_equals_the_one_definition(ch_client, ch_database):
    migrate(ch_client, ch_database, retention_days=0)
    assert describe(ch_client, ch_database) == definition()
    assert set(DECODED_FIELDS) <= {c.name for c in COLUMNS}
    assert tuple(c.name for c in STORED if c.source != "default") == CALL_COLUMNS


def test_a_store_made_by_an_earlier_version_is_upgraded_without_losing_a_row(ch_client, ch_database):
    for statement in old_schema_module().statements(ch_database, 90):
        ch_client.command(statement)
    old_columns = [row[0] for row in describe(ch_client, ch_database)]
    assert "tokens_reported" not in old_columns
    ch_client.command(
        f"INSERT INTO {ch_database}.llm_calls (trace_id, span_id, start_time, model, input_tokens, output_tokens,"
        " cost_usd, version) SELECT 't', toString(number), now64(6) - number, 'gpt-5.4', 100 + number, 7,"
        " toDecimal64(0.001, 12), 1 FROM numbers(500)"
    )
    before = ch_client.query(
        f"SELECT span_id, input_tokens, cost_usd FROM {ch_database}.llm_calls ORDER BY span_id"
    ).result_rows

    migrate(ch_client, ch_database, retention_days=90)
    migrate(ch_client, ch_database, retention_days=90)  # idempotent on an upgraded store
    assert describe(ch_client, ch_database) == definition()
    after = ch_client.query(
        f"SELECT span_id, input_tokens, cost_usd FROM {ch_database}.llm_calls ORDER BY span_id"
    ).result_rows
    assert after == before and len(after) == 500
    assert ch_client.command(f"SELECT min(tokens_reported) FROM {ch_database}.llm_calls") == 1

    # The upgraded store takes this version's rows.
    table = Enricher(PriceBook.load(), refusal).table(decode(request_bytes(make_calls(20, seed=1))).rows)
    assert table.column_names == list(CALL_COLUMNS)
    CallWriter(ch_client, ch_database).write(table)
    assert ch_client.command(f"SELECT count() FROM {ch_database}.llm_calls FINAL") == 520


def test_the_docs_column_table_lists_the_definition_in_order():
    text = (REPO / "docs" / "sql.md").read_text()
    section = text.split("## `llm_calls`", 1)[1].split("\n## ", 1)[0]
    documented = [
        name
        for line in section.splitlines()
        if line.startswith("| `")
        for name in re.findall(r"`(\w+)`", line.split("|")[1])
    ]
    assert documented == [c.name for c in STORED]


def test_enrichment_refuses_a_row_one_field_short():
    row = decode(request_bytes(make_calls(1, seed=1))).rows[0]
    enricher = Enricher(PriceBook.load(), refusal)
    with pytest.raises(ValueError):
        enricher.table([row[:-1]])
    with pytest.raises(ValueError):
        enricher.table([row, row[:-1]])
