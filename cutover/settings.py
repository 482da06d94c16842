"""Validated settings from `CUTOVER_*` environment variables.

Each component declares its own slice as a subclass of `CutoverSettings` in its own
package (same prefix, same `.env` rules) and loads it with `load(...)`, so a bad value
always ends the program the same way: one line naming the variable, exit code 2.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import TypeVar

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_HOST_PORT = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

LOCAL_KAFKA_PORT = 9092


class CutoverSettings(BaseSettings):
    """The settings every component shares: where Kafka and ClickHouse are."""

    model_config = SettingsConfigDict(env_prefix="CUTOVER_", extra="ignore", frozen=True)

    home: Path = Field(
        default=Path(".cutover"),
        description="Working folder for local state: broker jars and logs, chDB data.",
    )
    kafka_bootstrap: str = Field(
        default=f"127.0.0.1:{LOCAL_KAFKA_PORT}",
        description="Kafka bootstrap servers, comma separated host:port (default: the local broker).",
    )
    spans_topic: str = Field(
        default="otlp_spans",
        description="Topic of OTLP protobuf span batches (the Collector kafkaexporter's default).",
    )
    dlq_topic: str = Field(default="otlp_spans_dlq", description="Dead-letter topic for undecodable messages.")
    logs_topic: str = Field(
        default="otlp_logs",
        description="Topic of OTLP protobuf log batches: GenAI content events, joined onto their calls (the kafkaexporter's default).",
    )
    consumer_group: str = Field(default="cutover-processor", description="Kafka consumer group of the processors.")
    clickhouse_url: str = Field(
        default="",
        description="`chdb://PATH` (embedded engine, one process per path) or `http(s)://[user:password@]host:port` "
        "(ClickHouse server). Default: chdb:// + `$CUTOVER_HOME/chdb`.",
    )
    clickhouse_database: str = Field(default="cutover", description="ClickHouse database of all cutover tables.")

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap(cls, value: str) -> str:
        servers = [s.strip() for s in value.split(",") if s.strip()]
        bad = [s for s in servers if not _HOST_PORT.match(s) or not 0 < int(s.rsplit(":", 1)[1]) < 65536]
        if not servers or bad:
            raise ValueError(f"expected comma-separated host:port, got {value!r}")
        return ",".join(servers)

    @field_validator("clickhouse_url")
    @classmethod
    def _clickhouse_url(cls, value: str) -> str:
        if value == "":
            return value
        if value.startswith("chdb://"):
            if value == "chdb://":
                raise ValueError("chdb:// needs a data path, e.g. chdb://.cutover/chdb")
            return value
        if re.match(r"^https?://([^/@\s]+@)?[^/:@\s]+(:\d{1,5})?/?$", value):
            return value.rstrip("/")
        raise ValueError(f"expected chdb://PATH or http(s)://host:port, got {value!r}")

    @field_validator("spans_topic", "dlq_topic", "logs_topic", "consumer_group")
    @classmethod
    def _topic(cls, value: str) -> str:
        if not re.match(r"^[A-Za-z0-9._\-]{1,249}$", value):
            raise ValueError(f"not a valid Kafka name: {value!r}")
        return value

    @field_validator("clickhouse_database")
    @classmethod
    def _database(cls, value: str) -> str:
        if not _IDENT.match(value):
            raise ValueError(f"not a valid ClickHouse identifier: {value!r}")
        return value

    @property
    def bootstrap_servers(self) -> list[str]:
        return self.kafka_bootstrap.split(",")

    @property
    def clickhouse_dsn(self) -> str:
        return self.clickhouse_url or f"chdb://{(self.home / 'chdb').resolve()}"

    @property
    def uses_chdb(self) -> bool:
        return self.clickhouse_dsn.startswith("chdb://")


S = TypeVar("S", bound=BaseSettings)


class SettingsError(SystemExit):
    """Raised (exit code 2) with one line naming each offending variable."""


def describe(error: ValidationError, cls: type[BaseSettings]) -> str:
    prefix = cls.model_config.get("env_prefix", "")
    parts = []
    for err in error.errors():
        field = str(err["loc"][0]) if err["loc"] else "?"
        message = str(err["msg"]).removeprefix("Value error, ")
        parts.append(f"{prefix}{field.upper()}: {message}")
    return "invalid configuration: " + "; ".join(parts)


def load(cls: type[S] = CutoverSettings, **overrides: object) -> S:  # type: ignore[assignment]
    """Build settings from the environment, or exit 2 with one clear line."""
    try:
        return cls(**overrides)
    except ValidationError as error:
        print(f"cutover: {describe(error, cls)}", file=sys.stderr)
        raise SettingsError(2) from None
