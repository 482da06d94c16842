"""The ClickHouse schema (database `cutover` by default): the contract with the dashboards.

Created and migrated idempotently at processor start (`migrate`). Only processors write
these tables. Replays are harmless by construction:
- `llm_calls` and `hallucination_flags` are ReplacingMergeTrees keyed by span id, so a
  replayed batch collapses onto the rows it repeats (read with FINAL for exact counts);
  a later version of a call row (its hallucination verdict) replaces the first.
- `latency_histograms` rows are recomputed per (minute, model, ...) from `llm_calls`, and
  `ver` is the number of calls they cover: the most complete recomputation wins.
- `alerts` is keyed by the crossing it reports, so one crossing is one row.
See docs/sql.md for the columns' meaning and example queries.
"""

from __future__ import annotations

from clickhouse_connect.driver.client import Client

# OTel base-2 exponential histogram scale: bucket i covers (2^(i/2^s), 2^((i+1)/2^s)],
# so a bucket's midpoint is within (2^(2^-s)-1)/(2^(2^-s)+1) = 0.54% of any value in it.
HISTOGRAM_SCALE = 6


def statements(database: str, retention_days: int) -> list[str]:
    db = database
    ttl = f"TTL toDateTime(start_time) + INTERVAL {int(retention_days)} DAY DELETE" if retention_days > 0 else ""
    minute_ttl = f"TTL minute + INTERVAL {int(retention_days)} DAY DELETE" if retention_days > 0 else ""
    return [
        f"CREATE DATABASE IF NOT EXISTS {db}",
        f"""
        CREATE TABLE IF NOT EXISTS {db}.llm_calls (
            trace_id            String CODEC(ZSTD(1)),
            span_id             String CODEC(ZSTD(1)),
            start_time          DateTime64(6, 'UTC') CODEC(Delta, ZSTD(1)),
            service             LowCardinality(String),
            environment         LowCardinality(String),
            operation           LowCardinality(String),
            model               LowCardinality(String),
            response_model      LowCardinality(String),
            provider            LowCardinality(String),
            task                LowCardinality(String),
            latency_ms          Float64 CODEC(ZSTD(1)),
            ttft_ms             Nullable(Float64) CODEC(ZSTD(1)),
            output_tokens_per_s Nullable(Float64) CODEC(ZSTD(1)),
            input_tokens        UInt32 CODEC(T64, ZSTD(1)),
            cached_input_tokens UInt32 CODEC(T64, ZSTD(1)),
            output_tokens       UInt32 CODEC(T64, ZSTD(1)),
            reasoning_tokens    UInt32 CODEC(T64, ZSTD(1)),
            cost_usd            Nullable(Decimal(18, 12)),
            price_version       LowCardinality(String),
            is_error            UInt8,
            error_type          LowCardinality(String),
            finish_reason       LowCardinality(String),
            is_refusal          UInt8,
            refusal_source      LowCardinality(String),
            client_timeout_s    Nullable(Float32),
            is_timeout          UInt8,
            shadow_pair_id      String CODEC(ZSTD(1)),
            shadow_role         LowCardinality(String),
            content_captured    UInt8,
            input_text          String CODEC(ZSTD(3)),
            output_text         String CODEC(ZSTD(3)),
            context_text        String CODEC(ZSTD(3)),
            reference_answer    String CODEC(ZSTD(3)),
            hallucination_checked     UInt8,
            hallucination_flag        UInt8,
            hallucination_sample_rate Float32 DEFAULT 1,
            kafka_partition     UInt16,
            kafka_offset        UInt64,
            ingested_at         DateTime64(3, 'UTC') DEFAULT now64(3),
            version             UInt64,
            price_source        LowCardinality(String),
            INDEX idx_trace trace_id TYPE bloom_filter(0.001) GRANULARITY 4,
            INDEX idx_pair shadow_pair_id TYPE bloom_filter(0.001) GRANULARITY 4
        )
        ENGINE = ReplacingMergeTree(version)
        PARTITION BY toDate(start_time)
        ORDER BY (model, start_time, span_id)
        {ttl}
        SETTINGS non_replicated_deduplication_window = 1000
        """,
        # Columns added after the first release, for tables created before them.
        f"ALTER TABLE {db}.llm_calls ADD COLUMN IF NOT EXISTS price_source LowCardinality(String) AFTER version",
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
            metric      LowCardinality(String),
            model       LowCardinality(String),
            operation   LowCardinality(String),
            service     LowCardinality(String),
            task        LowCardinality(String),
            scale       Int8,
            count       UInt64,
            sum         Float64,
            min         Float64,
            max         Float64,
            zero_count  UInt64,
            buckets     Map(Int32, UInt64),
            ver         UInt64
        )
        ENGINE = ReplacingMergeTree(ver)
        PARTITION BY toDate(minute)
        ORDER BY (metric, model, operation, service, task, minute)
        {minute_ttl}
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
    ]


# Tables with a retention TTL, and the time expression it counts from.
RETENTION = {
    "llm_calls": "toDateTime(start_time)",
    "hallucination_flags": "toDateTime(start_time)",
    "latency_histograms": "minute",
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


def migrate(client: Client, database: str = "cutover", retention_days: int = 90) -> None:
    """Create or upgrade every table; safe to run at every start, from every instance."""
    for statement in statements(database, retention_days):
        client.command(statement)
    apply_retention(client, database, retention_days)
