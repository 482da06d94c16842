"""The ClickHouse schema (database `cutover` by default): the contract with the dashboards.

Created and migrated idempotently at processor start (`migrate`). Only processors write
these tables. Replays are harmless by construction:
- `llm_calls` and `hallucination_flags` are ReplacingMergeTrees keyed by span id, so a
  replayed batch collapses onto the rows it repeats (read with FINAL for exact counts);
  a later version of a call row (its hallucination verdict) replaces the first.
- `latency_histogram_slots` rows are recomputed per (5-second slot, model, ...) from
  `llm_calls`, and `latency_histograms` rows per (minute, model, ...) from those slots, both
  by the time calls ended; `ver` is the number of calls they cover: the most complete
  recomputation wins.
- `alerts` is keyed by the crossing it reports, so one crossing is one row.
- `shadow_pair_calls` holds the rows of `llm_calls` that belong to a shadow pair, copied on every
  insert by the materialized view `shadow_pair_calls_mv`, versions and replays included: the
  same ReplacingMergeTree(version) on the same key, so its FINAL is `llm_calls FINAL`'s pairs.
See docs/sql.md for the columns' meaning and example queries.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from clickhouse_connect.driver.client import Client

from processors.columns import PAIR_LEFT_OUT, PAIR_STORED, STORED, Column
from processors.histograms import SLOT_SECONDS, recompute

PAIRS = "shadow_pair_calls"
# The pairs table's comment while its backfill from llm_calls is not known to be complete (see `backfill_pairs`).
BACKFILL_PENDING = "backfill from llm_calls pending"
PAIRS_COMMENT = "calls of shadow pairs, copied from llm_calls by shadow_pair_calls_mv"
# The slots table's comment once its recent slots are known to be keyed by end time (see `rekey_histograms`);
# none until then, as an older version left the table.
SLOTS_COMMENT = f"histograms per {SLOT_SECONDS}-second slot of end time, rolled up into latency_histograms"
# Hours of histograms an upgrade rebuilds by end time; older minutes keep the start-time keys they were made with.
REKEY_HOURS = 1

# A histogram recompute reads the calls that ended in a few seconds; the table is ordered by
# start time, and each part (a batch, or merged batches) holds calls that ended close together.
END_INDEX = "idx_end end_time TYPE minmax GRANULARITY 1"

# A batch below this (uncompressed) is written as a compact part (one file): a wide part keeps
# write buffers for each of ~60 columns at once, ~230 MB of chDB memory for a 50k-call batch
# against ~100 MB compact (ClickHouse's default threshold, 10 MB, made every full batch wide).
# Merges beyond it write wide parts column by column (vertical merges), ~80 MB.
WIDE_PART_BYTES = 64 * 2**20
# Parts replaced by a merge stay loaded until this old (ClickHouse's default, 480 s, guards
# against a power loss before the OS wrote the merged part: its writeback is ~30 s). Each costs
# ~0.25 MB of chDB memory (132 outdated llm_calls parts held 34 MB), and the processor makes
# ~2 parts a second (a batch, its hallucination verdicts, histograms) plus merges.
OLD_PARTS_LIFETIME_S = 60
# The tables written every batch.
FREQUENTLY_WRITTEN = ("llm_calls", "hallucination_flags", "latency_histograms")


# The columns of both histogram tables after their time key (a minute, or a slot of it).
_HISTOGRAM_COLUMNS = """metric LowCardinality(String), model LowCardinality(String), operation LowCardinality(String),
            service LowCardinality(String), task LowCardinality(String), scale Int8, count UInt64, sum Float64,
            min Float64, max Float64, zero_count UInt64, buckets Map(Int32, UInt64), ver UInt64"""


def statements(database: str, retention_days: int) -> list[str]:
    db = database
    ttl = f"TTL toDateTime(start_time) + INTERVAL {int(retention_days)} DAY DELETE" if retention_days > 0 else ""
    judged_ttl = f"TTL toDateTime(judged_at) + INTERVAL {int(retention_days)} DAY DELETE" if retention_days > 0 else ""
    minute_ttl = f"TTL minute + INTERVAL {int(retention_days)} DAY DELETE" if retention_days > 0 else ""
    slot_ttl = f"TTL slot + INTERVAL {int(retention_days)} DAY DELETE" if retention_days > 0 else ""
    columns = ",\n            ".join(column.ddl() for column in STORED)
    pair_columns = ",\n            ".join(column.ddl() for column in PAIR_STORED)
    return [
        f"CREATE DATABASE IF NOT EXISTS {db}",
        f"""
        CREATE TABLE IF NOT EXISTS {db}.llm_calls (
            {columns},
            INDEX idx_trace trace_id TYPE bloom_filter(0.001) GRANULARITY 4,
            INDEX idx_pair shadow_pair_id TYPE bloom_filter(0.001) GRANULARITY 4,
            INDEX {END_INDEX}
        )
        ENGINE = ReplacingMergeTree(version)
        PARTITION BY toDate(start_time)
        ORDER BY (model, start_time, span_id)
        {ttl}
        SETTINGS non_replicated_deduplication_window = 1000, min_bytes_for_wide_part = {WIDE_PART_BYTES}
        """,
        # Shadow rows are spread through every granule of llm_calls (ordered by model, then time), so a pair
        # query there reads all calls of its range; this table holds only them, ordered by time. A materialized
        # view rather than a projection: ClickHouse does not use projections under FINAL. Its key is
        # llm_calls' (reordered: time first), its version and insert deduplication the same (a block llm_calls
        # drops as a repeat, the view drops too), so FINAL reads both alike.
        f"""
        CREATE TABLE IF NOT EXISTS {db}.{PAIRS} (
            {pair_columns},
            INDEX idx_pair shadow_pair_id TYPE bloom_filter(0.001) GRANULARITY 1
        )
        ENGINE = ReplacingMergeTree(version)
        PARTITION BY toDate(start_time)
        ORDER BY (start_time, span_id, model)
        {ttl}
        SETTINGS non_replicated_deduplication_window = 1000
        COMMENT '{BACKFILL_PENDING}'
        """,
        # `*`: resolved at each insert, so a column later added to both tables flows without a new view.
        f"""
        CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{PAIRS}_mv TO {db}.{PAIRS}
        AS SELECT * EXCEPT ({", ".join(PAIR_LEFT_OUT)}) FROM {db}.llm_calls WHERE shadow_pair_id != ''
        """,
        f"""
        CREATE TABLE IF NOT EXISTS {db}.hallucination_flags (
            span_id      String,
            trace_id     String,
            start_time   DateTime64(6, 'UTC'),
            model        LowCardinality(String),
            task         LowCardinality(String),
            check_name   LowCardinality(String),
            score        Float32,
            flagged      UInt8,
            reason       String,
            sample_rate  Float32,
            checked_at   DateTime64(3, 'UTC') DEFAULT now64(3)
        )
        ENGINE = ReplacingMergeTree(checked_at)
        PARTITION BY toDate(start_time)
        ORDER BY (model, start_time, span_id, check_name)
        {ttl}
        """,
        f"""
        CREATE TABLE IF NOT EXISTS {db}.latency_histograms (
            minute      DateTime('UTC'),
            {_HISTOGRAM_COLUMNS}
        )
        ENGINE = ReplacingMergeTree(ver)
        PARTITION BY toDate(minute)
        ORDER BY (metric, model, operation, service, task, minute)
        {minute_ttl}
        """,
        # The same histograms per `processors.histograms.SLOT_SECONDS` slot: minute rows are
        # rolled up from these, so a recompute reads a few seconds of calls, not the minute.
        f"""
        CREATE TABLE IF NOT EXISTS {db}.latency_histogram_slots (
            slot        DateTime('UTC'),
            {_HISTOGRAM_COLUMNS}
        )
        ENGINE = ReplacingMergeTree(ver)
        PARTITION BY toDate(slot)
        ORDER BY (model, slot, metric, operation, service, task)
        {slot_ttl}
        """,
        f"""
        CREATE TABLE IF NOT EXISTS {db}.alerts (
            alert_time  DateTime64(3, 'UTC'),
            kind        LowCardinality(String),
            severity    LowCardinality(String),
            model       LowCardinality(String),
            period      String,
            threshold   Float64,
            value       Float64,
            message     String
        )
        ENGINE = ReplacingMergeTree
        PARTITION BY toYYYYMM(alert_time)
        ORDER BY (kind, model, period, threshold)
        """,
        # The llm_judge check's own spend: one row per judge request (a replayed call judged twice
        # was paid twice). Never part of llm_calls, so never counted as the application's spend.
        f"""
        CREATE TABLE IF NOT EXISTS {db}.judge_usage (
            judged_at      DateTime64(3, 'UTC') DEFAULT now64(3),
            span_id        String,
            trace_id       String,
            start_time     DateTime64(6, 'UTC'),
            model          LowCardinality(String),
            judge_model    LowCardinality(String),
            status         LowCardinality(String),
            verdict        LowCardinality(String),
            input_tokens   UInt32,
            cached_input_tokens UInt32,
            output_tokens  UInt32,
            cost_usd       Nullable(Decimal(18, 12)),
            price_version  LowCardinality(String),
            latency_ms     Float64,
            error          String
        )
        ENGINE = MergeTree
        PARTITION BY toDate(judged_at)
        ORDER BY (judged_at, span_id)
        {judged_ttl}
        """,
        # The judge's budget per UTC day, as the dashboard shows it: the newest row per day wins.
        f"""
        CREATE TABLE IF NOT EXISTS {db}.judge_status (
            day            Date,
            judge_model    LowCardinality(String),
            budget_usd     Float64,
            spent_usd      Float64,
            skipped_budget UInt64,
            exhausted_at   Nullable(DateTime64(3, 'UTC')),
            updated_at     DateTime64(3, 'UTC') DEFAULT now64(3)
        )
        ENGINE = ReplacingMergeTree(updated_at)
        ORDER BY (day, judge_model)
        """,
    ]


# Tables with a retention TTL, and the time expression it counts from.
RETENTION = {
    "llm_calls": "toDateTime(start_time)",
    "hallucination_flags": "toDateTime(start_time)",
    "latency_histograms": "minute",
    PAIRS: "toDateTime(start_time)",
    "latency_histogram_slots": "slot",
}


def apply_retention(client: Client, database: str, retention_days: int) -> None:
    """Bring each table's TTL to `retention_days` (0 = none) when it differs, e.g. after a config change.

    The new TTL takes effect on merges (`materialize_ttl_after_modify = 0`), so a start
    never waits for a rewrite of old partitions.
    """
    for table, since in RETENTION.items():
        engine = str(
            client.command(
                "SELECT engine_full FROM system.tables WHERE database = %(db)s AND name = %(table)s",
                parameters={"db": database, "table": table},
            )
        )
        if retention_days > 0 and f"toIntervalDay({int(retention_days)})" not in engine:
            client.command(
                f"ALTER TABLE {database}.{table} MODIFY TTL {since} + INTERVAL {int(retention_days)} DAY DELETE",
                settings={"materialize_ttl_after_modify": 0},
            )
        elif retention_days <= 0 and " TTL " in engine:
            client.command(f"ALTER TABLE {database}.{table} REMOVE TTL")


def add_missing_columns(client: Client, database: str, table: str, columns: tuple[Column, ...]) -> list[str]:
    """Add the `columns` a table made by an earlier version lacks (in their order); returns their names.

    Old rows read the column's default; `ADD COLUMN` changes only metadata, so no rewrite.
    """
    present = {
        row[0]
        for row in client.query(
            "SELECT name FROM system.columns WHERE database = %(db)s AND table = %(table)s",
            parameters={"db": database, "table": table},
        ).result_rows
    }
    added = []
    previous = ""
    for column in columns:
        if column.name not in present:
            place = f" AFTER {previous}" if previous else " FIRST"
            client.command(f"ALTER TABLE {database}.{table} ADD COLUMN IF NOT EXISTS {column.ddl()}{place}")
            added.append(column.name)
        previous = column.name
    return added


def backfill_pairs(client: Client, database: str) -> bool:
    """Copy the pair rows stored before `shadow_pair_calls` existed; returns whether it had to.

    The view exists before the copy starts, so no insert falls between the two; a row both write (or a
    second instance's copy) is a duplicate FINAL collapses. The copy reads FINAL: each call's winning row,
    in a part newer than any the view wrote before it, so it wins again even against an equal version.
    The table's comment says pending until a copy has finished, so a start interrupted mid-copy copies
    again at the next start.
    """
    comment = client.command(
        "SELECT comment FROM system.tables WHERE database = %(db)s AND name = %(table)s",
        parameters={"db": database, "table": PAIRS},
    )
    if comment != BACKFILL_PENDING:
        return False
    names = ", ".join(column.name for column in PAIR_STORED)
    client.command(
        f"INSERT INTO {database}.{PAIRS} ({names}) SELECT {names} FROM {database}.llm_calls FINAL"
        " PREWHERE shadow_pair_id != ''",  # exact before FINAL: every version of a call has its pair id
        settings={"max_partitions_per_insert_block": 0, "do_not_merge_across_partitions_select_final": 1},
    )
    client.command(f"ALTER TABLE {database}.{PAIRS} MODIFY COMMENT '{PAIRS_COMMENT}'")
    return True


def add_end_index(client: Client, database: str) -> bool:
    """Give a `llm_calls` made before the `end_time` index the index, built for its old parts too; returns
    whether it had to. The build is a mutation in the background; recomputes read old parts whole until then."""
    present = client.command(
        "SELECT count() FROM system.data_skipping_indices WHERE database = %(db)s AND table = 'llm_calls'"
        " AND name = 'idx_end'",
        parameters={"db": database},
    )
    if present:
        return False
    client.command(f"ALTER TABLE {database}.llm_calls ADD INDEX IF NOT EXISTS {END_INDEX}")
    # In the background (chDB waits for mutations by default): old parts may hold months of calls.
    client.command(f"ALTER TABLE {database}.llm_calls MATERIALIZE INDEX idx_end", settings={"mutations_sync": 0})
    return True


def rekey_histograms(client: Client, database: str) -> bool:
    """Rebuild the last `REKEY_HOURS` of histograms by end time, once per store; returns whether it had to.

    A store made before histograms were keyed by end time (or before slots existed) holds rows
    keyed by start time: left in place, a recompute would roll a minute up from its new slots
    beside old ones, and an old row covering more calls would win. Its rows of those hours go,
    then every minute its calls ended in is recomputed. The slots table's comment says so once
    that is done (an older version left none), so a start interrupted midway does it again; a
    new store does it on an empty table.
    """
    comment = client.command(
        "SELECT comment FROM system.tables WHERE database = %(db)s AND name = 'latency_histogram_slots'",
        parameters={"db": database},
    )
    if comment == SLOTS_COMMENT:
        return False
    # A whole minute: a minute row is rebuilt whole or left as it was.
    since = {"since": (datetime.now(UTC) - timedelta(hours=REKEY_HOURS)).replace(second=0, microsecond=0, tzinfo=None)}
    for table, key in (("latency_histogram_slots", "slot"), ("latency_histograms", "minute")):
        client.command(
            f"ALTER TABLE {database}.{table} DELETE WHERE {key} >= %(since)s",
            parameters=since,
            settings={"mutations_sync": 1},
        )
    minutes = [
        row[0]
        for row in client.query(
            f"SELECT DISTINCT toStartOfMinute(end_time) FROM {database}.llm_calls WHERE end_time >= %(since)s",
            parameters=since,
        ).result_rows
    ]
    recompute(client, database, minutes)
    client.command(f"ALTER TABLE {database}.latency_histogram_slots MODIFY COMMENT '{SLOTS_COMMENT}'")
    return bool(minutes)


def migrate(client: Client, database: str = "cutover", retention_days: int = 90) -> None:
    """Create or upgrade every table; safe to run at every start, from every instance."""
    log = logging.getLogger(__name__)
    for statement in statements(database, retention_days):
        client.command(statement)
    for table, columns in (("llm_calls", STORED), (PAIRS, PAIR_STORED)):
        added = add_missing_columns(client, database, table, columns)
        if added:
            log.info("upgraded %s.%s: added column(s) %s", database, table, ", ".join(added))
    if backfill_pairs(client, database):
        log.info("filled %s.%s from llm_calls", database, PAIRS)
    if add_end_index(client, database):
        log.info("upgraded %s.llm_calls: index on end_time added, building for old parts", database)
    if rekey_histograms(client, database):
        log.info("upgraded %s: histograms of the last %d h rebuilt by end time", database, REKEY_HOURS)
    apply_retention(client, database, retention_days)
    # Metadata changes (no rewrite), also for tables made before the settings.
    client.command(f"ALTER TABLE {database}.llm_calls MODIFY SETTING min_bytes_for_wide_part = {WIDE_PART_BYTES}")
    for table in FREQUENTLY_WRITTEN:
        client.command(f"ALTER TABLE {database}.{table} MODIFY SETTING old_parts_lifetime = {OLD_PARTS_LIFETIME_S}")
