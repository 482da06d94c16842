"""server.properties of the one-node KRaft broker, with optional SCRAM and TLS listeners.

The PLAINTEXT listener always exists (inter-broker traffic, topic creation, health checks);
the secured ones are for clients that must prove they can authenticate.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class ScramListener:
    """A SASL_PLAINTEXT listener accepting SCRAM-SHA-256/512 for `users` (name, password)."""

    port: int
    users: tuple[tuple[str, str], ...]

    def storage_arguments(self) -> list[str]:
        """`kafka-storage format` arguments that create the users' credentials with the cluster."""
        return [
            argument
            for name, password in self.users
            for mechanism in SCRAM_MECHANISMS
            for argument in ("--add-scram", f"{mechanism}=[name={name},password={password}]")
        ]


@dataclass(frozen=True)
class TlsListener:
    """An SSL listener: `keystore` is PEM (private key, then certificate chain), `truststore` the PEM CA of clients."""

    port: int
    keystore: Path
    truststore: Path
    client_auth: bool = True


@dataclass(frozen=True)
class BrokerConfig:
    port: int
    controller_port: int
    partitions: int
    data: Path
    scram: ScramListener | None = None
    tls: TlsListener | None = None

    @property
    def ports(self) -> tuple[int, ...]:
        extra = tuple(listener.port for listener in (self.scram, self.tls) if listener is not None)
        return self.port, self.controller_port, *extra

    def properties(self) -> str:
        listeners = {"PLAINTEXT": self.port}
        lines: list[str] = []
        if self.scram is not None:
            listeners["SASL_PLAINTEXT"] = self.scram.port
            lines.append(f"listener.name.sasl_plaintext.sasl.enabled.mechanisms={','.join(SCRAM_MECHANISMS)}")
            lines += [
                f"listener.name.sasl_plaintext.{mechanism.lower()}.sasl.jaas.config="
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
                for mechanism in SCRAM_MECHANISMS
            ]
        if self.tls is not None:
            listeners["SSL"] = self.tls.port
            lines += [
                "listener.name.ssl.ssl.keystore.type=PEM",
                f"listener.name.ssl.ssl.keystore.location={self.tls.keystore}",
                "listener.name.ssl.ssl.truststore.type=PEM",
                f"listener.name.ssl.ssl.truststore.location={self.tls.truststore}",
                f"listener.name.ssl.ssl.client.auth={'required' if self.tls.client_auth else 'none'}",
            ]
        served = ",".join(f"{name}://127.0.0.1:{port}" for name, port in listeners.items())
        protocols = ",".join(f"{name}:{name}" for name in listeners)
        return "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
                f"listeners={served},CONTROLLER://127.0.0.1:{self.controller_port}",
                f"advertised.listeners={served}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                f"listener.security.protocol.map=CONTROLLER:PLAINTEXT,{protocols}",
                *lines,
                f"log.dirs={self.data}",
                f"num.partitions={self.partitions}",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=8",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                # One-node group coordinator: no reason to wait for more members.
                "group.initial.rebalance.delay.ms=0",
                "message.max.bytes=16777216",
                "",
            ]
        )
