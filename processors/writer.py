"""Writes a batch of call columns to `llm_calls`, then recomputes the histograms it touched.

Both steps are idempotent (ReplacingMergeTree on span id; histograms rebuilt from
`llm_calls FINAL`), so the caller may retry a failed write as a whole and Kafka may
redeliver a batch: the tables converge on the same rows.

Batches go in as Arrow tables (`insert_arrow`): pyarrow converts the Python columns in C
and ClickHouse parses Arrow natively, where the Native-format insert encodes every value in
Python (its LowCardinality dictionaries alone took ~6 us per call). bench/processor.py:
insert 7.5 -> 5.4 us per call, rows identical. The Arrow schema is read from the table
itself at the first write, so a column added by a migration needs no change here.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import pyarrow as pa
from clickhouse_connect.driver.client import Client

from processors.histograms import Group, recompute_groups, slot_of

TABLE = "llm_calls"
_PLAIN_TYPES: dict[str, pa.DataType] = {
    "String": pa.string(),
    "Float64": pa.float64(),
    "Float32": pa.float32(),
    "UInt8": pa.bool_(),  # our UInt8 columns are flags; ClickHouse stores an Arrow bool as 0/1
    "UInt16": pa.uint16(),
    "UInt32": pa.uint32(),
    "UInt64": pa.uint64(),
    "Int32": pa.int32(),
    "Int64": pa.int64(),
}


def arrow_type(clickhouse_type: str) -> pa.DataType:
    """The Arrow type a Python column of this ClickHouse column type is converted to."""
    for wrapper in ("LowCardinality(", "Nullable("):
        if clickhouse_type.startswith(wrapper):
            return arrow_type(clickhouse_type[len(wrapper) : -1])
    if clickhouse_type.startswith("DateTime64(6"):
        return pa.timestamp("us", tz="UTC")  # our start times are integer microseconds
    if clickhouse_type.startswith("Decimal("):
        precision, scale = clickhouse_type[len("Decimal(") : -1].split(",")
        return pa.decimal128(int(precision), int(scale))
    try:
        return _PLAIN_TYPES[clickhouse_type]
    except KeyError:
        raise TypeError(f"no Arrow mapping for ClickHouse type {clickhouse_type}") from None


def touched_groups(columns: dict[str, list]) -> set[Group]:
    """The histogram groups (slot, model, operation, service, task) that a batch's calls fall in."""
    keys = set(
        zip(
            [slot_of(start) for start in columns["start_time"]],
            columns["model"], columns["operation"], columns["service"], columns["task"],
            strict=True,
        )
    )  # fmt: skip
    slots = {slot: datetime.fromtimestamp(slot, tz=UTC).replace(tzinfo=None) for slot, *_ in keys}
    return {Group(slots[slot], *kind) for slot, *kind in keys}


class CallWriter:
    """Inserts through `client`; recomputes through `recompute_client` when given: a connection of
    its own, so a recompute in a background thread does not wait for (or hold up) an insert."""

    def __init__(self, client: Client, database: str, recompute_client: Client | None = None) -> None:
        self.client = client
        self.database = database
        self.recompute_client = recompute_client or client
        self._types: dict[str, pa.DataType] | None = None

    def write(self, columns: dict[str, list]) -> int:
        """Insert the batch and rebuild the histograms of the groups it touched; returns rows written."""
        rows = self.insert(columns)
        self.recompute(touched_groups(columns))
        return rows

    def insert(self, columns: dict[str, list]) -> int:
        """Insert the batch (column-oriented); returns rows written."""
        rows = len(columns["span_id"])
        if rows:
            self.client.insert_arrow(TABLE, self.table(columns), database=self.database)
        return rows

    def table(self, columns: dict[str, list]) -> pa.Table:
        """The batch as an Arrow table typed like the `llm_calls` columns it fills."""
        types = self._types
        if types is None or not types.keys() >= columns.keys():
            types = self._types = self._arrow_types(columns)
        return pa.Table.from_arrays(
            [pa.array(values, type=types[name]) for name, values in columns.items()], names=list(columns)
        )

    def _arrow_types(self, columns: Iterable[str]) -> dict[str, pa.DataType]:
        rows = self.client.query(
            "SELECT name, type FROM system.columns WHERE database = %(db)s AND table = %(table)s",
            parameters={"db": self.database, "table": TABLE},
        ).result_rows
        described: dict[str, str] = {str(name): str(kind) for name, kind in rows}
        return {name: arrow_type(described[name]) for name in columns}

    def recompute(self, groups: Iterable[Group]) -> int:
        """Rebuild the histograms of these groups from the stored calls; returns how many groups."""
        return recompute_groups(self.recompute_client, self.database, groups)
