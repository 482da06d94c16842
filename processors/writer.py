"""Writes a batch of calls (an Arrow table, `processors.enrich`) to `llm_calls`, then recomputes the histograms it touched.

Both steps are idempotent (ReplacingMergeTree on span id; histograms rebuilt from
`llm_calls FINAL`), so the caller may retry a failed write as a whole and Kafka may
redeliver a batch: the tables converge on the same rows.

Batches go in as Arrow tables (`insert_arrow`): ClickHouse parses Arrow natively, where the
Native-format insert encodes every value in Python (its LowCardinality dictionaries alone took
~6 us per call). The table's schema is `processors.columns.INSERT_SCHEMA`, typed from the
column list that also writes the DDL and its migrations.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc
from clickhouse_connect.driver.client import Client

from processors.histograms import SLOT_SECONDS, Group, recompute_groups

TABLE = "llm_calls"
_GROUP_COLUMNS = ("model", "operation", "service", "task")
# No replacing merge of the inserted block itself: that halves chDB's CPU per insert (5.0 ->
# 2.3 us per call, 50k-call batches). Duplicates inside one batch (a span exported twice)
# then collapse like duplicates across batches already do: at the background merge and in
# every `FINAL` read, which all our per-call figures use.
_INSERT_SETTINGS = {"optimize_on_insert": 0}


def touched_groups(table: pa.Table) -> set[Group]:
    """The histogram groups (slot, model, operation, service, task) that a batch's calls fall in."""
    slots = pc.divide(table["end_time"].cast(pa.int64()), SLOT_SECONDS * 1_000_000)  # integer division
    keys = (
        pa.table([slots, *(table[name] for name in _GROUP_COLUMNS)], names=["slot", *_GROUP_COLUMNS])
        .group_by(["slot", *_GROUP_COLUMNS])
        .aggregate([])
        .to_pydict()
    )
    slot_start = {
        slot: datetime.fromtimestamp(slot * SLOT_SECONDS, tz=UTC).replace(tzinfo=None) for slot in set(keys["slot"])
    }
    return {
        Group(slot_start[slot], *kind)
        for slot, *kind in zip(keys["slot"], *(keys[name] for name in _GROUP_COLUMNS), strict=True)
    }


class CallWriter:
    """Inserts through `client`; recomputes through `recompute_client` when given: a connection of
    its own, so a recompute in a background thread does not wait for (or hold up) an insert."""

    def __init__(self, client: Client, database: str, recompute_client: Client | None = None) -> None:
        self.client = client
        self.database = database
        self.recompute_client = recompute_client or client

    def write(self, table: pa.Table) -> int:
        """Insert the batch and rebuild the histograms of the groups it touched; returns rows written."""
        rows = self.insert(table)
        self.recompute(touched_groups(table))
        return rows

    def insert(self, table: pa.Table) -> int:
        """Insert the batch (column-oriented); returns rows written."""
        rows: int = table.num_rows
        if rows:
            self.client.insert_arrow(TABLE, table, database=self.database, settings=_INSERT_SETTINGS)
        return rows

    def recompute(self, groups: Iterable[Group]) -> int:
        """Rebuild the histograms of these groups from the stored calls; returns how many groups."""
        return recompute_groups(self.recompute_client, self.database, groups)
