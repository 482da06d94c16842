"""The processor's consumer loop, driven step by step through a fake consumer and a fake store (no broker, no chDB).

Each test puts the loop in one situation a real deployment meets (a rebalance mid-retry, a commit
that fails, a stop during an outage, a write that can never succeed, a member left with no
partitions) and asserts what it wrote, committed, counted and which state it ended in.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError, ProgrammingError
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import CommitFailedError
from kafka.structs import OffsetAndMetadata, TopicPartition

from cutover.store import StoreBusy
from processors import service as service_module
from processors.dlq import DeadLetter
from processors.failures import PermanentWriteError, permanent_cause
from processors.group_watch import GroupView
from processors.histograms import Group
from processors.service import TRANSITIONS, Parts, ProcessorService, State
from processors.settings import ProcessorSettings
from tests.processor_workload import make_calls, messages

TOPIC = "spans"


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


@dataclass
class FakeConsumer:
    """A group member's view of a topic: what it owns, its positions, the group's commits; rebalances on demand."""

    log: dict[int, list[tuple[bytes, bytes]]]
    member: str = "me"
    owned: set[TopicPartition] = field(default_factory=set)
    positions: dict[TopicPartition, int] = field(default_factory=dict)
    committed: dict[TopicPartition, int] = field(default_factory=dict)
    paused: set[TopicPartition] = field(default_factory=set)
    listener: ConsumerRebalanceListener | None = None
    at_next_poll: list[Callable[[], None]] = field(default_factory=list)
    commit_failures: int = 0
    assign_on_subscribe: bool = True
    subscriptions: int = 0

    def all_partitions(self) -> set[TopicPartition]:
        return {TopicPartition(TOPIC, p) for p in self.log}

    def subscribe(self, topics: Sequence[str], listener: ConsumerRebalanceListener) -> None:
        self.listener = listener
        self.subscriptions += 1
        if self.assign_on_subscribe:
            self.at_next_poll.append(lambda: self.rebalance(self.all_partitions()))

    def unsubscribe(self) -> None:
        self.rebalance(set())
        self.assign_on_subscribe = True

    def rebalance(self, new: set[TopicPartition]) -> None:
        """Revoke everything (the eager protocol); as kafka-python 3.0 does, a partition we keep keeps its position."""
        assert self.listener is not None
        self.listener.on_partitions_revoked(sorted(self.owned))
        kept = {tp: self.positions[tp] for tp in self.owned & new}
        self.owned = set(new)
        self.paused &= self.owned
        self.positions = {tp: kept.get(tp, self.committed.get(tp, 0)) for tp in self.owned}
        self.listener.on_partitions_assigned(sorted(self.owned))

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[TopicPartition, list[Record]]:
        events, self.at_next_poll = self.at_next_poll, []
        for event in events:
            event()
        out: dict[TopicPartition, list[Record]] = {}
        room = max_records or 10**9
        for tp in sorted(self.owned - self.paused):
            start = self.positions[tp]
            items = self.log[tp.partition][start : start + room]
            if items:
                out[tp] = [Record(TOPIC, tp.partition, start + i, k, v) for i, (k, v) in enumerate(items)]
                self.positions[tp] = start + len(items)
                room -= len(items)
        return out

    def assignment(self) -> set[TopicPartition]:
        return set(self.owned)

    def pause(self, *partitions: TopicPartition) -> None:
        self.paused |= set(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        self.paused -= set(partitions)

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.positions[partition] = offset

    def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        if self.commit_failures:
            self.commit_failures -= 1
            raise CommitFailedError("the group rebalanced before the commit")
        self.committed.update({tp: meta.offset for tp, meta in offsets.items()})

    def close(self, autocommit: bool = False) -> None:
        pass


@dataclass
class FakeStore:
    """Rows by span id (idempotent like ReplacingMergeTree); errors queued per operation; hooks per insert."""

    rows: dict[Any, int] = field(default_factory=dict)
    insert_errors: list[BaseException] = field(default_factory=list)
    recompute_errors: list[BaseException] = field(default_factory=list)
    fail_forever: BaseException | None = None
    on_insert: Callable[[int], None] = lambda attempt: None
    inserts: int = 0
    recomputed: set[datetime] = field(default_factory=set)
    recomputes: int = 0
    gate: threading.Event | None = None  # when set up, a recompute waits for it (it runs in the background)

    def insert(self, table: pa.Table) -> int:
        self.inserts += 1
        self.on_insert(self.inserts)
        if self.fail_forever is not None:
            raise self.fail_forever
        if self.insert_errors:
            raise self.insert_errors.pop(0)
        for span_id in table["span_id"].to_pylist():
            self.rows[span_id] = self.rows.get(span_id, 0) + 1
        return len(table)

    def recompute(self, groups: set[Group]) -> int:
        self.recomputes += 1
        if self.gate is not None:
            assert self.gate.wait(30), "the test never opened the recompute gate"
        if self.recompute_errors:
            raise self.recompute_errors.pop(0)
        self.recomputed |= {group.minute for group in groups}
        return len(groups)


@dataclass
class FakeDLQ:
    letters: list[DeadLetter] = field(default_factory=list)

    def send(self, letter: DeadLetter) -> None:
        self.letters.append(letter)

    def confirm(self, letters: list[DeadLetter]) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass
class FakeContent:
    rows: int = 0

    def submit(self, rows: list[dict[str, Any]]) -> None:
        self.rows += len(rows)

    def stop(self, timeout: float = 30.0) -> None:
        pass


@dataclass
class FakeGroup:
    current: GroupView | None = None

    def view(self) -> GroupView | None:
        return self.current

    def close(self) -> None:
        pass


@dataclass
class Rig:
    service: ProcessorService
    consumer: FakeConsumer
    store: FakeStore
    group: FakeGroup
    calls: int

    def steps(self, n: int = 3) -> None:
        for _ in range(n):
            self.service.step()

    def settled(self) -> None:
        """Step until no written batch waits for its (background) recompute and commit."""
        deadline = time.monotonic() + 30
        while self.service._settling is not None or not self.service._written.empty():
            assert time.monotonic() < deadline, "the background recompute never finished"
            self.service.step()

    def ends(self) -> dict[TopicPartition, int]:
        return {TopicPartition(TOPIC, p): len(items) for p, items in self.consumer.log.items()}


def rig(partitions: int = 2, calls: int = 120, **extra: Any) -> Rig:
    items = list(messages(make_calls(calls, seed=5), per_message=10))
    log = {p: items[p::partitions] for p in range(partitions)}
    values: dict[str, Any] = dict(
        spans_topic=TOPIC,
        batch_max_wait_s=0.001,
        retry_max_backoff_s=0.01,
        processor_metrics_port=0,
        stall_timeout_s=0.05,
        histogram_interval_s=0.0,  # recompute once the previous one is done: each step shows its effect
    )
    settings = ProcessorSettings(**{**values, **extra})
    consumer, store, group = FakeConsumer(log), FakeStore(), FakeGroup()
    parts = Parts(consumer, FakeDLQ(), store, FakeContent(), group, lambda: consumer.member)
    service = ProcessorService(settings, parts=parts)
    service.attach(parts)
    return Rig(service, consumer, store, group, calls)


@pytest.fixture(autouse=True)
def watch_every_step(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service_module, "LAG_INTERVAL_S", 0.0)


def test_every_transition_targets_a_state_and_illegal_ones_are_refused() -> None:
    assert set(TRANSITIONS) == set(State)
    assert all(TRANSITIONS[end] == frozenset() for end in (State.STOPPED, State.FAILED))
    r = rig()
    with pytest.raises(RuntimeError, match="consuming -> revoked"):
        r.service._enter(State.REVOKED)


def test_happy_path_writes_every_call_once_commits_the_log_ends_and_counts() -> None:
    r = rig()
    r.steps()
    r.settled()
    assert len(r.store.rows) == r.calls and set(r.store.rows.values()) == {1}
    assert r.consumer.committed == r.ends()
    assert r.service.stats.messages == sum(r.ends().values()) and r.service.stats.calls_written == r.calls
    assert r.service.state is State.CONSUMING and r.service.partitions == [0, 1]


def test_transient_errors_are_retried_with_backoff_then_everything_is_written() -> None:
    r = rig()
    r.store.insert_errors = [
        OperationalError("Code: 252. DB::Exception: Too many parts (TOO_MANY_PARTS)", code=252),
        OperationalError("HTTPDriver url http://ch:8123 Connection refused"),
    ]
    r.store.recompute_errors = [TimeoutError("read timed out")]
    r.steps()
    r.settled()
    assert r.service.stats.retries == 3
    assert len(r.store.rows) == r.calls and r.consumer.committed == r.ends()


@pytest.mark.parametrize(
    "error",
    [
        DatabaseError(
            "Code: 16. DB::Exception: No such column foo in table llm_calls. (NO_SUCH_COLUMN_IN_TABLE)", code=16
        ),
        DatabaseError("Code: 53. DB::Exception: Type mismatch (TYPE_MISMATCH)"),  # code only in the text (chDB)
        ProgrammingError("Unrecognized column 'foo' in table llm_calls"),  # checked by the client before sending
        ValueError("invalid literal for int() with base 10: 'x'"),
    ],
)
def test_a_permanent_write_error_is_not_retried_and_names_its_cause(error: Exception) -> None:
    r = rig()
    r.store.insert_errors = [error]
    with pytest.raises(PermanentWriteError, match="ClickHouse write failed permanently") as raised:
        r.steps(1)
    assert r.store.inserts == 1 and r.service.stats.retries == 0
    assert r.consumer.committed == {} and r.store.rows == {}
    assert "\n" not in str(raised.value) and str(error).split(".")[0][:20] in str(raised.value)


def test_a_permanent_error_ends_the_loop_failed_with_one_line(caplog: pytest.LogCaptureFixture) -> None:
    r = rig()
    r.store.fail_forever = DatabaseError("Code: 16. DB::Exception: No such column foo (NO_SUCH_COLUMN_IN_TABLE)")
    caplog.set_level(logging.ERROR, "cutover.processor")
    r.service._consume_loop()
    assert r.service.state is State.FAILED and isinstance(r.service.failure, PermanentWriteError)
    errors = [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is None
    assert "NO_SUCH_COLUMN_IN_TABLE" in errors[0].getMessage()
    assert r.consumer.committed == {}


def test_unknown_errors_and_outages_count_as_transient() -> None:
    for error in (
        OperationalError("Code: 60. Table x.llm_calls does not exist (UNKNOWN_TABLE)", code=60),
        ConnectionRefusedError(111, "Connection refused"),
        OperationalError("Code: 241. Memory limit exceeded (MEMORY_LIMIT_EXCEEDED)", code=241),
        RuntimeError("something new"),
    ):
        assert permanent_cause(error) is None, error


def test_a_rebalance_mid_retry_drops_the_batch_uncommitted_and_the_new_assignment_rereads_it() -> None:
    r = rig()
    outage = OperationalError("Connection refused")
    r.store.fail_forever = outage

    def revoke_on_third_attempt(attempt: int) -> None:
        if attempt == 3:  # the next poll, inside the backoff, runs the rebalance
            r.consumer.at_next_poll.append(lambda: r.consumer.rebalance(set()))

    r.store.on_insert = revoke_on_third_attempt
    r.steps(2)
    assert r.service.stats.rebalance_replays == 1 and r.service.state is State.CONSUMING
    assert r.consumer.committed == {} and r.store.rows == {} and r.service.partitions == []
    r.store.fail_forever = None
    r.consumer.rebalance(r.consumer.all_partitions())
    r.steps()
    r.settled()
    assert len(r.store.rows) == r.calls and set(r.store.rows.values()) == {1}
    assert r.consumer.committed == r.ends()


def test_a_rebalance_mid_retry_that_leaves_us_our_partitions_rereads_the_dropped_batch_from_its_first_record() -> None:
    r = rig()
    r.store.fail_forever = OperationalError("Connection refused")

    def rebalance_on_third_attempt(attempt: int) -> None:
        if attempt == 3:  # the next poll, inside the backoff, runs the rebalance: the same partitions come back
            r.consumer.at_next_poll.append(lambda: r.consumer.rebalance(r.consumer.all_partitions()))

    r.store.on_insert = rebalance_on_third_attempt
    r.steps(1)
    assert r.service.stats.rebalance_replays == 1 and r.consumer.committed == {} and r.store.rows == {}
    # Kept partitions kept their positions, past the dropped batch; the loop moved them back.
    assert r.consumer.positions == {tp: 0 for tp in r.consumer.all_partitions()}
    r.store.fail_forever = None
    r.steps()
    r.settled()
    assert r.service.stats.rebalance_replays == 1 and r.service.partitions == [0, 1]
    assert len(r.store.rows) == r.calls and set(r.store.rows.values()) == {1}
    assert r.consumer.committed == r.ends()


def test_a_revoke_while_a_batch_is_in_hand_writes_and_commits_it_before_letting_go() -> None:
    r = rig(batch_max_wait_s=60)  # the batch is not due: only the revoke writes it
    r.steps(2)
    assert r.store.rows == {} and r.consumer.committed == {}
    r.consumer.at_next_poll.append(lambda: r.consumer.rebalance(set()))
    r.steps(1)
    assert len(r.store.rows) == r.calls and r.consumer.committed == r.ends()
    assert r.service.stats.rebalance_replays == 0 and r.service.state is State.CONSUMING


def test_a_revoke_whose_write_fails_drops_the_batch_for_the_new_owner() -> None:
    r = rig(batch_max_wait_s=60)
    r.steps(2)
    r.store.insert_errors = [OperationalError("Connection refused")]
    r.consumer.at_next_poll.append(lambda: r.consumer.rebalance(set()))
    r.steps(1)
    assert r.store.rows == {} and r.consumer.committed == {}
    assert r.service.stats.rebalance_replays == 1 and r.service.state is State.CONSUMING


def test_a_failed_commit_is_counted_and_the_rows_stay_written() -> None:
    r = rig(partitions=1)
    r.consumer.commit_failures = 1
    r.steps(1)
    r.settled()
    assert r.service.stats.commit_failures == 1 and r.consumer.committed == {}
    assert len(r.store.rows) == r.calls and r.service.state is State.CONSUMING


def test_rows_are_written_batch_after_batch_while_their_histograms_recompute_and_nothing_is_committed_before() -> None:
    r = rig(poll_max_records=2, batch_max_calls=10)  # 10 calls a message: two batches per step
    r.store.gate = threading.Event()
    r.steps(3)
    assert r.store.inserts == 6 and len(r.store.rows) == 60  # the row path did not wait for the recompute
    assert r.store.recomputes == 1 and r.consumer.committed == {} and r.service.stats.messages == 0
    r.steps(3)
    assert len(r.store.rows) == r.calls and r.consumer.committed == {}
    r.store.gate.set()
    r.settled()
    assert r.store.recomputes == 2  # the batches written during the first recompute: one more, for all of them
    assert r.consumer.committed == r.ends() and r.service.stats.calls_written == r.calls
    assert r.service.stats.batches == 12 and r.service.state is State.CONSUMING


def test_the_histogram_interval_spaces_recomputes_out_and_still_commits_only_after_them() -> None:
    r = rig(poll_max_records=2, batch_max_calls=10, histogram_interval_s=0.3)
    r.steps(6)
    assert len(r.store.rows) == r.calls and r.store.recomputes == 0 and r.consumer.committed == {}
    time.sleep(0.3)
    r.settled()
    assert r.store.recomputes == 1 and r.consumer.committed == r.ends()


def test_a_stop_waits_for_the_recompute_in_flight_then_commits() -> None:
    r = rig()
    r.store.gate = threading.Event()
    r.steps(2)
    assert len(r.store.rows) == r.calls and r.consumer.committed == {}
    threading.Timer(0.2, r.store.gate.set).start()
    r.service.finish()
    assert r.service.state is State.STOPPED and r.consumer.committed == r.ends()


def test_a_revoke_during_a_recompute_waits_for_it_and_commits_before_letting_go() -> None:
    r = rig()
    r.store.gate = threading.Event()
    r.steps(2)
    assert r.consumer.committed == {}
    threading.Timer(0.2, r.store.gate.set).start()
    r.consumer.at_next_poll.append(lambda: r.consumer.rebalance(set()))
    r.steps(1)
    assert r.consumer.committed == r.ends() and r.service.stats.rebalance_replays == 0


def test_a_rebalance_while_a_failed_recompute_is_retried_drops_it_uncommitted_for_the_new_owner() -> None:
    r = rig()
    r.store.gate = threading.Event()
    r.steps(2)
    r.store.recompute_errors = [OperationalError("Connection refused")] * 50
    r.consumer.at_next_poll.append(lambda: r.consumer.rebalance(set()))  # polled during the retry's backoff
    r.store.gate.set()
    r.settled()
    assert r.consumer.committed == {} and r.service.stats.rebalance_replays == 1
    r.store.recompute_errors = []
    r.consumer.rebalance(r.consumer.all_partitions())
    r.steps()
    r.settled()
    assert r.consumer.committed == r.ends() and set(r.store.rows.values()) == {2}  # re-read, idempotent


def test_stop_while_a_write_is_retrying_gives_up_at_the_deadline_uncommitted() -> None:
    r = rig()
    r.store.fail_forever = OperationalError("Connection refused")
    parts = r.service._parts
    fresh = ProcessorService(r.service.settings, parts=parts)
    fresh.start()
    deadline = time.monotonic() + 30
    while fresh.stats.retries < 3:
        assert time.monotonic() < deadline and fresh.failure is None
        time.sleep(0.01)
    assert fresh.state is State.WRITING
    began = time.monotonic()
    fresh.stop(timeout=0.2)
    assert time.monotonic() - began < 10
    assert fresh.state in {State.STOPPED} and fresh.failure is None  # `in`: mypy keeps the WRITING narrowing
    assert r.consumer.committed == {} and fresh.stats.messages == 0
    assert not any(t.is_alive() for t in threading.enumerate() if t.name == "cutover-consume")


def test_owning_nothing_while_our_partitions_lag_unconsumed_rejoins_the_group(caplog: pytest.LogCaptureFixture) -> None:
    r = rig()
    r.consumer.at_next_poll.clear()  # kafka-python's stall: the coordinator gave us the partitions, we never applied them
    r.group.current = GroupView(lag={0: 6, 1: 6}, owners={0: "me", 1: "me"})
    caplog.set_level(logging.WARNING, "cutover.processor")
    r.steps(1)
    assert r.service.stats.rejoins == 0  # seen once: not yet a stall
    time.sleep(0.06)
    r.steps(1)
    assert r.service.stats.rejoins == 1 and r.consumer.subscriptions == 2
    assert any("own no partitions" in rec.getMessage() for rec in caplog.records)
    r.steps(3)
    assert len(r.store.rows) == r.calls and r.consumer.committed == r.ends()


@pytest.mark.parametrize(
    ("state", "owner", "rejoins"),
    [
        ("Stable", "me", 1),  # a final assignment we never applied: lost, act now
        ("PreparingRebalance", "me", 0),  # the last generation's assignment, still shown during a rebalance
        ("CompletingRebalance", "me", 0),
        ("Stable", None, 0),  # unowned: wait out the stall timeout
    ],
)
def test_a_lost_assignment_in_a_stable_group_rejoins_at_the_next_look_without_the_stall_timeout(
    state: str, owner: str | None, rejoins: int, caplog: pytest.LogCaptureFixture
) -> None:
    r = rig(stall_timeout_s=3600)
    r.consumer.at_next_poll.clear()
    owners = {} if owner is None else {0: owner, 1: owner}
    r.group.current = GroupView(lag={0: 6, 1: 6}, owners=owners, at=1.0, state=state)
    caplog.set_level(logging.WARNING, "cutover.processor")
    r.steps(2)
    assert r.service.stats.rejoins == 0  # the same look twice: not yet confirmed
    r.group.current = GroupView(lag={0: 6, 1: 6}, owners=owners, at=2.0, state=state)
    r.steps(1)
    assert r.service.stats.rejoins == rejoins and r.consumer.subscriptions == 1 + rejoins
    if rejoins:
        assert any("the stable group naming us their owner" in rec.getMessage() for rec in caplog.records)
        r.steps(3)
        assert len(r.store.rows) == r.calls and r.consumer.committed == r.ends()


def test_owning_nothing_is_fine_when_another_live_member_consumes_the_lagging_partitions() -> None:
    r = rig()
    r.consumer.at_next_poll.clear()
    r.group.current = GroupView(lag={0: 6, 1: 6}, owners={0: "other", 1: "other"})
    for _ in range(3):
        r.steps(1)
        time.sleep(0.03)
    assert r.service.stats.rejoins == 0 and r.consumer.subscriptions == 1


def test_the_reported_lag_covers_every_partition_of_the_topic_not_only_owned_ones() -> None:
    r = rig()
    r.steps(1)
    r.group.current = GroupView(lag={0: 0, 1: 7, 2: 5}, owners={0: "me", 1: "other"})
    r.steps(1)
    assert r.service.stats.lag == 12


def test_a_busy_chdb_path_is_not_retried_but_raised_for_the_cli_to_print() -> None:
    r = rig()
    r.store.insert_errors = [StoreBusy("the chDB store /x is open in another process")]
    with pytest.raises(StoreBusy):
        r.steps(1)
    assert r.store.inserts == 1 and r.consumer.committed == {}
