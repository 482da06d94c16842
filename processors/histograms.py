"""Per-minute OTel base-2 exponential histograms of latency, time to first token and output tokens/s.

A call counts in the minute it ended (`end_time`; a timed-out call ended when it was cut), as
an OTel duration histogram records at the end of the operation. Spans reach Kafka as they end,
so a minute's row is complete once its calls' exports have arrived: the newest minute shows
its slow calls with its fast ones, never only the fast calls that have already come back.

Rows are recomputed, not incremented, in two exact steps. After a written batch the
processor rebuilds, from `llm_calls FINAL`, the rows of `latency_histogram_slots` for the
`SLOT_SECONDS` slots (and kinds) that batch touched, then each touched minute's row of
`latency_histograms` as the sum of its slot rows. A recompute thus reads the calls of a few
seconds, never the whole minute (rescanning the minute grew from 20 ms to 467 ms per batch
as it filled at 5,000 calls/s); keyed by end time, those are the seconds the batch's calls
ended in (keyed by start time, every batch touched every slot its calls' latencies reached
back to: twice the CPU per batch in bench/recompute.py, with latencies of 1-2 s). The minmax
index on `end_time` narrows the scan of `llm_calls`, ordered by start time, to the parts and
granules holding such calls. Recomputation makes replays (at-least-once delivery) and
several processors on different partitions converge on the same numbers: in both tables
`ver` = number of calls covered and ReplacingMergeTree keeps the largest, i.e. the most
complete recomputation; whichever processor recomputes last (after its own insert) sees
every call and every slot. Windows (5 min, 1 h, 24 h) are `sumMap`
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

# Slots divide 60: a minute row is the sum of whole slots. A batch's calls ended within a
# few seconds of each other, so it touches one or two slots; smaller slots mean cheaper
# recomputes but more slot rows (60 / SLOT_SECONDS per minute row).
SLOT_SECONDS = 5


def bucket_sql(value: str, scale: int = HISTOGRAM_SCALE) -> str:
    """SQL for the OTel bucket index of a positive value: bucket i holds (base^i, base^(i+1)].

    Safe for every Float64: ClickHouse evaluates the bucket of every row before an -If
    combinator filters, and `toInt32` of log2(0) = -inf (or of NaN) raises, so a value
    outside (0, inf) is bucketed as 1 here and counted as zero (or dropped) by the caller.
    """
    return f"toInt32(ceil(log2(if({value} > 0 AND isFinite({value}), {value}, 1)) * {2**scale})) - 1"


class Group(NamedTuple):
    """One slot row's key apart from its metric: the calls of one kind that ended in one `SLOT_SECONDS` slot (UTC)."""

    slot: datetime
    model: str
    operation: str
    service: str
    task: str

    @property
    def minute(self) -> datetime:
        return self.slot.replace(second=0, microsecond=0)


# Under FINAL, ClickHouse by default widens what the `end_time` index kept to every granule whose key
# range another version of a kept row could share (2-3x the calls read here). Every version of a
# call carries the end time it was first stored with (later versions copy the row), so the
# versions the index skips are of calls outside the slots: exact without the widening.
_SLOT_READ_SETTINGS = {"use_skip_indexes_if_final": 1, "use_skip_indexes_if_final_exact_mode": 0}
_METRIC_VALUES = "[('latency_ms', latency_ms), ('ttft_ms', ttft_ms), ('output_tps', output_tokens_per_s)]"
_SLOT = f"toDateTime(toStartOfInterval(end_time, INTERVAL {SLOT_SECONDS} SECOND), 'UTC')"
# Calls that ended in [first, end): the range the `end_time` index prunes by, and the primary key
# by start time (no call ends before it starts).
_ENDED = "end_time >= %(first)s AND end_time < %(end)s AND start_time < %(end)s"


def recompute(client: Client, database: str, minutes: Iterable[datetime]) -> int:
    """Rebuild every slot and histogram row of the given minutes (UTC); returns how many minutes."""
    wanted = sorted({m.replace(second=0, microsecond=0) for m in minutes})
    if wanted:
        _rebuild_slots(
            client,
            database,
            f"{_ENDED} AND toStartOfMinute(end_time) IN %(minutes)s",
            {"first": wanted[0], "end": wanted[-1] + timedelta(minutes=1), "minutes": wanted},
        )
        _roll_up(client, database, "toStartOfMinute(slot) IN %(minutes)s", {"minutes": wanted})
    return len(wanted)


