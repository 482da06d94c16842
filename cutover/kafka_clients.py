"""Every Kafka client of the project is built here, from one validated connection.

The processor's consumer and DLQ producer, the span exporter's and `cutover collect`'s
producers, the local broker's admin and round-trip clients and the tests' probes all reach
Kafka through `consumer`, `producer` and `admin`, so bootstrap, TLS, SASL and client id
are set once (from `CUTOVER_KAFKA_*`, see `CutoverSettings`) and a secure cluster needs
no change anywhere else. Callers pass only what is theirs to decide (acks, group, timeouts).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, SecretStr

from cutover.settings import CutoverSettings

if TYPE_CHECKING:  # kafka-python is imported when a client is built: `cutover --help` stays fast
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.admin import KafkaAdminClient

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
# kafka-python's option values are str, int, bool, objects (partitioner, listener) or None.
ClientOption = object


class KafkaConnection(BaseModel):
    """Where the brokers are and how to authenticate to them."""

    model_config = ConfigDict(frozen=True)

    bootstrap: tuple[str, ...]
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism = "PLAIN"
    sasl_username: str = ""
    sasl_password: SecretStr = SecretStr("")
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_key_password: SecretStr = SecretStr("")
    ssl_check_hostname: bool = True
    client_id: str = "cutover"

    @classmethod
    def from_settings(cls, settings: CutoverSettings) -> KafkaConnection:
        """The connection the settings describe; a password file is read now, so a rotated secret needs a restart only."""
        password = settings.kafka_sasl_password
        if settings.kafka_sasl_password_file is not None:
            password = SecretStr(settings.kafka_sasl_password_file.read_text().strip())
        return cls(
            bootstrap=tuple(settings.bootstrap_servers),
            security_protocol=settings.kafka_security_protocol,
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_username=settings.kafka_sasl_username,
            sasl_password=password,
            ssl_cafile=settings.kafka_ssl_cafile,
            ssl_certfile=settings.kafka_ssl_certfile,
            ssl_keyfile=settings.kafka_ssl_keyfile,
            ssl_key_password=settings.kafka_ssl_key_password,
            ssl_check_hostname=settings.kafka_ssl_check_hostname,
            client_id=settings.kafka_client_id,
        )

    @classmethod
    def plaintext(cls, bootstrap: str | Sequence[str]) -> KafkaConnection:
        servers = bootstrap.split(",") if isinstance(bootstrap, str) else bootstrap
        return cls(bootstrap=tuple(servers))

    def options(self, role: str) -> dict[str, ClientOption]:
        """kafka-python keyword arguments shared by every client; `role` names the client (`<prefix>-<role>`)."""
        options: dict[str, ClientOption] = {
            "bootstrap_servers": list(self.bootstrap),
            "client_id": f"{self.client_id}-{role}",
            "security_protocol": self.security_protocol,
        }
        if self.security_protocol.startswith("SASL_"):
            options.update(
                sasl_mechanism=self.sasl_mechanism,
                sasl_plain_username=self.sasl_username,
                sasl_plain_password=self.sasl_password.get_secret_value(),
            )
        if self.security_protocol.endswith("SSL"):
            options.update(
                ssl_check_hostname=self.ssl_check_hostname,
                ssl_cafile=_path(self.ssl_cafile),
                ssl_certfile=_path(self.ssl_certfile),
                ssl_keyfile=_path(self.ssl_keyfile),
                ssl_password=self.ssl_key_password.get_secret_value() or None,
            )
        return options


def _path(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _merge(connection: KafkaConnection, role: str, options: dict[str, ClientOption]) -> dict[str, ClientOption]:
    shared = connection.options(role)
    clash = sorted(shared.keys() & options.keys())
    if clash:
        raise TypeError(f"{', '.join(clash)} come from the connection, not from the caller")
    return shared | options


def consumer(connection: KafkaConnection, role: str, *topics: str, **options: ClientOption) -> KafkaConsumer:
    from kafka import KafkaConsumer

    return KafkaConsumer(*topics, **_merge(connection, role, options))


def producer(connection: KafkaConnection, role: str, **options: ClientOption) -> KafkaProducer:
    from kafka import KafkaProducer

    return KafkaProducer(**_merge(connection, role, options))


def admin(connection: KafkaConnection, role: str, **options: ClientOption) -> KafkaAdminClient:
    from kafka.admin import KafkaAdminClient

    return KafkaAdminClient(**_merge(connection, role, options))
