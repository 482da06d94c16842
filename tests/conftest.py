"""Shared fixtures: a real local Kafka broker and a real chDB engine for the whole session.

chDB allows one engine (one data path) per process, so this test process opens exactly one
path and isolates tests by database (`ch_database`). Tests that run a chDB-owning
subprocess (the processor, the dashboard) give it a path of its own and read it back with
`tests.support.query_chdb_in_subprocess`.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cutover import kafka_clients
from cutover.local_kafka import LocalBroker, ScramListener, TlsListener, free_port
from cutover.store import open_client
from tests.secure_kafka import SCRAM_PASSWORD, SCRAM_USER, SecureListeners, make_tls_files

REPO = Path(__file__).resolve().parents[1]
# The broker jars are cached in the repo's working folder so reruns do not fetch them again.
JAR_CACHE = REPO / ".cutover" / "kafka" / "libs"


@pytest.fixture(scope="session")
def kafka_security(tmp_path_factory: pytest.TempPathFactory) -> SecureListeners:
    """Ports and credentials of the session broker's SCRAM and mutual-TLS listeners."""
    return SecureListeners(free_port(), free_port(), make_tls_files(tmp_path_factory.mktemp("tls")))


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory, kafka_security: SecureListeners) -> Iterator[LocalBroker]:
    """A real Apache Kafka broker on free ports (PLAINTEXT, SCRAM and TLS); fails (never skips) if it cannot start."""
    broker = LocalBroker(
        state=tmp_path_factory.mktemp("kafka"),
        libs=JAR_CACHE,
        port=free_port(),
        controller_port=free_port(),
        partitions=4,
        scram=ScramListener(kafka_security.scram_port, ((SCRAM_USER, SCRAM_PASSWORD),)),
        tls=TlsListener(kafka_security.tls_port, kafka_security.tls.broker_keystore, kafka_security.tls.ca),
    )
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def kafka_bootstrap(kafka_broker: LocalBroker) -> str:
    return kafka_broker.bootstrap


@pytest.fixture
def topic(kafka_broker: LocalBroker) -> str:
    """A fresh 4-partition topic per test."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    kafka_broker.create_topics([name])
    # A consumer that subscribes before the broker's metadata lists the topic would wait for
    # its next metadata refresh; hand the test a topic every client can already see.
    probe = kafka_clients.consumer(kafka_broker.connection, "test-probe")
    try:
        deadline = time.monotonic() + 30
        while len(probe.partitions_for_topic(name) or ()) < kafka_broker.partitions:
            assert time.monotonic() < deadline, f"topic {name} never showed its partitions"
            time.sleep(0.1)
    finally:
        probe.close()
    return name


@pytest.fixture(scope="session")
def chdb_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chdb")


@pytest.fixture(scope="session")
def ch_client(chdb_path: Path):
    """The session's one clickhouse-connect client on chDB."""
    client = open_client(f"chdb://{chdb_path}")
    yield client
    client.close()


@pytest.fixture
def ch_database(ch_client) -> Iterator[str]:
    """A fresh database name per test (the tables are created by whoever migrates)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    ch_client.command(f"DROP DATABASE IF EXISTS {name}")


@pytest.fixture
def cutover_env(tmp_path: Path, kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment for a `cutover` subprocess: the test broker, a private home and chDB path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUTOVER_")}
    env.update(
        CUTOVER_HOME=str(tmp_path / "home"),
        CUTOVER_KAFKA_BOOTSTRAP=kafka_bootstrap,
        CUTOVER_CLICKHOUSE_URL=f"chdb://{tmp_path / 'chdb'}",
    )
    return env


# Tests that need a real broker or chDB (directly or through these fixtures) form the integration tier;
# `pytest -m "not integration"` runs the unit tier alone in seconds.
_INTEGRATION_FIXTURES = {"kafka_broker", "chdb_path"}
_INTEGRATION_MODULES = {"test_demo.py", "test_dashboard_served.py"}  # start the broker or chDB in subprocesses


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.name in _INTEGRATION_MODULES or _INTEGRATION_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
