"""Synthetic, deterministic calls for the dashboard tests and benchmark, generated inside ClickHouse.

`INSERT ... SELECT FROM numbers(n)` with hash-derived randomness writes millions of rows in
seconds without building them in Python; every value is a function of the row number, so
a seed is reproducible. Three models: gpt-5.4 and gpt-5.5 (priced) and `gpt-x-preview`
(unpriced: cost NULL). Every 10th pair of rows is a primary (gpt-5.4) / shadow (gpt-5.5)
pair. Run as a module to seed a chDB path from a subprocess:
`python -m tests.dashboard_seed chdb://PATH DATABASE CALLS HOURS`.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

from clickhouse_connect.driver.client import Client

from processors.histograms import recompute
from processors.schema import migrate

MODELS = ("gpt-5.4", "gpt-5.5", "gpt-x-preview")


def _u(salt: str) -> str:
    """A uniform [0, 1) value per row and salt."""
    return f"(cityHash64(number, '{salt}') % 1000003) / 1000003.0"


def seed(
    client: Client, database: str, calls: int, hours: float, end: datetime | None = None
) -> tuple[datetime, datetime]:
    """Write `calls` calls spread evenly over the `hours` before `end` (naive UTC); returns the range."""
    end = (end or datetime.now(UTC).replace(tzinfo=None)).replace(second=0, microsecond=0)
    start = end - timedelta(hours=hours)
    migrate(client, database, retention_days=0)
    span_us = int(hours * 3600 * 1_000_000)
    client.command(
        f"""
        INSERT INTO {database}.llm_calls
            (trace_id, span_id, start_time, service, environment, operation, model, response_model, provider, task,
             latency_ms, ttft_ms, output_tokens_per_s, input_tokens, cached_input_tokens, output_tokens,
             reasoning_tokens, cost_usd, price_version, is_error, error_type, finish_reason, is_refusal,
             refusal_source, client_timeout_s, is_timeout, shadow_pair_id, shadow_role, content_captured,
             input_text, output_text, context_text, reference_answer, hallucination_checked, hallucination_flag,
             kafka_partition, kafka_offset, ingested_at, version)
        WITH
            number % 20 < 2 AS paired,
            if(paired, if(number % 2 = 0, 'gpt-5.4', 'gpt-5.5'),
               multiIf({_u("m")} < 0.55, 'gpt-5.4', {_u("m")} < 0.95, 'gpt-5.5', 'gpt-x-preview')) AS m,
            ['coding', 'knowledge', 'rag', 'simple'][1 + intDiv(if(paired, intDiv(number, 2), number), 3) % 4] AS t,
            sqrt(-2 * log(greatest({_u("a")}, 1e-9))) * cos(2 * pi() * {_u("b")}) AS z,
            exp(multiIf(t = 'coding', 8.2, t = 'rag', 7.6, t = 'knowledge', 7.2, 6.4) + if(m = 'gpt-5.5', 0.08, 0)
                + z * if(m = 'gpt-5.5', 0.55, 0.45)) AS raw_latency,
            raw_latency > 30000 AS timed_out,
            {_u("e")} < if(m = 'gpt-5.5', 0.015, 0.01) OR timed_out AS failed,
            {_u("s")} < 0.5 AS streamed,
            toUInt32(300 + {_u("i")} * 2700) AS input_t,
            toUInt32(input_t * {_u("c")} * 0.5) AS cached_t,
            toUInt32((100 + {_u("o")} * 1400) * if(m = 'gpt-5.5', 0.8, 1)) AS output_t,
            toUInt32(output_t * {_u("r")} * 0.4) AS reasoning_t,
            least(raw_latency, 30000) AS latency,
            {_u("cap")} < 0.2 OR paired AS captured,
            {_u("h")} < 0.3 AS checked,
            toDateTime64({{start:DateTime64(6)}}, 6, 'UTC') + toIntervalMicrosecond(toUInt64(number / {{calls:UInt64}} * {{span_us:UInt64}})) AS started
        SELECT
            hex(cityHash64(intDiv(number, 2), 'trace')) AS trace_id,
            hex(cityHash64(number, 'span')) AS span_id,
            started,
            ['checkout-assistant', 'support-bot', 'code-review'][1 + number % 3],
            'production', 'chat', m, m, 'openai', t,
            latency,
            if(streamed AND NOT failed, latency * (0.15 + 0.1 * {_u("f")}), NULL),
            if(failed, NULL, output_t / greatest(latency * 0.8, 1) * 1000),
            input_t, cached_t, output_t, reasoning_t,
            multiIf(m = 'gpt-5.4', toDecimal128((input_t - cached_t) * 3 + cached_t * 0.3 + output_t * 15, 6) / 1000000,
                    m = 'gpt-5.5', toDecimal128((input_t - cached_t) * 5 + cached_t * 0.5 + output_t * 30, 6) / 1000000,
                    NULL),
            if(m = 'gpt-x-preview', '', '2026-04'),
            failed, multiIf(timed_out, 'timeout', failed, '500', ''), if(failed, '', 'stop'),
            NOT failed AND {_u("ref")} < if(m = 'gpt-5.5', 0.035, 0.02),
            '', 30, timed_out,
            if(paired, concat('pair-', toString(intDiv(number, 2))), ''),
            if(paired, if(number % 2 = 0, 'primary', 'shadow'), ''),
            captured,
            if(captured, concat('question ', toString(intDiv(number, 2))), ''),
            if(captured, concat('answer ', toString(intDiv(number, 2) % 7 + if({_u("dis")} < 0.08, 100, 0))), ''),
            '', '',
            checked AND NOT failed,
            checked AND NOT failed AND {_u("flag")} < if(m = 'gpt-5.5', 0.03, 0.05),
            number % 4, number,
            least(started + toIntervalMillisecond(toUInt64(latency) + 1000), now64(3, 'UTC')),  -- stored a second after it ended
            1
        FROM numbers({{calls:UInt64}})
        """,
        parameters={"start": start, "span_us": span_us, "calls": calls},
        settings={"max_partitions_per_insert_block": 1000},
    )
    client.command(
        f"""
        INSERT INTO {database}.hallucination_flags (span_id, trace_id, start_time, model, task, check_name, score, flagged, reason, sample_rate)
        SELECT span_id, trace_id, start_time, model, task, 'reference_overlap',
               if(hallucination_flag, 0.12, 0.91), hallucination_flag,
               if(hallucination_flag, 'answer shares 12% of its claims with the reference answer', ''), 1
        FROM {database}.llm_calls
        WHERE hallucination_checked = 1
        """,
        settings={"max_partitions_per_insert_block": 1000},
    )
    client.insert(
        f"{database}.alerts",
        [
            [
                end - timedelta(hours=1),
                "budget",
                "warning",
                "",
                "2026-11",
                0.75,
                0.78,
                "75% of the monthly budget spent",
            ],
            [
                end - timedelta(minutes=20),
                "refusal_rate",
                "critical",
                "gpt-5.5",
                "5m",
                0.03,
                0.041,
                "gpt-5.5 refusal rate 4.1% over 3%",
            ],
        ],
        column_names=["alert_time", "kind", "severity", "model", "period", "threshold", "value", "message"],
    )
    day = start.replace(hour=0, minute=0)
    while day < end:  # a day at a time keeps the recomputation's memory small
        minutes = [day + timedelta(minutes=i) for i in range(24 * 60)]
        recompute(client, database, [m for m in minutes if start <= m < end])
        day += timedelta(days=1)
    return start, end


if __name__ == "__main__":
    from cutover.store import open_client

    dsn, database, calls, hours = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    first, last = seed(open_client(dsn), database, calls, hours)
    print(f"seeded {calls} calls from {first} to {last}")
