"""Writes a batch of call columns to `llm_calls`, then recomputes the histograms it touched.

Both steps are idempotent (ReplacingMergeTree on span id; histograms rebuilt from
`llm_calls FINAL`), so the caller may retry a failed write as a whole and Kafka may
redeliver a batch: the tables converge on the same rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from clickhouse_connect.driver.client import Client

from processors.histograms import recompute

_US_PER_MINUTE = 60_000_000


def touched_minutes(start_times_us: list[int]) -> list[datetime]:
    """The UTC minutes (as datetimes) that a batch's start times fall in."""
    return [
        datetime.fromtimestamp(minute * 60, tz=UTC).replace(tzinfo=None)
        for minute in sorted({start // _US_PER_MINUTE for start in start_times_us})
    ]


class CallWriter:
    def __init__(self, client: Client, database: str) -> None:
        self.client = client
        self.database = database

    def write(self, columns: dict[str, list]) -> int:
        """Insert the batch and rebuild its minutes' histograms; returns rows written."""
        rows = self.insert(columns)
        self.recompute(touched_minutes(columns["start_time"]))
        return rows

    def insert(self, columns: dict[str, list]) -> int:
        """Insert the batch (column-oriented); returns rows written."""
        rows = len(columns["span_id"])
        if rows:
            self.client.insert(
                "llm_calls",
                list(columns.values()),
                column_names=list(columns),
                database=self.database,
                column_oriented=True,
            )
        return rows

    def recompute(self, minutes: Iterable[datetime]) -> int:
        """Rebuild the histograms of these minutes from the stored calls; returns how many minutes."""
        return recompute(self.client, self.database, minutes)
