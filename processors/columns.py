"""The `llm_calls` columns, defined once: name, ClickHouse type, codec, default and who fills each.

Everything else follows from this list: the table's DDL and its migrations
(`processors.schema`), the decoder's row order (`DECODED_FIELDS`), the insert column order
(`CALL_COLUMNS`) and the column table of docs/sql.md (checked by a test). Adding a column is
one line here (at the end, so old stores migrate by `ADD COLUMN ... AFTER`) plus its meaning
in docs/sql.md; a decoded column also needs its value in `processors.decode`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pyarrow as pa

# decoded: read from the span by `processors.decode`; derived: added per batch by
# `processors.enrich`; default: filled by ClickHouse (or later re-inserts), never by the insert.
Source = Literal["decoded", "derived", "default"]


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    source: Source
    codec: str = ""
    default: str = ""
    stored: bool = True  # False: a decoded value enrichment consumes, not a column

    def ddl(self) -> str:
        """The column's definition as in `CREATE TABLE` and `ADD COLUMN`."""
        default = f" DEFAULT {self.default}" if self.default else ""
        codec = f" CODEC({self.codec})" if self.codec else ""
        return f"{self.name} {self.type}{default}{codec}"


_LC = "LowCardinality(String)"
COLUMNS: tuple[Column, ...] = (
    Column("trace_id", "String", "decoded", "ZSTD(1)"),
    Column("span_id", "String", "decoded", "ZSTD(1)"),
    Column("start_time", "DateTime64(6, 'UTC')", "decoded", "Delta(8), ZSTD(1)"),
    Column("service", _LC, "decoded"),
    Column("environment", _LC, "decoded"),
    Column("operation", _LC, "decoded"),
    Column("model", _LC, "decoded"),
    Column("response_model", _LC, "decoded"),
    Column("provider", _LC, "decoded"),
    Column("task", _LC, "decoded"),
    Column("latency_ms", "Float64", "decoded", "ZSTD(1)"),
    Column("ttft_ms", "Nullable(Float64)", "decoded", "ZSTD(1)"),
    Column("output_tokens_per_s", "Nullable(Float64)", "decoded", "ZSTD(1)"),
    Column("input_tokens", "UInt32", "decoded", "T64, ZSTD(1)"),
    Column("cached_input_tokens", "UInt32", "decoded", "T64, ZSTD(1)"),
    Column("output_tokens", "UInt32", "decoded", "T64, ZSTD(1)"),
    Column("reasoning_tokens", "UInt32", "decoded", "T64, ZSTD(1)"),
    Column("cost_usd", "Nullable(Decimal(18, 12))", "derived"),
    Column("price_version", _LC, "derived"),
    Column("is_error", "UInt8", "decoded"),
    Column("error_type", _LC, "decoded"),
    Column("finish_reason", _LC, "decoded"),
    Column("is_refusal", "UInt8", "derived"),
    Column("refusal_source", _LC, "derived"),
    Column("api_refusal", "UInt8", "decoded", stored=False),
    Column("client_timeout_s", "Nullable(Float32)", "decoded"),
    Column("is_timeout", "UInt8", "decoded"),
    Column("shadow_pair_id", "String", "decoded", "ZSTD(1)"),
    Column("shadow_role", _LC, "decoded"),
    Column("content_captured", "UInt8", "decoded"),
    Column("input_text", "String", "decoded", "ZSTD(3)"),
    Column("output_text", "String", "decoded", "ZSTD(3)"),
    Column("context_text", "String", "decoded", "ZSTD(3)"),
    Column("reference_answer", "String", "decoded", "ZSTD(3)"),
    Column("hallucination_checked", "UInt8", "derived"),
    Column("hallucination_flag", "UInt8", "derived"),
    Column("hallucination_sample_rate", "Float32", "default", default="1"),
    Column("kafka_partition", "UInt16", "decoded"),
    Column("kafka_offset", "UInt64", "decoded"),
    Column("ingested_at", "DateTime64(3, 'UTC')", "default", default="now64(3)"),
    Column("version", "UInt64", "derived"),
    # Added after the first release (old stores get them by migration, old rows the default).
    Column("tokens_reported", "UInt8", "decoded", default="1"),
    Column("refusal_kind", _LC, "derived", default="''"),
    Column("price_source", _LC, "derived"),
    # The latency histograms count a call in the slot and minute it ended (`processors.histograms`).
    # Old rows (and inserts without it) get it from the start and the latency.
    Column(
        "end_time",
        "DateTime64(6, 'UTC')",
        "decoded",
        "Delta(8), ZSTD(1)",
        default="start_time + toIntervalMicrosecond(toInt64(round(latency_ms * 1000)))",
    ),
)
BY_NAME: dict[str, Column] = {column.name: column for column in COLUMNS}

# A decoded call row (a tuple) holds these, in this order; `enrich` turns rows into columns.
DECODED_FIELDS: tuple[str, ...] = tuple(c.name for c in COLUMNS if c.source == "decoded")
FIELD: dict[str, int] = {name: i for i, name in enumerate(DECODED_FIELDS)}
# The columns an insert writes, in this order (the rest take their defaults).
CALL_COLUMNS: tuple[str, ...] = tuple(c.name for c in COLUMNS if c.stored and c.source != "default")
STORED: tuple[Column, ...] = tuple(c for c in COLUMNS if c.stored)
# `shadow_pair_calls` keeps every stored column but the prompt side's texts: no pair query reads them,
# and (RAG contexts above all) they are most of a call's bytes.
PAIR_LEFT_OUT: tuple[str, ...] = ("input_text", "context_text", "reference_answer")
PAIR_STORED: tuple[Column, ...] = tuple(c for c in STORED if c.name not in PAIR_LEFT_OUT)


_PLAIN_ARROW: dict[str, pa.DataType] = {
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
    """The Arrow type a Python value of this ClickHouse column type is converted to."""
    for wrapper in ("LowCardinality(", "Nullable("):
        if clickhouse_type.startswith(wrapper):
            return arrow_type(clickhouse_type[len(wrapper) : -1])
    if clickhouse_type.startswith("DateTime64(6"):
        return pa.timestamp("us", tz="UTC")  # our start times are integer microseconds
    if clickhouse_type.startswith("Decimal("):
        precision, scale = clickhouse_type[len("Decimal(") : -1].split(",")
        return pa.decimal128(int(precision), int(scale))
    try:
        return _PLAIN_ARROW[clickhouse_type]
    except KeyError:
        raise TypeError(f"no Arrow mapping for ClickHouse type {clickhouse_type}") from None


# A batch of decoded rows converts to Arrow in one pass as a struct array (the transpose and
# the typed conversion both in C++); an insert is an Arrow table of this schema.
DECODED_STRUCT = pa.struct([(c.name, arrow_type(c.type)) for c in COLUMNS if c.source == "decoded"])
INSERT_SCHEMA = pa.schema([(name, arrow_type(BY_NAME[name].type)) for name in CALL_COLUMNS])
