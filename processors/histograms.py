"""Per-minute OTel base-2 exponential histograms of latency, time to first token and output tokens/s.

Rows are recomputed, not incremented: after each written batch the processor rebuilds the
histograms of the minutes that batch touched from `llm_calls FINAL`. Recomputation makes
replays (at-least-once delivery) and several processors on different partitions converge
on the same numbers; `ver` = number of calls covered, and ReplacingMergeTree keeps the
largest, i.e. the most complete recomputation. Windows (5 min, 1 h, 24 h) are `sumMap`
merges of minute rows, so they are exact merges, never averages of percentiles.

The latency distributions cover calls that succeeded or timed out (a timed-out call counts
at the time it was cut); fast failures (429, 500) would drag the distribution down.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import NamedTuple

from clickhouse_connect.driver.client import Client

from cutover.histogram import HISTOGRAM_SCALE


def bucket_sql(value: str, scale: int = HISTOGRAM_SCALE) -> str:
    """SQL for the OTel bucket index of a positive value: bucket i holds (base^i, base^(i+1)].

    Safe for every Float64: ClickHouse evaluates the bucket of every row before an -If
    combinator filters, and `toInt32` of log2(0) = -inf (or of NaN) raises, so a value
    outside (0, inf) is bucketed as 1 here and counted as zero (or dropped) by the caller.
    """
    return f"toInt32(ceil(log2(if({value} > 0 AND isFinite({value}), {value}, 1)) * {2**scale})) - 1"


class Group(NamedTuple):
    """One histogram row's key apart from its metric: the calls of one minute (UTC) of one kind."""

    minute: datetime
    model: str
    operation: str
    service: str
    task: str


_METRIC_VALUES = "[('latency_ms', latency_ms), ('ttft_ms', ttft_ms), ('output_tps', output_tokens_per_s)]"


def recompute(client: Client, database: str, minutes: Iterable[datetime]) -> int:
    """Rebuild every histogram row of the given minutes (UTC); returns how many minutes."""
    wanted = sorted({m.replace(second=0, microsecond=0) for m in minutes})
    if wanted:
        _rebuild(client, database, "toStartOfMinute(start_time) IN %(minutes)s", {"minutes": wanted})
    return len(wanted)


def recompute_groups(client: Client, database: str, groups: Iterable[Group]) -> int:
    """Rebuild the histogram rows of only these groups (a batch's calls); returns how many groups.

    A live minute holds every call since it began, most of them in groups a batch did not
    touch; the models and the time range narrow the scan by the primary key
    (model, start_time) before the groups themselves are filtered.
    """
    wanted = sorted(set(groups))
    if not wanted:
        return 0
    where = (
        "model IN %(models)s AND start_time >= %(first)s AND start_time < %(end)s"
        " AND (toStartOfMinute(start_time), model, operation, service, task) IN %(groups)s"
    )
    parameters = {
        "models": sorted({group.model for group in wanted}),
        "first": min(group.minute for group in wanted),
        "end": max(group.minute for group in wanted) + timedelta(minutes=1),
        "groups": [tuple(group) for group in wanted],
    }
    _rebuild(client, database, where, parameters)
    return len(wanted)


def _rebuild(client: Client, database: str, where: str, parameters: dict[str, object]) -> None:
    client.command(
        f"""
        INSERT INTO {database}.latency_histograms
        SELECT minute, metric, model, operation, service, task, {HISTOGRAM_SCALE} AS scale,
               count() AS count, sum(v) AS sum, min(v) AS min, max(v) AS max,
               countIf(v <= 0) AS zero_count,
               CAST(sumMapIf(map({bucket_sql("v")}, toUInt64(1)), v > 0), 'Map(Int32, UInt64)') AS buckets,
               count() AS ver
        FROM (
            SELECT toStartOfMinute(start_time) AS minute, model, operation, service, task,
                   arrayJoin({_METRIC_VALUES}) AS metric_value,
                   metric_value.1 AS metric, assumeNotNull(metric_value.2) AS v
            FROM {database}.llm_calls FINAL
            WHERE {where}
              AND (is_error = 0 OR is_timeout = 1)
              AND metric_value.2 IS NOT NULL
              AND isFinite(assumeNotNull(metric_value.2))
        )
        GROUP BY minute, metric, model, operation, service, task
        """,
        parameters=parameters,
    )
