import re
import subprocess
import types
from pathlib import Path

import pyarrow as pa
import pytest

from processors.columns import CALL_COLUMNS, COLUMNS, DECODED_FIELDS, PAIR_STORED, STORED
from processors.decode import decode
from processors.enrich import Enricher
from processors.pricing import PriceBook
from processors.refusal import refusal
from processors.schema import BACKFILL_PENDING, PAIRS, RETENTION, migrate
from processors.writer import CallWriter
from tests.dashboard_seed import seed
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
    assert {"llm_calls", "hallucination_flags", "latency_histograms", "alerts", PAIRS} <= tables
    assert set(ttl_of(ch_client, ch_database)) == set(RETENTION)
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


def describe(client, database: str, table: str = "llm_calls") -> list[tuple[str, str, str, str]]:
    rows = client.query(f"DESCRIBE TABLE {database}.{table}").result_rows
    return [(name, type_, default, codec) for name, type_, _, default, _, codec, _ in rows]


def definition(columns=STORED) -> list[tuple[str, str, str, str]]:
    return [(c.name, c.type, c.default, c.codec) for c in columns]


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
    assert describe(ch_client, ch_database, PAIRS) == definition(PAIR_STORED)
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
    assert describe(ch_client, ch_database, PAIRS) == definition(PAIR_STORED)
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


# --- shadow_pair_calls: exactly the pairs' rows of llm_calls -------------------------------------------

# The last commit whose schema had no shadow_pair_calls: a store made by that version.
PRE_PAIRS_SCHEMA_COMMIT = "04a4313"


def pair_rows(client, database: str, table: str) -> list[tuple]:
    """Every pair call as FINAL reads it, all columns the pairs table keeps."""
    names = ", ".join(c.name for c in PAIR_STORED)
    where = "WHERE shadow_pair_id != ''" if table == "llm_calls" else ""
    rows: list[tuple] = client.query(
        f"SELECT {names} FROM {database}.{table} FINAL {where} ORDER BY span_id, model, start_time",
        settings={"do_not_merge_across_partitions_select_final": 1},
    ).result_rows
    return rows


def assert_pairs_mirror_calls(client, database: str) -> int:
    calls = pair_rows(client, database, "llm_calls")
    pairs = pair_rows(client, database, PAIRS)
    assert len(pairs) == len(calls) and pairs == calls
    return len(pairs)


def revise_and_replay(client, database: str) -> None:
    """What a busy store holds unmerged, each as a separate insert: replays (every version stored so far), new versions of
    some pair calls (a hallucination verdict), and a same-version rewrite (the later insert wins)."""
    db = database
    for table in ("llm_calls", PAIRS):
        client.command(f"SYSTEM STOP MERGES {db}.{table}")
    client.command(
        f"""INSERT INTO {db}.llm_calls SELECT * FROM {db}.llm_calls
            WHERE cityHash64(span_id) % 3 = 0"""
    )
    client.command(
        f"""INSERT INTO {db}.llm_calls SELECT * REPLACE (version + 1 AS version, 1 - hallucination_flag AS
            hallucination_flag, 1 AS hallucination_checked)
            FROM (SELECT * FROM {db}.llm_calls FINAL WHERE shadow_pair_id != '' AND cityHash64(span_id) % 5 = 0)"""
    )
    client.command(
        f"""INSERT INTO {db}.llm_calls SELECT * REPLACE (concat(output_text, ' (joined)') AS output_text)
            FROM (SELECT * FROM {db}.llm_calls FINAL WHERE shadow_pair_id != '' AND cityHash64(span_id) % 7 = 0)"""
    )


def shadow_batch(n: int, seed_: int, pairs_from: int) -> pa.Table:
    """A processor batch (decoded, enriched) of `n` calls, every first four of each ten mirrored as two pairs."""
    table = Enricher(PriceBook.load(), refusal).table(decode(request_bytes(make_calls(n, seed=seed_))).rows)
    paired = [i % 10 < 4 for i in range(n)]
    columns = table.to_pydict()
    columns["shadow_pair_id"] = [f"w{pairs_from + i // 2}" if p else "" for i, p in enumerate(paired)]
    columns["shadow_role"] = [("primary", "shadow")[i % 2] if p else "" for i, p in enumerate(paired)]
    return pa.Table.from_pydict(columns, schema=table.schema)


