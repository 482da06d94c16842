"""Recomputing only the groups a batch touched gives the rows a whole-minute recompute gives, and no others."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pytest
from clickhouse_connect.driver.client import Client

from processors.decode import decode
from processors.enrich import Enricher
from processors.histograms import Group, recompute, recompute_groups
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


def test_only_the_touched_groups_are_rebuilt(ch_client: Client, databases: tuple[str, str]) -> None:
    by_minute, by_group = databases
    columns = batch_columns()
    groups = sorted(touched_groups(columns))
    for database in databases:
        CallWriter(ch_client, database).insert(columns)
    recompute(ch_client, by_minute, {group.minute for group in groups})
    one: Group = groups[len(groups) // 2]
    recompute_groups(ch_client, by_group, [one])
    rows = histogram_rows(ch_client, by_group)
    assert rows, "the group's histograms were not rebuilt"
    assert {(row[0], *row[2:6]) for row in rows} == {tuple(one)}
    assert rows == [row for row in histogram_rows(ch_client, by_minute) if (row[0], *row[2:6]) == tuple(one)]
