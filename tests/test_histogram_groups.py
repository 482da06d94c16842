"""Recomputing only the slots a batch touched gives the rows a whole-minute recompute gives, and no others."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from clickhouse_connect.driver.client import Client

from processors.decode import decode
from processors.enrich import Enricher
from processors.histograms import SLOT_SECONDS, Group, recompute, recompute_groups
from processors.pricing import PriceBook
from processors.refusal import refusal
from processors.schema import migrate
from processors.writer import CallWriter, touched_groups
from tests.processor_workload import make_calls, messages

Row = tuple[object, ...]


def batch_columns() -> pa.Table:
    """Calls over ~4 minutes, three models, two tasks: several groups per minute."""
    calls = make_calls(900, seed=3, spread_s=200)
    for i, call in enumerate(calls):
        call.task = ("knowledge", "coding")[i % 2]
    rows = [row for _, value in messages(calls, per_message=50) for row in decode(value).rows]
    return Enricher(PriceBook.load(), refusal).table(rows)


@pytest.fixture
def databases(ch_client: Client, ch_database: str) -> Iterator[tuple[str, str]]:
    other = f"{ch_database}_groups"
    for database in (ch_database, other):
        migrate(ch_client, database, 0)
    try:
        yield ch_database, other
    finally:
        ch_client.command(f"DROP DATABASE IF EXISTS {other}")


def histogram_rows(client: Client, database: str) -> list[Row]:
    return [
        tuple(row)
        for row in client.query(
            f"""
            SELECT minute, metric, model, operation, service, task, count, sum, min, max, zero_count,
                   toString(buckets), ver
            FROM {database}.latency_histograms FINAL
            ORDER BY minute, metric, model, operation, service, task
            """
        ).result_rows
    ]


def test_group_recompute_equals_the_whole_minute_recompute(ch_client: Client, databases: tuple[str, str]) -> None:
    by_minute, by_group = databases
    columns = batch_columns()
    groups = touched_groups(columns)
    assert len({group.minute for group in groups}) >= 3 and len(groups) >= 12, groups
    for database in databases:
        CallWriter(ch_client, database).insert(columns)
    recompute(ch_client, by_minute, {group.minute for group in groups})
    assert recompute_groups(ch_client, by_group, groups) == len(groups)
    expected = histogram_rows(ch_client, by_minute)
    assert expected  # the workload has calls in the histograms
    assert histogram_rows(ch_client, by_group) == expected


def test_only_the_touched_minutes_are_rebuilt(ch_client: Client, databases: tuple[str, str]) -> None:
    by_minute, by_group = databases
    columns = batch_columns()
    groups = sorted(touched_groups(columns))
    for database in databases:
        CallWriter(ch_client, database).insert(columns)
    recompute(ch_client, by_minute, {group.minute for group in groups})
    one = of_minute(groups[len(groups) // 2])
    slots = [group for group in groups if of_minute(group) == one]
    assert recompute_groups(ch_client, by_group, slots) == len(slots)
    rows = histogram_rows(ch_client, by_group)
    assert rows, "the group's histograms were not rebuilt"
    assert {(row[0], *row[2:6]) for row in rows} == {tuple(one)}
    assert rows == [row for row in histogram_rows(ch_client, by_minute) if (row[0], *row[2:6]) == tuple(one)]


def slot_of(end_us: int) -> int:
    """The slot (its start in whole seconds since the epoch) of a call ending at `end_us` microseconds."""
    return end_us // (SLOT_SECONDS * 1_000_000) * SLOT_SECONDS


def of_minute(group: Group) -> Group:
    """The key of the minute row this slot rolls up into."""
    return group._replace(slot=group.minute)


def split_by_slot(table: pa.Table) -> list[pa.Table]:
    """The batch cut into one batch per slot, in time order (as a live minute fills: spans arrive as they end)."""
    ends = table["end_time"].cast(pa.int64()).to_pylist()
    slot = pa.array([slot_of(end) for end in ends])
    return [table.filter(pc.equal(slot, one)) for one in sorted(set(slot.to_pylist()))]


def test_batches_recomputing_only_their_own_slots_build_exact_minutes_and_replays_change_nothing(
    ch_client: Client, databases: tuple[str, str]
) -> None:
    """Each batch rebuilds only the slots it touched; the minute rows still cover every earlier batch."""
    whole, incremental = databases
    columns = batch_columns()
    batches = split_by_slot(columns)
    assert len(batches) >= 24  # several slots per minute: minutes fill batch by batch
    CallWriter(ch_client, whole).insert(columns)
    recompute(ch_client, whole, {group.minute for group in touched_groups(columns)})
    writer = CallWriter(ch_client, incremental)
    for batch in [*batches, *batches[::7]]:  # then some replayed (at-least-once delivery)
        writer.insert(batch)
        groups = touched_groups(batch)
        assert len({group.slot for group in groups}) == 1
        writer.recompute(groups)
    assert same_rows(histogram_rows(ch_client, incremental), histogram_rows(ch_client, whole))


def same_rows(rows: list[Row], expected: list[Row]) -> bool:
    """Equal rows, the float `sum` to rounding: slots add the same values in another order."""
    sum_at = 7
    assert [row[sum_at] for row in rows] == pytest.approx([row[sum_at] for row in expected], rel=1e-12)
    return [row[:sum_at] + row[sum_at + 1 :] for row in rows] == [row[:sum_at] + row[sum_at + 1 :] for row in expected]


def test_a_store_keyed_by_start_time_gets_its_last_hour_rebuilt_by_end_time(
    ch_client: Client, databases: tuple[str, str]
) -> None:
    """A store of an older version: no `end_time` column or index, histograms by start time (here: rows that
    would win over any rebuild, as more calls per row). Its start rebuilds the hour; later starts leave it."""
    upgraded, fresh = databases
    columns = batch_columns()
    minutes = {group.minute for group in touched_groups(columns)}
    for database in databases:
        CallWriter(ch_client, database).insert(columns)
        recompute(ch_client, database, minutes)
    ch_client.command(f"ALTER TABLE {upgraded}.llm_calls DROP INDEX idx_end")
    for table in ("shadow_pair_calls_mv", "shadow_pair_calls"):  # the view reads every column it keeps
        ch_client.command(f"DROP TABLE {upgraded}.{table}")
    ch_client.command(f"ALTER TABLE {upgraded}.llm_calls DROP COLUMN end_time", settings={"mutations_sync": 1})
    for table, key in (("latency_histogram_slots", "slot"), ("latency_histograms", "minute")):
        ch_client.command(
            f"INSERT INTO {upgraded}.{table} SELECT {key} - INTERVAL 1 MINUTE, * EXCEPT ({key}) REPLACE"
            f" (count + 1 AS count, ver + 1000 AS ver) FROM {upgraded}.{table} FINAL"
        )
    ch_client.command(f"ALTER TABLE {upgraded}.latency_histogram_slots MODIFY COMMENT ''")  # as it left the table
    migrate(ch_client, upgraded, 0)

    def rows(database: str, table: str) -> list[Row]:
        query = f"SELECT * EXCEPT sum FROM {database}.{table} FINAL ORDER BY ALL"
        return [tuple(row) for row in ch_client.query(query).result_rows]

    for table in ("latency_histogram_slots", "latency_histograms"):
        assert rows(fresh, table) and rows(upgraded, table) == rows(fresh, table), table
    indexes = f"SELECT name FROM system.data_skipping_indices WHERE database = '{upgraded}' AND table = 'llm_calls'"
    assert "idx_end" in {row[0] for row in ch_client.query(indexes).result_rows}
    # Done once: a later start leaves newer rows alone.
    ch_client.command(
        f"INSERT INTO {upgraded}.latency_histograms SELECT * REPLACE (ver + 1 AS ver) FROM {upgraded}.latency_histograms FINAL LIMIT 1"
    )
    changed = rows(upgraded, "latency_histograms")
    migrate(ch_client, upgraded, 0)
    assert rows(upgraded, "latency_histograms") == changed


def test_a_call_counts_in_the_minute_it_ended(ch_client: Client, databases: tuple[str, str]) -> None:
    """Calls started 10 s before a minute's end: the fast ones count in that minute, the 20-second ones in the next."""
    database, _ = databases
    calls = make_calls(60, seed=5)
    minute_ns = calls[0].start_ns // 60_000_000_000 * 60_000_000_000
    for i, call in enumerate(calls):
        call.start_ns = minute_ns + 50_000_000_000 + i * 1_000_000
        call.latency_ns = 20_000_000_000 if i % 3 == 0 else 1_000_000_000
        call.ttft_s = None
    rows = [row for _, value in messages(calls, per_message=60) for row in decode(value).rows]
    table = Enricher(PriceBook.load(), refusal).table(rows)
    writer = CallWriter(ch_client, database)
    writer.insert(table)
    writer.recompute(touched_groups(table))
    counted = ch_client.query(
        f"SELECT toUnixTimestamp(minute), sum(count) FROM {database}.latency_histograms FINAL"
        " WHERE metric = 'latency_ms' GROUP BY minute ORDER BY minute"
    ).result_rows
    slow = sum(call.in_histograms for i, call in enumerate(calls) if i % 3 == 0)
    fast = sum(call.in_histograms for i, call in enumerate(calls) if i % 3)
    assert slow and fast
    assert [tuple(row) for row in counted] == [(minute_ns // 10**9, fast), (minute_ns // 10**9 + 60, slow)]