def recompute_groups(client: Client, database: str, groups: Iterable[Group]) -> int:
    """Rebuild the slot rows of these groups (a batch's calls), then their minutes' rows; returns how many slots.

    The models narrow the scan by the primary key (model, start_time), the time range by
    it (no call ends before it starts) and by the minmax index on `end_time` to the parts and
    granules of the slots' few seconds, however full their minute already is. The filter is the touched
    slots times the touched kinds, a superset of the groups: rebuilding a group the batch did
    not touch rewrites the row it already has (same calls, same `ver`), and a list of every
    (slot, kind) tuple cost the parser 2-4x the whole rebuild when a batch spans many slots
    (bench/processor.py: ~2,700 groups per 10k calls spread over an hour).
    """
    wanted = set(groups)
    if not wanted:
        return 0
    slots = sorted({group.slot for group in wanted})
    minutes = sorted({group.minute for group in wanted})
    kinds = sorted({(group.model, group.operation, group.service, group.task) for group in wanted})
    models = sorted({kind[0] for kind in kinds})
    _rebuild_slots(
        client,
        database,
        f"model IN %(models)s AND {_ENDED} AND {_SLOT} IN %(slots)s AND (model, operation, service, task) IN %(kinds)s",
        {
            "models": models,
            "first": slots[0],
            "end": slots[-1] + timedelta(seconds=SLOT_SECONDS),
            "slots": slots,
            "kinds": kinds,
        },
    )
    _roll_up(
        client,
        database,
        "model IN %(models)s AND slot >= %(first)s AND slot < %(end)s"
        " AND toStartOfMinute(slot) IN %(minutes)s AND (model, operation, service, task) IN %(kinds)s",
        {
            "models": models,
            "first": minutes[0],
            "end": minutes[-1] + timedelta(minutes=1),
            "minutes": minutes,
            "kinds": kinds,
        },
    )
    return len(wanted)


def _rebuild_slots(client: Client, database: str, where: str, parameters: dict[str, object]) -> None:
    client.command(
        f"""
        INSERT INTO {database}.latency_histogram_slots
        SELECT slot, metric, model, operation, service, task, {HISTOGRAM_SCALE} AS scale,
               count() AS count, sum(v) AS sum, min(v) AS min, max(v) AS max,
               countIf(v <= 0) AS zero_count,
               CAST(sumMapIf(map({bucket_sql("v")}, toUInt64(1)), v > 0), 'Map(Int32, UInt64)') AS buckets,
               count() AS ver
        FROM (
            SELECT {_SLOT} AS slot, model, operation, service, task,
                   arrayJoin({_METRIC_VALUES}) AS metric_value,
                   metric_value.1 AS metric, assumeNotNull(metric_value.2) AS v
            FROM {database}.llm_calls FINAL
            WHERE {where}
              AND (is_error = 0 OR is_timeout = 1)
              AND metric_value.2 IS NOT NULL
              AND isFinite(assumeNotNull(metric_value.2))
        )
        GROUP BY slot, metric, model, operation, service, task
        """,
        parameters=parameters,
        # A server that predates the exact mode rejects the setting, and skips inexactly anyway.
        settings={name: value for name, value in _SLOT_READ_SETTINGS.items() if name in client.server_settings},
    )


def _roll_up(client: Client, database: str, where: str, parameters: dict[str, object]) -> None:
    """Minute rows as exact merges of their slot rows (the most complete version of each slot)."""
    client.command(
        f"""
        INSERT INTO {database}.latency_histograms
        SELECT minute, metric, model, operation, service, task, {HISTOGRAM_SCALE} AS scale,
               sum(n) AS count, sum(total) AS sum, min(low) AS min, max(high) AS max,
               sum(zeros) AS zero_count, CAST(sumMap(b), 'Map(Int32, UInt64)') AS buckets,
               sum(n) AS ver
        FROM (
            SELECT toStartOfMinute(slot) AS minute, metric, model, operation, service, task,
                   count AS n, sum AS total, min AS low, max AS high, zero_count AS zeros, buckets AS b
            FROM {database}.latency_histogram_slots FINAL
            WHERE {where}
        )
        GROUP BY minute, metric, model, operation, service, task
        """,
        parameters=parameters,
    )
