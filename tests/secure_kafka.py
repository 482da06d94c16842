"""The test broker's secured listeners: SCRAM users, and a throwaway CA with broker and client certificates."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    broker_keystore: Path  # private key, then certificate chain (Kafka's PEM keystore)
    client_cert: Path
    client_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    usage: x509.ObjectIdentifier | None = None,
) -> x509.Certificate:
    now = datetime.now(UTC)
    issuer_name, issuer_key = issuer or (_name(subject), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if usage is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        ).add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def make_tls_files(folder: Path) -> TlsFiles:
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, broker_key, client_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = _issue("cutover-test-ca", ca_key, None, ca=True)
    issuer = (ca.subject, ca_key)
    broker = _issue("127.0.0.1", broker_key, issuer, usage=ExtendedKeyUsageOID.SERVER_AUTH)
    client = _issue("cutover-test-client", client_key, issuer, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    files = TlsFiles(folder / "ca.pem", folder / "broker.pem", folder / "client.pem", folder / "client-key.pem")
    files.ca.write_bytes(_pem_cert(ca))
    files.broker_keystore.write_bytes(_pem_key(broker_key) + _pem_cert(broker) + _pem_cert(ca))
    files.client_cert.write_bytes(_pem_cert(client))
    files.client_key.write_bytes(_pem_key(client_key))
    return files


SCRAM_USER, SCRAM_PASSWORD = "cutover-test", "scram-secret-42"


@dataclass(frozen=True)
class SecureListeners:
    """Where the session broker's SASL_PLAINTEXT (SCRAM) and SSL (mutual TLS) listeners are."""

    scram_port: int
    tls_port: int
    tls: TlsFiles

    def scram_env(self, mechanism: str = "SCRAM-SHA-512") -> dict[str, str]:
        """`CUTOVER_*` variables of a client of the SCRAM listener."""
        return {
            "CUTOVER_KAFKA_BOOTSTRAP": f"127.0.0.1:{self.scram_port}",
            "CUTOVER_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "CUTOVER_KAFKA_SASL_MECHANISM": mechanism,
            "CUTOVER_KAFKA_SASL_USERNAME": SCRAM_USER,
            "CUTOVER_KAFKA_SASL_PASSWORD": SCRAM_PASSWORD,
        }

    def tls_env(self) -> dict[str, str]:
        """`CUTOVER_*` variables of a client of the TLS listener (with its client certificate)."""
        return {
            "CUTOVER_KAFKA_BOOTSTRAP": f"127.0.0.1:{self.tls_port}",
            "CUTOVER_KAFKA_SECURITY_PROTOCOL": "SSL",
            "CUTOVER_KAFKA_SSL_CAFILE": str(self.tls.ca),
            "CUTOVER_KAFKA_SSL_CERTFILE": str(self.tls.client_cert),
            "CUTOVER_KAFKA_SSL_KEYFILE": str(self.tls.client_key),
        }