def test_the_pairs_table_holds_exactly_the_pairs_of_llm_calls(ch_client, ch_database):
    seed(ch_client, ch_database, calls=4000, hours=3)
    writer = CallWriter(ch_client, ch_database)
    batch = shadow_batch(200, 3, 0)
    writer.write(batch)
    writer.write(batch)  # Kafka redelivers the batch: an identical insert
    revise_and_replay(ch_client, ch_database)
    assert ch_client.command(f"SELECT count() FROM {ch_database}.llm_calls WHERE shadow_pair_id = ''") > 0
    assert ch_client.command(f"SELECT count() FROM {ch_database}.{PAIRS} WHERE shadow_pair_id = ''") == 0
    # Unmerged: the table holds more rows than calls, and FINAL reads the same calls as llm_calls FINAL.
    assert ch_client.command(f"SELECT count() > uniqExact(span_id) FROM {ch_database}.{PAIRS}") == 1
    assert assert_pairs_mirror_calls(ch_client, ch_database) == 400 + 80
    for table in ("llm_calls", PAIRS):  # merged: the same
        ch_client.command(f"SYSTEM START MERGES {ch_database}.{table}")
        ch_client.command(f"OPTIMIZE TABLE {ch_database}.{table} FINAL")
    assert assert_pairs_mirror_calls(ch_client, ch_database) == 480


def test_a_store_that_predates_the_pairs_table_gets_it_filled(ch_client, ch_database):
    source = subprocess.run(
        ["git", "show", f"{PRE_PAIRS_SCHEMA_COMMIT}:processors/schema.py"], cwd=REPO, capture_output=True, text=True
    )
    assert source.returncode == 0, source.stderr
    old = types.ModuleType("pre_pairs_schema")
    exec(compile(source.stdout, "pre_pairs_schema.py", "exec"), old.__dict__)
    old.migrate(ch_client, ch_database, retention_days=90)
    ch_client.command(f"SYSTEM STOP MERGES {ch_database}.llm_calls")
    writer = CallWriter(ch_client, ch_database)
    batch = shadow_batch(300, 5, 0)
    writer.insert(batch)  # rows only: that store has none of today's histogram tables to recompute into
    writer.insert(batch)
    ch_client.command(
        f"""INSERT INTO {ch_database}.llm_calls SELECT * REPLACE (2 AS version, 1 AS hallucination_flag)
            FROM (SELECT * FROM {ch_database}.llm_calls WHERE shadow_role = 'shadow')"""
    )
    assert not ch_client.command(f"EXISTS TABLE {ch_database}.{PAIRS}")

    migrate(ch_client, ch_database, retention_days=90)
    assert describe(ch_client, ch_database, PAIRS) == definition(PAIR_STORED)
    assert "toIntervalDay(90)" in ttl_of(ch_client, ch_database)[PAIRS]
    assert assert_pairs_mirror_calls(ch_client, ch_database) == 120
    copied = ch_client.command(f"SELECT count() FROM {ch_database}.{PAIRS}")
    migrate(ch_client, ch_database, retention_days=90)  # the next start copies nothing again
    assert ch_client.command(f"SELECT count() FROM {ch_database}.{PAIRS}") == copied

    # Writes after the upgrade arrive by the view; a start interrupted mid-copy copies again, without doubling.
    writer.write(shadow_batch(100, 6, 1000))
    revise_and_replay(ch_client, ch_database)
    ch_client.command(f"ALTER TABLE {ch_database}.{PAIRS} MODIFY COMMENT '{BACKFILL_PENDING}'")
    migrate(ch_client, ch_database, retention_days=90)
    assert ch_client.command(f"SELECT count() FROM {ch_database}.{PAIRS}") > copied
    assert assert_pairs_mirror_calls(ch_client, ch_database) == 160


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
