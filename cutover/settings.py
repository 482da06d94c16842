"""Validated settings from `CUTOVER_*` environment variables.

Each component declares its own slice as a subclass of `CutoverSettings` in its own
package (same prefix, same `.env` rules) and loads it with `load(...)`, so a bad value
always ends the program the same way: one line naming the variable, exit code 2.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import Field, FilePath, SecretStr, ValidationError, field_validator, model_validator
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
    # Native memory of a long-running process (cutover/memory.py; figures in bench/memory.py).
    chdb_malloc_conf: str = Field(
        default="dirty_decay_ms:0",
        pattern=r"^[A-Za-z0-9_.:,]*$",
        description="Options of chDB's own jemalloc, handed over as `JE_MALLOC_CONF` before chDB loads (an explicit "
        "`JE_MALLOC_CONF` wins; `MALLOC_CONF` does not reach it). Its built-in 5 s decay kept freed buffers resident.",
    )
    chdb_cache_mb: int = Field(
        default=32,
        ge=0,
        le=1_048_576,
        description="MB chDB's caches may hold in all (marks, primary indexes, skip-index marks, query conditions, "
        "compiled expressions); its server defaults (5 GB each) let them grow with the data.",
    )
    chdb_pool_threads: int = Field(
        default=16,
        ge=1,
        le=10_000,
        description="Threads each of chDB's thread pools may hold (global pool's idle threads; file reader, mark "
        "loading, prefetch, writer, I/O, part loading and cleaning pools); its defaults (32-1,000 each) let a "
        "busy pool keep up to that many threads, each with its stack and allocator cache.",
    )
    # How every Kafka client authenticates (cutover/kafka_clients.py builds them all from these).
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="Kafka security protocol: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        default="PLAIN", description="SASL mechanism for the SASL_* protocols: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512."
    )
    kafka_sasl_username: str = Field(default="", description="SASL user name (SASL_* protocols).")
    kafka_sasl_password: SecretStr = Field(
        default=SecretStr(""), description="SASL password (or use CUTOVER_KAFKA_SASL_PASSWORD_FILE)."
    )
    kafka_sasl_password_file: FilePath | None = Field(
        default=None, description="File holding the SASL password (a mounted secret); read when a client is built."
    )
    kafka_ssl_cafile: FilePath | None = Field(
        default=None, description="PEM CA bundle that signed the brokers' certificates (default: the system CAs)."
    )
    kafka_ssl_certfile: FilePath | None = Field(
        default=None, description="PEM client certificate for mutual TLS (with CUTOVER_KAFKA_SSL_KEYFILE)."
    )
    kafka_ssl_keyfile: FilePath | None = Field(default=None, description="PEM private key of the client certificate.")
    kafka_ssl_key_password: SecretStr = Field(
        default=SecretStr(""), description="Password of an encrypted CUTOVER_KAFKA_SSL_KEYFILE."
    )
    kafka_ssl_check_hostname: bool = Field(
        default=True, description="Check that a broker's certificate names the host connected to."
    )
    kafka_client_id: str = Field(
        default="cutover",
        pattern=r"^[A-Za-z0-9._\-]{1,200}$",
        description="Prefix of every Kafka client id (`<prefix>-processor`, `<prefix>-collect`, ...), for quotas and ACL logs.",
    )

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

    @model_validator(mode="after")
    def _kafka_security(self) -> CutoverSettings:
        sasl = self.kafka_security_protocol.startswith("SASL_")
        tls = self.kafka_security_protocol.endswith("SSL")
        protocol = f"CUTOVER_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol}"
        has_password = bool(self.kafka_sasl_password.get_secret_value())
        if sasl and not (self.kafka_sasl_username and (has_password or self.kafka_sasl_password_file)):
            raise ValueError(
                f"{protocol} needs CUTOVER_KAFKA_SASL_USERNAME and CUTOVER_KAFKA_SASL_PASSWORD or _PASSWORD_FILE"
            )
        if has_password and self.kafka_sasl_password_file:
            raise ValueError("set CUTOVER_KAFKA_SASL_PASSWORD or CUTOVER_KAFKA_SASL_PASSWORD_FILE, not both")
        if not sasl and (self.kafka_sasl_username or has_password or self.kafka_sasl_password_file):
            raise ValueError(f"SASL credentials are set but {protocol} does not use SASL")
        if (self.kafka_ssl_certfile is None) != (self.kafka_ssl_keyfile is None):
            raise ValueError("CUTOVER_KAFKA_SSL_CERTFILE and CUTOVER_KAFKA_SSL_KEYFILE go together")
        if not tls and (self.kafka_ssl_cafile or self.kafka_ssl_certfile):
            raise ValueError(f"TLS files are set but {protocol} does not use TLS")
        return self

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
        message = str(err["msg"]).removeprefix("Value error, ")
        # A rule across several variables (a model validator) names them in its message.
        parts.append(f"{prefix}{str(err['loc'][0]).upper()}: {message}" if err["loc"] else message)
    return "invalid configuration: " + "; ".join(parts)


def load(cls: type[S], **overrides: Any) -> S:
    """Build settings from the environment, or exit 2 with one clear line.

    `overrides` are field values of any type: pydantic validates them as it does the environment's.
    """
    try:
        return cls(**overrides)
    except ValidationError as error:
        print(f"cutover: {describe(error, cls)}", file=sys.stderr)
        raise SettingsError(2) from None
