"""A real Apache Kafka 4.x broker (KRaft combined mode, one node) on 127.0.0.1, without Docker.

The jars come from Maven Central through `mvn` and the pinned `pom.xml` beside this file
(`tools`); the broker runs on the installed JDK (`broker`) with a generated configuration
(`config`: PLAINTEXT, plus optional SCRAM and TLS listeners). `cutover kafka
start|stop|status` and the tests' session fixture both drive it through `LocalBroker`.
"""

from cutover.local_kafka.broker import LocalBroker
from cutover.local_kafka.config import ScramListener, TlsListener
from cutover.local_kafka.net import HEALTH_TOPIC, free_port, port_open, round_trip
from cutover.local_kafka.settings import BrokerSettings
from cutover.local_kafka.tools import BrokerError, ensure_jars, require_tools

__all__ = [
    "HEALTH_TOPIC",
    "BrokerError",
    "BrokerSettings",
    "LocalBroker",
    "ScramListener",
    "TlsListener",
    "ensure_jars",
    "free_port",
    "port_open",
    "require_tools",
    "round_trip",
]
