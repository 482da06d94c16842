"""The group seen from outside: every partition's lag (log end - committed) and which live member owns it.

Runs on its own thread with its own admin client, so a slow broker never holds the consumer
thread; the consumer thread reads the latest `GroupView` and acts on it (`orphaned`).
kafka-python 3.0.12 can leave a member owning nothing after a rebalance under CPU load while the
coordinator believes it owns partitions (its real assignment arrived during a timed-out poll
and was never applied): no one consumes them and the member's own lag figure says 0.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from kafka.structs import TopicPartition

log = logging.getLogger("cutover.processor")


@dataclass(frozen=True)
class GroupView:
    """One look at the group: lag per partition of the topic, owner member id per partition (absent: unowned),
    the group's state as its coordinator reports it ("Stable", "PreparingRebalance", ...)."""

    lag: dict[int, int] = field(default_factory=dict)
    owners: dict[int, str] = field(default_factory=dict)
    at: float = 0.0
    state: str = ""

    @property
    def total_lag(self) -> int:
        return sum(self.lag.values())

    def orphaned(self, member_id: str | None) -> list[int]:
        """Lagging partitions no live member consumes: unowned, or owned by `member_id` (us) while we own none."""
        return sorted(p for p, lag in self.lag.items() if lag > 0 and self.owners.get(p) in (None, member_id))

    def lost_to(self, member_id: str | None) -> bool:
        """A stable group names `member_id` the owner of lagging partitions: if that member holds none, its
        assignment was lost, since a stable group's assignment is final; unowned partitions may only mean
        a rebalance waits for a member slow to rejoin."""
        return self.state == "Stable" and any(
            lag > 0 and self.owners.get(p) == member_id for p, lag in self.lag.items()
        )


class GroupSource(Protocol):
    def view(self) -> GroupView | None: ...
    def close(self) -> None: ...


class Admin(Protocol):
    def describe_topics(self, topics: list[str]) -> list[dict[str, object]]: ...
    def list_group_offsets(self, group_specs: dict[str, None]) -> dict[str, dict[TopicPartition, object]]: ...
    def list_partition_offsets(
        self, topic_partition_specs: dict[TopicPartition, int]
    ) -> dict[TopicPartition, object]: ...
    def describe_groups(self, group_ids: list[str]) -> dict[str, dict[str, object]]: ...
    def close(self) -> None: ...


def look(admin: Admin, topic: str, group: str) -> GroupView:
    """Ask the brokers once: the topic's partitions, their log ends, the group's commits and members."""
    from kafka.protocol.consumer.offsets import OffsetSpec

    described = admin.describe_topics([topic])
    partitions = [int(p["partition_index"]) for t in described for p in t["partitions"]]  # type: ignore[attr-defined]
    tps = [TopicPartition(topic, p) for p in partitions]
    ends = admin.list_partition_offsets(dict.fromkeys(tps, OffsetSpec.LATEST))
    starts = admin.list_partition_offsets(dict.fromkeys(tps, OffsetSpec.EARLIEST))
    committed = admin.list_group_offsets({group: None}).get(group, {})
    lag: dict[int, int] = {}
    for tp in tps:
        done = getattr(committed.get(tp), "offset", -1)
        floor = getattr(starts[tp], "offset", 0)
        lag[tp.partition] = max(0, getattr(ends[tp], "offset", 0) - max(done, floor))
    owners: dict[int, str] = {}
    description = admin.describe_groups([group]).get(group, {})
    for member in description.get("members", []) or []:  # type: ignore[attr-defined]
        # kafka-python 3 decodes the assignment to {"assigned_partitions": [{"topic", "partitions"}], ...}
        for assigned in (member.get("member_assignment") or {}).get("assigned_partitions") or []:
            if assigned.get("topic") == topic:
                for partition in assigned.get("partitions") or []:
                    owners[int(partition)] = str(member.get("member_id"))
    return GroupView(lag=lag, owners=owners, at=time.monotonic(), state=str(description.get("group_state") or ""))


class GroupWatch:
    """Refreshes a `GroupView` every `interval_s` on a daemon thread; `view()` is the latest (None before the first)."""

    def __init__(self, make_admin: Callable[[], Admin], topic: str, group: str, interval_s: float) -> None:
        self._make_admin = make_admin
        self._topic = topic
        self._group = group
        self._interval_s = interval_s
        self._view: GroupView | None = None
        self._admin: Admin | None = None
        self._closing = threading.Event()
        self._failures = 0  # looks failed in a row
        self._thread = threading.Thread(target=self._run, name="cutover-group-watch", daemon=True)
        self._thread.start()

    def view(self) -> GroupView | None:
        return self._view

    def close(self) -> None:
        self._closing.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._closing.is_set():
            try:
                if self._admin is None:
                    self._admin = self._make_admin()
                self._view = look(self._admin, self._topic, self._group)
                self._failures = 0
            except Exception as error:
                self._failures += 1
                # One line per outage; the first looks may fail while the group's coordinator is being set up.
                if self._failures == 3:
                    log.warning(
                        "cannot read the group's lag and members (%s: %s); retrying", type(error).__name__, error
                    )
            self._closing.wait(self._interval_s)
        if self._admin is not None:
            self._admin.close()
