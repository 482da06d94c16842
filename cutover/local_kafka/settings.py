"""Settings of the local broker (`cutover kafka start|stop|status`)."""

from __future__ import annotations

from pydantic import Field

from cutover.settings import CutoverSettings


class BrokerSettings(CutoverSettings):
    kafka_controller_port: int = Field(
        default=9093, ge=1, le=65535, description="KRaft controller port of the local broker."
    )
    kafka_partitions: int = Field(
        default=4, ge=1, le=1024, description="Partitions of the topics the local broker creates."
    )
    kafka_heap: str = Field(default="512m", pattern=r"^\d+[mg]$", description="JVM heap of the local broker.")
