"""The broker's lifecycle: write its config, format its storage once, start, stop, create topics."""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from cutover import kafka_clients
from cutover.kafka_clients import KafkaConnection
from cutover.local_kafka.config import BrokerConfig, ScramListener, TlsListener
from cutover.local_kafka.net import port_open, round_trip
from cutover.local_kafka.settings import BrokerSettings
from cutover.local_kafka.tools import BrokerError, ensure_jars, java_command


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
    scram: ScramListener | None = None
    tls: TlsListener | None = None

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
    def connection(self) -> KafkaConnection:
        """The PLAINTEXT listener, which the broker always serves."""
        return KafkaConnection.plaintext(self.bootstrap)

    @property
    def log_file(self) -> Path:
        return self.state / "broker.log"

    @property
    def data(self) -> Path:
        """The broker's log directory: one folder of segment files per topic partition."""
        return self.state / "data"

    @property
    def _pid_file(self) -> Path:
        return self.state / "broker.pid"

    @property
    def _properties(self) -> Path:
        return self.state / "server.properties"

    @property
    def _config(self) -> BrokerConfig:
        return BrokerConfig(self.port, self.controller_port, self.partitions, self.data, scram=self.scram, tls=self.tls)

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

    def _java(self, *args: str) -> list[str]:
        return java_command(self.libs, self.heap, *args)

    def _format_once(self) -> None:
        if (self._config.data / "meta.properties").exists():
            return
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        users = self.scram.storage_arguments() if self.scram is not None else []
        done = subprocess.run(
            # `--cluster-id=ID` in one word: a base64 id may start with "-" and read as an option.
            self._java(
                "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}", "-c", str(self._properties), *users
            ),
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
        config = self._config
        for port in config.ports:
            if port_open("127.0.0.1", port):
                raise BrokerError(f"port {port} is taken by another process; stop it or pick other ports")
        ensure_jars(self.libs)
        self.state.mkdir(parents=True, exist_ok=True)
        self._properties.write_text(config.properties())
        self._format_once()
        with self.log_file.open("ab") as log:
            process = subprocess.Popen(
                self._java("kafka.Kafka", str(self._properties)),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._pid_file.write_text(str(process.pid))
        deadline = time.monotonic() + timeout
        while not all(port_open("127.0.0.1", port) for port in config.ports):
            if process.poll() is not None:
                raise BrokerError(f"the broker exited with code {process.returncode}; see {self.log_file}")
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerError(
                    f"the broker did not open ports {config.ports} in {timeout:.0f}s; see {self.log_file}"
                )
            time.sleep(0.2)
        self.round_trip(max(5.0, deadline - time.monotonic()))
        self.create_topics(self.topics)
        return True

    def create_topics(self, names: tuple[str, ...] | list[str]) -> None:
        from kafka.admin import NewTopic
        from kafka.errors import TopicAlreadyExistsError

        if not names:
            return
        admin = kafka_clients.admin(self.connection, "local-broker")
        try:
            existing = set(admin.list_topics())
            wanted = [NewTopic(n, self.partitions, 1) for n in names if n not in existing]
            if wanted:
                with contextlib.suppress(TopicAlreadyExistsError):
                    admin.create_topics(wanted)
        finally:
            admin.close()

    def round_trip(self, timeout: float = 30.0) -> float:
        return round_trip(self.connection, timeout)

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
        while time.monotonic() < deadline and any(port_open("127.0.0.1", port) for port in self._config.ports):
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
