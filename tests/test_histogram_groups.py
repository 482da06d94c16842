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


def slot_of(start_us: int) -> int:
    """The slot (its start in whole seconds since the epoch) of a call starting at `start_us` microseconds."""
    return start_us // (SLOT_SECONDS * 1_000_000) * SLOT_SECONDS


def of_minute(group: Group) -> Group:
    """The key of the minute row this slot rolls up into."""
    return group._replace(slot=group.minute)


def split_by_slot(table: pa.Table) -> list[pa.Table]:
    """The batch cut into one batch per slot, in time order (as a live minute fills)."""
    starts = table["start_time"].cast(pa.int64()).to_pylist()
    slot = pa.array([slot_of(start) for start in starts])
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


def test_a_store_made_before_slots_gets_the_slots_of_its_last_hour(
    ch_client: Client, databases: tuple[str, str]
) -> None:
    upgraded, fresh = databases
    columns = batch_columns()
    minutes = {group.minute for group in touched_groups(columns)}
    for database in databases:
        CallWriter(ch_client, database).insert(columns)
        recompute(ch_client, database, minutes)
    ch_client.command(f"DROP TABLE {upgraded}.latency_histogram_slots")  # as an older version left it
    migrate(ch_client, upgraded, 0)

    def slots(database: str) -> list[Row]:
        query = f"SELECT * EXCEPT sum FROM {database}.latency_histogram_slots FINAL ORDER BY ALL"
        return [tuple(row) for row in ch_client.query(query).result_rows]

    assert slots(fresh) and slots(upgraded) == slots(fresh)
