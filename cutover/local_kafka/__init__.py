"""A real Apache Kafka 4.x broker (KRaft combined mode, one node) on 127.0.0.1, without Docker.

The jars come from Maven Central through `mvn` and the pinned `pom.xml` beside this file;
the broker runs on the installed JDK. `cutover kafka start|stop|status` and the tests'
session fixture both drive it through `LocalBroker`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field

from cutover.settings import CutoverSettings

HERE = Path(__file__).parent
POM = HERE / "pom.xml"
LOG4J = HERE / "log4j2.yaml"
HEALTH_TOPIC = "__cutover_health"


class BrokerError(RuntimeError):
    """The local broker cannot be installed, started or reached; the message says why."""


class BrokerSettings(CutoverSettings):
    kafka_controller_port: int = Field(
        default=9093, ge=1, le=65535, description="KRaft controller port of the local broker."
    )
    kafka_partitions: int = Field(
        default=4, ge=1, le=1024, description="Partitions of the topics the local broker creates."
    )
    kafka_heap: str = Field(default="512m", pattern=r"^\d+[mg]$", description="JVM heap of the local broker.")


def require_tools() -> tuple[str, str]:
    """`java` (17+) and `mvn` paths, or a BrokerError naming what to install."""
    java, mvn = shutil.which("java"), shutil.which("mvn")
    missing = [name for name, path in (("java (JDK 17+)", java), ("mvn (Apache Maven)", mvn)) if not path]
    if missing:
        raise BrokerError(
            f"the local Kafka broker needs {' and '.join(missing)} on PATH; "
            "install them (Debian: apt-get install openjdk-17-jdk-headless maven)"
        )
    banner = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    found = re.search(r'version "(\d+)', banner)
    if not found or int(found.group(1)) < 17:
        raise BrokerError(f"the local Kafka broker needs Java 17 or newer; `java -version` says: {banner.strip()[:80]}")
    return java, mvn  # type: ignore[return-value]


def ensure_jars(libs: Path) -> Path:
    """Copy the pinned broker jars into `libs` once per version of the pom."""
    _, mvn = require_tools()
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()[:16]
    stamp = libs / f".pom-{digest}"
    if stamp.exists():
        return libs
    if libs.exists():
        shutil.rmtree(libs)
    libs.mkdir(parents=True)
    done = subprocess.run(
        [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies", f"-DoutputDirectory={libs}"],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise BrokerError(f"mvn could not fetch the Kafka jars:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    stamp.touch()
    return libs


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    with socket.socket() as sock:
        sock.settimeout(timeout)
        return sock.connect_ex((host, port)) == 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LocalBroker:
    """One KRaft node. `state` holds config, data, log and pid; `libs` the (shareable) jar cache."""

    state: Path
    libs: Path
    port: int = 9092
    controller_port: int = 9093
    partitions: int = 4
    heap: str = "512m"
    topics: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: BrokerSettings) -> LocalBroker:
        host, _, port = settings.bootstrap_servers[0].rpartition(":")
        if len(settings.bootstrap_servers) > 1 or host not in ("127.0.0.1", "localhost"):
            raise BrokerError(
                f"CUTOVER_KAFKA_BOOTSTRAP={settings.kafka_bootstrap} is not a local address; "
                "the local broker serves one 127.0.0.1:PORT"
            )
        home = settings.home.resolve() / "kafka"
        return cls(
            state=home,
            libs=home / "libs",
            port=int(port),
            controller_port=settings.kafka_controller_port,
            partitions=settings.kafka_partitions,
            heap=settings.kafka_heap,
            topics=(settings.spans_topic, settings.dlq_topic),
        )

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.state / "broker.log"

    @property
    def _pid_file(self) -> Path:
        return self.state / "broker.pid"

    @property
    def _config(self) -> Path:
        return self.state / "server.properties"

    @property
    def _data(self) -> Path:
        return self.state / "data"

    def pid(self) -> int | None:
        """The broker's pid if its process is alive."""
        try:
            pid = int(self._pid_file.read_text())
            os.kill(pid, 0)
        except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
            return None
        cmdline = Path(f"/proc/{pid}/cmdline")
        if cmdline.exists() and b"kafka.Kafka" not in cmdline.read_bytes():
            return None
        return pid

    def running(self) -> bool:
        return self.pid() is not None and port_open("127.0.0.1", self.port)

    def _write_config(self) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        self._config.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
                    f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=PLAINTEXT",
                    "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                    f"log.dirs={self._data}",
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
        )

    def _java(self, *args: str) -> list[str]:
        java, _ = require_tools()
        return [java, f"-Xmx{self.heap}", f"-Dlog4j2.configurationFile={LOG4J}", "-cp", f"{self.libs}/*", *args]

    def _format_once(self) -> None:
        if (self._data / "meta.properties").exists():
            return
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        done = subprocess.run(
            self._java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(self._config)),
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise BrokerError(f"formatting KRaft storage failed: {done.stdout}{done.stderr}")

    def start(self, timeout: float = 90.0) -> bool:
        """Start the broker and wait for a produce/consume round trip; False if it was already running."""
        if self.running():
            self.round_trip(timeout)
            return False
        for port in (self.port, self.controller_port):
            if port_open("127.0.0.1", port):
                raise BrokerError(f"port {port} is taken by another process; stop it or pick other ports")
        ensure_jars(self.libs)
        self._write_config()
        self._format_once()
        with self.log_file.open("ab") as log:
            process = subprocess.Popen(
                self._java("kafka.Kafka", str(self._config)),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._pid_file.write_text(str(process.pid))
        deadline = time.monotonic() + timeout
        while not port_open("127.0.0.1", self.port):
            if process.poll() is not None:
                raise BrokerError(f"the broker exited with code {process.returncode}; see {self.log_file}")
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerError(f"the broker did not open port {self.port} in {timeout:.0f}s; see {self.log_file}")
            time.sleep(0.2)
        self.round_trip(max(5.0, deadline - time.monotonic()))
        self.create_topics(self.topics)
        return True

    def create_topics(self, names: tuple[str, ...] | list[str]) -> None:
        from kafka.admin import KafkaAdminClient, NewTopic
        from kafka.errors import TopicAlreadyExistsError

        if not names:
            return
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, client_id="cutover-local-broker")
        try:
            existing = set(admin.list_topics())
            wanted = [NewTopic(n, self.partitions, 1) for n in names if n not in existing]
            if wanted:
                with contextlib.suppress(TopicAlreadyExistsError):
                    admin.create_topics(wanted)
        finally:
            admin.close()

    def round_trip(self, timeout: float = 30.0) -> float:
        return round_trip(self.bootstrap, timeout)

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the broker cleanly (SIGTERM, then SIGKILL); False if it was not running."""
        pid = self.pid()
        if pid is None:
            self._pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.2)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.1)
        self._pid_file.unlink(missing_ok=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (
            port_open("127.0.0.1", self.port) or port_open("127.0.0.1", self.controller_port)
        ):
            time.sleep(0.1)
        return True


def _alive(pid: int) -> bool:
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
        if reaped == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat")
    return not (state.exists() and state.read_text().split(")")[-1].split()[0] == "Z")


def round_trip(bootstrap: str, timeout: float = 30.0) -> float:
    """Produce one message to any broker and read it back; returns the seconds it took."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    began = time.monotonic()
    marker = uuid.uuid4().bytes
    deadline = began + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            producer = KafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=5000, max_block_ms=5000)
            try:
                sent = producer.send(HEALTH_TOPIC, marker).get(timeout=10)
            finally:
                producer.close(timeout=2)
            consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=5000)
            try:
                partition = TopicPartition(HEALTH_TOPIC, sent.partition)
                consumer.assign([partition])
                consumer.seek(partition, sent.offset)
                if any(record.value == marker for record in consumer):
                    return time.monotonic() - began
            finally:
                consumer.close()
        except Exception as error:  # a starting broker refuses for a while; retry until the deadline
            last_error = error
            time.sleep(0.5)
    raise BrokerError(f"no produce/consume round trip with {bootstrap} in {timeout:.0f}s: {last_error}")
