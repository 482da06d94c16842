"""The processor service: consume -> decode -> enrich -> write, then (in the background) recompute -> commit.

At least once plus idempotent writes = effectively exactly once. Offsets are committed
only after a batch's rows (and histograms) are in ClickHouse and its dead letters are
acknowledged by Kafka. If ClickHouse or the DLQ is down, the batch in hand is retried with
exponential backoff while the consumer stays in its group (partitions paused, polls keep
it alive); nothing is committed, nothing is dropped. When the group rebalances mid-batch,
the batch is written once more if possible, otherwise dropped uncommitted, and the new
owner re-reads it from the committed offsets; what is dropped from a partition we keep
(and decodes still in flight in worker processes) we read again ourselves: the consumer
seeks it back to its first unwritten record.

Rows are queryable as soon as their batch is inserted; histograms follow in the background.
After a batch is written, the histograms of the (5-second slot, model, operation, service,
task) groups it touched are recomputed from `llm_calls FINAL` by a background thread on a
store connection of its own (`processors/histograms.py`: slots first, then their minutes as
sums of slots), while this loop goes on polling and writing the next batches; once that
recompute is done, the next step commits the offsets of every batch it covered and starts
one for the batches written meanwhile. A recompute reads the calls of the slots it rebuilds,
so its cost follows the batch, not how full the minute is. The guarantee is unchanged: no
offset is committed before the rows and the histograms of its calls are in ClickHouse; a
stop or a rebalance waits for the recompute in flight and commits before letting go, and a
failed one is retried with the write step's backoff. `CUTOVER_HISTOGRAM_INTERVAL_S` (1 s)
spaces recomputes out (0: one whenever the previous is done): fewer recomputes per call, at
the price of histograms up to that many seconds behind the calls and up to that many seconds
of batches re-read (idempotently) after a crash or rebalance. Row freshness is bounded by
`CUTOVER_BATCH_MAX_WAIT_S` (a poll never waits past the batch's due time), not by it.
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Protocol, TypeVar

import pyarrow as pa
import pyarrow.compute as pc
from clickhouse_connect.driver.client import Client
from kafka import KafkaAdminClient, KafkaConsumer
from kafka.consumer.fetcher import ConsumerRecord
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata, TopicPartition

from cutover import kafka_clients, metrics_http
from cutover.kafka_clients import KafkaConnection
from cutover.memory import configure_process_allocators
from cutover.store import StoreBusy, client_for, sibling
from processors import metrics
from processors.alerts import AlertEvaluator
from processors.decode_pool import Decoder
from processors.decode_pool import Outcome as DecodeOutcome
from processors.dlq import DeadLetter, DeadLetterQueue
from processors.enrich import Enricher, row_dicts
from processors.failures import PermanentWriteError, permanent_cause
from processors.group_watch import GroupSource, GroupView, GroupWatch
from processors.hallucination import HallucinationWorker
from processors.histograms import Group
from processors.logs_join import LogsJoiner
from processors.pricing import PriceBook
from processors.refusal import refusal
from processors.retry import backoff, stop_within
from processors.schema import migrate
from processors.settings import ProcessorSettings
from processors.writer import CallWriter, touched_groups

log = logging.getLogger("cutover.processor")
T = TypeVar("T")
# A failed bootstrap returns to our retry loop (one log line per outage, stop honoured) within 5 s.
BOOTSTRAP_TIMEOUT_MS = 5_000
POLL_TIMEOUT_MS = 200
# While decode workers hold chunks in flight, a poll waits at most this long, so their
# outcomes are taken soon after they are ready rather than after a quiet topic's full wait.
POLL_TIMEOUT_DECODING_MS = 5
LAG_INTERVAL_S = 5.0
# Young objects between two collections. The default 700 meant a collection every ~230 decoded
# calls and a full one every ~23k; at 50k the one-core path takes 13-17% less CPU
# (bench/processor.py, 100k spans) for a few MB more of young objects.
GC_YOUNG_OBJECTS = 50_000


# The consumer's states and the only transitions between them ---------------------------------------------------


class State(Enum):
    NEW = "new"
    CONNECTING = "connecting"  # ClickHouse, migrations, Kafka: retried while they are down
    CONSUMING = "consuming"  # polling and decoding into the batch in hand
    WRITING = "writing"  # the batch's rows and dead letters going out (retried with backoff)
    SETTLING = "settling"  # histograms recomputed, then offsets committed (retried with backoff)
    REVOKED = "revoked"  # a rebalance took our partitions mid-write: the batches in hand are dropped uncommitted
    REJOINING = "rejoining"  # we own nothing while partitions lag unconsumed: leave and join the group again
    DRAINING = "draining"  # stop requested: write and settle what is in hand, then close
    STOPPED = "stopped"
    FAILED = "failed"  # a permanent error: one line names it, the process exits non-zero


_ENDS = (State.STOPPED, State.FAILED)  # any running state may end: a stop or a permanent error
TRANSITIONS: dict[State, frozenset[State]] = {
    State.NEW: frozenset({State.CONNECTING}),
    State.CONNECTING: frozenset({State.CONSUMING, *_ENDS}),
    State.CONSUMING: frozenset({State.WRITING, State.SETTLING, State.REJOINING, State.DRAINING, *_ENDS}),
    State.WRITING: frozenset({State.CONSUMING, State.DRAINING, State.REVOKED, *_ENDS}),
    State.SETTLING: frozenset({State.CONSUMING, State.DRAINING, State.REVOKED, *_ENDS}),
    State.REVOKED: frozenset({State.CONSUMING, State.DRAINING, *_ENDS}),
    State.REJOINING: frozenset({State.CONSUMING, *_ENDS}),
    State.DRAINING: frozenset({State.WRITING, State.SETTLING, *_ENDS}),
    State.STOPPED: frozenset(),
    State.FAILED: frozenset(),
}


class Outcome(Enum):
    """What a write or settle step came to (raised instead: `Interrupted` on a stop's give-up, permanent errors)."""

    DONE = "done"  # written (and settled, if due)
    DEFERRED = "deferred"  # settling not due yet: the histogram interval has not passed
    REVOKED = "revoked"  # a rebalance took the partitions: batches dropped uncommitted, to be re-read


class Interrupted(Exception):
    """A stop (or a rebalance) ended a retry: the batch in hand is given up uncommitted."""


# What the loop talks to (real clients in production, fakes in the unit tests) ------------------------------------


class Consumer(Protocol):
    def poll(self, timeout_ms: int = ..., max_records: int | None = ...) -> dict[TopicPartition, list[Any]]: ...
    def assignment(self) -> set[TopicPartition]: ...
    def pause(self, *partitions: TopicPartition) -> None: ...
    def resume(self, *partitions: TopicPartition) -> None: ...
    def seek(self, partition: TopicPartition, offset: int) -> None: ...
    def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None: ...
    def subscribe(self, topics: Sequence[str], listener: ConsumerRebalanceListener) -> None: ...
    def unsubscribe(self) -> None: ...
    def close(self, autocommit: bool = ...) -> None: ...


class DeadLetterSink(Protocol):
    def send(self, letter: DeadLetter) -> None: ...
    def confirm(self, letters: list[DeadLetter]) -> None: ...
    def close(self) -> None: ...


class Writer(Protocol):
    def insert(self, table: pa.Table) -> int: ...
    def recompute(self, groups: set[Group]) -> int: ...


class ContentSink(Protocol):
    def submit(self, rows: list[dict[str, Any]]) -> None: ...
    def stop(self, timeout: float = ...) -> None: ...


@dataclass
class Parts:
    """The clients one processor runs on; `start()` builds the real ones, tests pass fakes."""

    consumer: Consumer
    dlq: DeadLetterSink
    writer: Writer
    content: ContentSink
    group: GroupSource | None = None
    member_id: Callable[[], str | None] = lambda: None


def kafka_consumer(settings: ProcessorSettings) -> KafkaConsumer:
    """The processor's consumer (the one place its options live)."""
    return kafka_clients.consumer(
        KafkaConnection.from_settings(settings),
        "processor",
        group_id=settings.consumer_group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=settings.poll_max_records,
        # kafka-python holds fetched responses until polled; a one-second batch needs far
        # less than the 64 MB fetches we had (bench/memory.py: RSS the same either way).
        fetch_max_bytes=settings.fetch_max_bytes,
        max_partition_fetch_bytes=settings.partition_fetch_max_bytes,
        bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
        # A topic created (or grown) after start is seen within 30 s, not the default 5 min.
        metadata_max_age_ms=30_000,
    )


def kafka_admin(settings: ProcessorSettings) -> KafkaAdminClient:
    """The admin client that watches the group's lag and members."""
    return kafka_clients.admin(KafkaConnection.from_settings(settings), "processor-watch")


def dead_letter_queue(settings: ProcessorSettings) -> DeadLetterQueue:
    return DeadLetterQueue(KafkaConnection.from_settings(settings), settings.dlq_topic, BOOTSTRAP_TIMEOUT_MS)


def member_id_of(consumer: KafkaConsumer) -> Callable[[], str | None]:
    """Our member id in the group: kafka-python keeps it on its coordinator only (no public accessor)."""

    def current() -> str | None:
        generation = getattr(getattr(consumer, "_coordinator", None), "_generation", None)
        return getattr(generation, "member_id", None) or None

    return current


# Counters ----------------------------------------------------------------------------------------------------------


@dataclass
class ProcessorStats:
    """Running counters since start, of committed batches (read by the dashboard and the CLI)."""

    messages: int = 0
    spans: int = 0
    calls_written: int = 0
    skipped_non_genai: int = 0
    dlq: int = 0
    unpriced: int = 0
    batches: int = 0
    lag: int = 0  # a gauge: the group's lag over every partition of the topic
    retries: int = 0
    rebalance_replays: int = 0
    commit_failures: int = 0
    rejoins: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def add(self, other: ProcessorStats) -> None:
        """Add `other`'s counters (not the `lag` gauge) to these."""
        for item in fields(self):
            if item.name != "lag":
                setattr(self, item.name, getattr(self, item.name) + getattr(other, item.name))


@dataclass
class _Batch:
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    tables: list[pa.Table] = field(default_factory=list)  # calls enriched by decode workers
    calls: int = 0
    letters: list[DeadLetter] = field(default_factory=list)
    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    counts: ProcessorStats = field(default_factory=ProcessorStats)
    started: float = 0.0

    def empty(self) -> bool:
        return not self.offsets


@dataclass
class _Written:
    """Batches in ClickHouse whose histograms, offset commit and stats wait for the next recompute."""

    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    groups: set[Group] = field(default_factory=set)
    counts: ProcessorStats = field(default_factory=ProcessorStats)
    since: float = 0.0

    def empty(self) -> bool:
        return not self.offsets

    def add(self, batch: _Batch, table: pa.Table) -> None:
        if self.empty():
            self.since = time.monotonic()
        self.offsets.update(batch.offsets)
        self.groups.update(touched_groups(table))
        counts = batch.counts
        counts.calls_written = table.num_rows
        counts.dlq = len(batch.letters)
        counts.unpriced = table["cost_usd"].null_count
        counts.batches = 1
        self.counts.add(counts)


# The service --------------------------------------------------------------------------------------------------------


class ProcessorService:
    def __init__(self, settings: ProcessorSettings, client: Client | None = None, parts: Parts | None = None) -> None:
        self.settings = settings
        self.stats = ProcessorStats()
        self.state = State.NEW
        self.partitions: list[int] = []  # partitions of the spans topic this instance owns now
        self.failure: BaseException | None = None
        self.client: Client | None = client
        self._given_parts = parts
        self._parts: Parts | None = None
        self._enricher = Enricher(PriceBook.load(settings.prices_file, fallback=settings.price_fallback), refusal)
        self._alerts: AlertEvaluator | None = None
        self._logs: LogsJoiner | None = None
        self._decoder: Decoder | None = None  # made by the consuming thread on its first poll
        # Per partition, the first offset fetched and not yet written (settled): where to seek back
        # to when what is in hand (batches, decodes in flight, the rest of a poll) is dropped.
        self._unwritten: dict[TopicPartition, int] = {}
        self._stopping = threading.Event()  # asked to stop (signal, stop(), a failure)
        self._give_up = threading.Event()  # a stop's deadline passed during a retry
        self._threads: list[threading.Thread] = []
        self._consume_thread: threading.Thread | None = None
        self._batch = _Batch()
        self._written = _Written()
        # Written batches whose histograms a background recompute is rebuilding (one at a time).
        self._settling: tuple[_Written, Future[int]] | None = None
        self._recomputer: ThreadPoolExecutor | None = None
        self._degraded = False  # a retry is failing: logged once when it starts and once when it ends
        self._last_lag = 0.0
        self._last_log = time.monotonic()
        self._orphaned_since: float | None = None
        self._orphaned_look = 0.0  # `GroupView.at` of the look that first saw the orphaned partitions

    # states ------------------------------------------------------------------------------

    def _enter(self, state: State) -> None:
        if state not in TRANSITIONS[self.state]:
            raise RuntimeError(f"processor state {self.state.value} -> {state.value} is not a transition")
        self.state = state

    @contextmanager
    def _step(self, state: State) -> Iterator[None]:
        """Run a write or settle step in `state`, then return to the state it started from (unless revoked)."""
        previous = self.state
        self._enter(state)
        try:
            yield
        finally:
            self._enter(previous)

    # lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Connect and migrate (retrying while ClickHouse or Kafka is down), then start the background threads.

        Raises `Interrupted` if a stop is requested while it is still retrying.
        """
        configure_process_allocators(self.settings.malloc_trim_interval_s)
        self._enter(State.CONNECTING)
        try:
            parts = self._given_parts or self._connect()
        except Interrupted:
            self._enter(State.STOPPED)
            raise
        self.attach(parts)
        # Start-up objects (modules, clients, schemas) live as long as the process: moved out of
        # the collector's reach, each full collection walks only the batches in flight
        # (bench/processor.py: full collections took ~5% of the full path's time without this).
        gc.freeze()
        gc.set_threshold(GC_YOUNG_OBJECTS, *gc.get_threshold()[1:])
        self._consume_thread = threading.Thread(target=self._consume_loop, name="cutover-consume", daemon=True)
        self._threads = [self._consume_thread]
        if self._alerts is not None:
            self._threads.append(threading.Thread(target=self._alert_loop, name="cutover-alerts", daemon=True))
        for thread in self._threads:
            thread.start()
        settings = self.settings
        store = "the shared client" if self._given_parts or self.client is not None else settings.clickhouse_dsn
        log.info(
            "processing %s -> %s (database %s) as group %s",
            settings.spans_topic,
            store,
            settings.clickhouse_database,
            settings.consumer_group,
        )

    def _connect(self) -> Parts:
        settings = self.settings
        database = settings.clickhouse_database
        client = self.client or self._retrying(lambda: client_for(settings), what="ClickHouse connection")
        self.client = client
        self._retrying(lambda: migrate(client, database, settings.retention_days), what="schema migration", store=True)
        dlq = self._retrying(lambda: dead_letter_queue(settings), what="Kafka connection")
        consumer = self._retrying(lambda: kafka_consumer(settings), what="Kafka connection")
        content = HallucinationWorker(client, database, settings)
        content.start()
        metrics.HALLUCINATION_QUEUE.set_function(lambda: content.backlog)
        metrics.HALLUCINATION_SAMPLE_RATE.set_function(lambda: content.sample_rate)
        # GenAI content sent as OTLP log records: joined onto written rows by its own consumer thread.
        self._logs = LogsJoiner(client, database, settings, refusal, content.submit)
        self._retrying(self._logs.start, what="Kafka connection")
        self._alerts = AlertEvaluator(client, database, settings)
        watch = GroupWatch(lambda: kafka_admin(settings), settings.spans_topic, settings.consumer_group, LAG_INTERVAL_S)
        writer = CallWriter(client, database, sibling(client, settings.clickhouse_dsn))
        return Parts(consumer, dlq, writer, content, watch, member_id_of(consumer))

    def attach(self, parts: Parts) -> None:
        """Subscribe with these parts and enter CONSUMING (without threads: tests then drive `step`)."""
        if self.state is State.NEW:
            self._enter(State.CONNECTING)
        self._parts = parts
        parts.consumer.subscribe([self.settings.spans_topic], listener=_Rebalance(self))
        metrics_http.serve(self.settings.processor_metrics_port)
        self._enter(State.CONSUMING)

    def stop(self, timeout: float = 30) -> None:
        """Finish and commit the batch in hand (giving up after `timeout` s, uncommitted), then close."""
        self._stopping.set()
        stop_within(self._threads, timeout, self._give_up)
        if self._logs is not None:
            self._logs.stop(timeout)
        if self._decoder is not None:
            self._decoder.close()
        if self._recomputer is not None:
            self._recomputer.shutdown(wait=False, cancel_futures=True)
        parts = self._parts
        if parts is not None:
            parts.content.stop()
            parts.dlq.close()
            if parts.group is not None:
                parts.group.close()
        log.info("stopped: %s", self.stats.as_dict())

    def run_forever(self) -> None:
        """Run until SIGTERM/SIGINT (or a fatal error), then stop cleanly; raises SystemExit(1) on failure."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self._stopping.set())
        try:
            self.start()
        except Interrupted:
            log.warning("stopped while waiting for ClickHouse/Kafka at start; nothing was consumed")
            self.stop()
            return
        except PermanentWriteError as error:
            log.error("processor stopped: %s", error)
            self.stop()
            raise SystemExit(1) from None
        while not self._stopping.wait(1.0):
            pass
        self.stop()
        if self.failure is not None:
            raise SystemExit(1)

    # consuming ---------------------------------------------------------------------------

    def _consume_loop(self) -> None:
        try:
            self._decoding()  # decode workers start up while the first poll joins the group
            while not self._stopping.is_set():
                self.step()
            self.finish()
        except Interrupted:
            log.warning(
                "stopped with unwritten or unrecomputed batches; not committed, they will be re-read on restart"
            )
            self._enter(State.STOPPED)
        except PermanentWriteError as error:
            log.error("processor stopped: %s; nothing after the last written batch was committed", error)
            self._fail(error)
        except BaseException as error:
            log.exception("processor failed")
            self._fail(error)
        finally:
            if self._parts is not None:
                self._parts.consumer.close(autocommit=False)

    def _fail(self, error: BaseException) -> None:
        self.failure = error
        self._enter(State.FAILED)
        self._stopping.set()

    def step(self) -> None:
        """One turn of the loop: poll and decode, write the batch when full or due, settle when due, watch the group."""
        parts = self._require()
        self._take_all(
            parts.consumer.poll(timeout_ms=self._poll_timeout_ms(), max_records=self.settings.poll_max_records)
        )
        batch = self._batch
        if not batch.empty() and time.monotonic() - batch.started >= self.settings.batch_max_wait_s:
            self._flush(patient=True)
        else:
            self._settle(patient=True)
        self._watch_group()

    def _poll_timeout_ms(self) -> int:
        """How long a poll may wait for records: never past the moment the batch in hand is due,
        nor while decoded chunks wait to be taken."""
        decoder = self._decoder
        timeout = POLL_TIMEOUT_MS
        if decoder is not None and decoder.pending:
            timeout = 0 if decoder.ready else POLL_TIMEOUT_DECODING_MS
        batch = self._batch
        if batch.empty():
            return timeout
        due_in_s = batch.started + self.settings.batch_max_wait_s - time.monotonic()
        return int(min(timeout, max(0.0, due_in_s * 1000)))

    def finish(self) -> None:
        """Stop: take what the decode workers hold, write and settle it all (patiently, until the stop's
        deadline), then STOPPED."""
        self._enter(State.DRAINING)
        drained = self._decoder is None or self._take(self._decoder.drain())
        if drained and self._flush(patient=True) is not Outcome.REVOKED:
            self._settle(patient=True, due=True)
        self._enter(State.STOPPED)

    def _require(self) -> Parts:
        if self._parts is None:
            raise RuntimeError("the processor is not started")
        return self._parts

    def _decoding(self) -> Decoder:
        """The decoder, made by the consuming thread: decode workers are bound to the thread that spawns them."""
        if self._decoder is None:
            settings = self.settings
            self._decoder = Decoder(settings.decode_workers, settings.prices_file, settings.price_fallback)
        return self._decoder

    def _take_all(self, polled: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        unwritten = self._unwritten
        for tp, records in polled.items():
            unwritten.setdefault(tp, records[0].offset)
        self._take(self._decoding().outcomes([record for records in polled.values() for record in records]))

    def _take(self, outcomes: Iterator[tuple[ConsumerRecord, DecodeOutcome]]) -> bool:
        """Decode into the batch in hand, writing it whenever full; False if a rebalance dropped it."""
        for record, outcome in outcomes:
            self.decode(record, outcome)
            if self._batch.calls >= self.settings.batch_max_calls and self._flush(patient=True) is Outcome.REVOKED:
                # `_drop` moved our positions back to the first unwritten records: the rest of
                # these outcomes will be read again (by us or the new owner), so taking them now
                # could commit past records that were never written.
                return False
        return True

    def decode(self, record: ConsumerRecord, outcome: DecodeOutcome) -> None:
        """The decode step: one Kafka record, decoded here or by a decode worker, into the batch in hand
        (rows, or a dead letter with its reason)."""
        batch = self._batch
        if batch.empty():
            batch.started = time.monotonic()
        counts = batch.counts
        try:
            decoded = outcome.get()
        except Exception as error:
            reason: str | None = f"processor error while decoding: {type(error).__name__}: {error}"
        else:
            batch.rows.extend(decoded.rows)
            batch.calls += len(decoded.rows)
            if decoded.table is not None:
                batch.tables.append(decoded.table)
                batch.calls += decoded.table.num_rows
            reason = decoded.error
            counts.spans += decoded.spans
            counts.skipped_non_genai += decoded.skipped_non_genai
        if reason:
            letter = DeadLetter(record.key, record.value, record.topic, record.partition, record.offset, reason)
            self._require().dlq.send(letter)
            batch.letters.append(letter)
        counts.messages += 1
        batch.offsets[TopicPartition(record.topic, record.partition)] = record.offset + 1

    def _flush(self, patient: bool) -> Outcome:
        """The write step: the batch in hand into ClickHouse and its dead letters confirmed, then settle if due.

        `patient` retries with backoff, otherwise one try.
        """
        batch = self._batch
        if batch.empty():
            return self._settle(patient)
        parts = self._require()
        tables = [*batch.tables, self._enricher.table(batch.rows)] if batch.rows else batch.tables
        table = pa.concat_tables(tables).combine_chunks() if tables else self._enricher.table([])
        content = pc.indices_nonzero(table["content_captured"]).to_pylist()
        started = time.perf_counter()
        with self._step(State.WRITING):
            outcome = self._attempt(
                patient,
                (lambda: parts.writer.insert(table), "ClickHouse write", True),
                (lambda: parts.dlq.confirm(batch.letters), "DLQ produce", False),
            )
        if outcome is Outcome.REVOKED:
            return outcome
        metrics.BATCH_WRITE_SECONDS.observe(time.perf_counter() - started)
        if content:
            parts.content.submit(row_dicts(table, content))
        self._written.add(batch, table)
        self._batch = _Batch()
        return self._settle(patient)

    def _settle(self, patient: bool, due: bool = False) -> Outcome:
        """The commit step: the written batches' histograms recomputed, then their offsets committed and counted.

        The recompute runs in the background (its own store connection) while the loop goes on
        polling and writing; a later step commits once it is done (and starts the next one for
        the batches written meanwhile). A recompute starts once `histogram_interval_s` has
        passed since the first of its batches was written (at once when it is 0), or when
        `due` (stop, rebalance): then this waits for it and commits before returning.
        """
        if self._settling is not None:
            outcome = self._commit_settled(patient, wait=due)
            if outcome is not Outcome.DONE:
                return outcome
        written = self._written
        if written.empty():
            return Outcome.DONE
        if not due and time.monotonic() - written.since < self.settings.histogram_interval_s:
            return Outcome.DEFERRED
        if self._recomputer is None:
            self._recomputer = ThreadPoolExecutor(1, thread_name_prefix="cutover-histograms")
        self._settling = (written, self._recomputer.submit(self._recompute, written.groups))
        self._written = _Written()
        return self._commit_settled(patient, wait=True) if due else Outcome.DEFERRED

    def _recompute(self, groups: set[Group]) -> int:
        with metrics.HISTOGRAM_RECOMPUTE_SECONDS.time():
            return self._require().writer.recompute(groups)

    def _commit_settled(self, patient: bool, wait: bool) -> Outcome:
        """Commit the offsets of the batches whose background recompute is done (`wait`: once it is).

        A failed recompute is run again here, with the write step's retries and their rules.
        """
        assert self._settling is not None
        written, future = self._settling
        if not wait and not future.done():
            return Outcome.DEFERRED
        parts = self._require()
        pending: Future[int] | None = future

        def recompute() -> int:
            nonlocal pending
            if pending is None:
                return parts.writer.recompute(written.groups)
            first, pending = pending, None
            while not wait_done(first):
                if self._halted():
                    raise Interrupted()
            return first.result()

        with self._step(State.SETTLING):
            outcome = self._attempt(patient, (recompute, "histogram recompute", True))
            if outcome is Outcome.REVOKED:
                return outcome
            try:
                parts.consumer.commit({tp: OffsetAndMetadata(offset, "", -1) for tp, offset in written.offsets.items()})
            except (CommitFailedError, KafkaError) as error:
                # Rows are written; the next owner of these partitions replays them onto the same keys.
                self._count(ProcessorStats(commit_failures=1))
                log.warning("offset commit failed (%s); the batch will be replayed idempotently", error)
        # Written either way: a rewind need not go back past these.
        self._unwritten.update(written.offsets)
        self._count(written.counts)
        self._settling = None
        return Outcome.DONE

    def _count(self, counts: ProcessorStats) -> None:
        self.stats.add(counts)
        metrics.count(counts.as_dict())

    def _attempt(self, patient: bool, *steps: tuple[Callable[[], object], str, bool]) -> Outcome:
        """Run the steps in order (`patient`: each retried with backoff); REVOKED if a rebalance took the batches.

        Each step says whether it writes to the store, whose permanent errors stop the processor.
        """
        try:
            for action, what, store in steps:
                if patient:
                    self._retrying(action, what=what, store=store)
                else:
                    action()
        except Interrupted:
            if self.state is not State.REVOKED:
                raise
            # Our partitions were taken away mid-retry: their new owner re-reads these batches.
            self._drop()
            return Outcome.REVOKED
        return Outcome.DONE

    def _drop(self) -> None:
        self._count(ProcessorStats(rebalance_replays=1))
        self._batch = _Batch()
        self._written = _Written()
        self._settling = None  # a recompute still running is harmless: recomputes are idempotent
        self._rewind()

    def _rewind(self) -> None:
        """Forget the decodes in flight and seek every partition we still own back to its first unwritten record.

        kafka-python (3.0) keeps the position of a partition that stays ours through a
        rebalance, so records dropped here would otherwise be skipped and a later commit would
        pass them; a partition that moved is read by its new owner from the committed offset.
        """
        if self._decoder is not None:
            self._decoder.drop()
        consumer = self._require().consumer
        owned = consumer.assignment()
        for tp, offset in self._unwritten.items():
            if tp in owned:
                consumer.seek(tp, offset)
        self._unwritten.clear()

    def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        if self.state in _ENDS:  # closing after a stop or a failure: what is in hand stays uncommitted
            return
        if self.state in (State.WRITING, State.SETTLING):
            self._enter(State.REVOKED)  # the retry in progress gives up; positions reset to the committed offsets
            return
        try:
            if self._flush(patient=False) is not Outcome.REVOKED:
                self._settle(patient=False, due=True)
                # Decodes still in flight start after what was just committed: read again.
                self._rewind()
        except Exception as error:
            log.warning("rebalance: could not write or recompute the batches in hand (%s); they will be re-read", error)
            self._drop()

    # the group: lag of every partition, and no silent stall -------------------------------------------------------

    def _watch_group(self) -> None:
        now = time.monotonic()
        if now - self._last_lag < LAG_INTERVAL_S:
            return
        self._last_lag = now
        parts = self._require()
        view = parts.group.view() if parts.group is not None else None
        if view is not None:
            self.stats.lag = view.total_lag
            metrics.observe_group(view, self.partitions)
            self._rejoin_if_stalled(view, now)
        if now - self._last_log >= self.settings.stats_log_interval_s:
            self._last_log = now
            log.info("progress: %s, partitions %s", self.stats.as_dict(), self.partitions)

    def _rejoin_if_stalled(self, view: GroupView, now: float) -> None:
        """Rejoin the group when we own nothing while lagging partitions have no live consumer, for
        `stall_timeout_s`; at the next look already when the stable group names us their owner (a lost assignment)."""
        parts = self._require()
        orphaned = view.orphaned(parts.member_id()) if not parts.consumer.assignment() else []
        if not orphaned:
            self._orphaned_since = None
            return
        if self._orphaned_since is None:
            self._orphaned_since, self._orphaned_look = now, view.at
            return
        lost = view.at != self._orphaned_look and view.lost_to(parts.member_id())
        if not lost and now - self._orphaned_since < self.settings.stall_timeout_s:
            return
        lag = sum(view.lag[p] for p in orphaned)
        log.warning(
            "own no partitions for %.0f s while partitions %s of %s lag by %d with %s; rejoining the group",
            now - self._orphaned_since,
            orphaned,
            self.settings.spans_topic,
            lag,
            "the stable group naming us their owner" if lost else "no live consumer",
        )
        self._enter(State.REJOINING)
        self._rewind()  # owning nothing, nothing is in flight; the rejoined member starts clean
        parts.consumer.unsubscribe()
        parts.consumer.subscribe([self.settings.spans_topic], listener=_Rebalance(self))
        self._count(ProcessorStats(rejoins=1))
        self._orphaned_since = None
        self._enter(State.CONSUMING)

    # retries ---------------------------------------------------------------------------------

    def _halted(self) -> bool:
        if self.state is State.CONNECTING:
            return self._stopping.is_set()
        return self._give_up.is_set() or self.state is State.REVOKED

    def _retrying(self, action: Callable[[], T], what: str, store: bool = False) -> T:
        """Run `action` until it succeeds, backing off exponentially; raise Interrupted on give-up.

        A store error that retrying cannot fix raises `PermanentWriteError` at once.
        """
        retrying = backoff(
            self.settings.retry_max_backoff_s,
            halted=self._halted,
            sleep=self._wait_alive,
            on_failure=lambda error: self._failing(what, error),
            # StoreBusy: another process holds the chDB path, waiting will not help (cutover.cli prints it).
            retryable=lambda error: not isinstance(error, StoreBusy) and (not store or permanent_cause(error) is None),
        )
        try:
            result = retrying(action)
        except Exception as error:
            cause = permanent_cause(error) if store else None
            if cause is not None:
                raise PermanentWriteError(f"{what} failed permanently: {cause}") from error
            if self._halted():
                raise Interrupted() from error
            raise
        if self._degraded:
            self._degraded = False
            log.warning("%s succeeded again; resuming", what)
        return result

    def _failing(self, what: str, error: BaseException | None) -> None:
        self._count(ProcessorStats(retries=1))
        if not self._degraded:  # log once per state change, not once per attempt
            self._degraded = True
            log.warning(
                "%s failed (%s: %s); retrying with backoff, nothing committed", what, type(error).__name__, error
            )

    def _wait_alive(self, seconds: float) -> None:
        """Back off while polling with partitions paused, so the group keeps our membership."""
        if self.state is State.CONNECTING or self._parts is None:
            self._stopping.wait(seconds)  # at start: no group to stay in yet
            return
        consumer = self._parts.consumer
        deadline = time.monotonic() + seconds
        paused = consumer.assignment()
        consumer.pause(*paused)
        try:
            while time.monotonic() < deadline and not self._halted():
                polled = consumer.poll(timeout_ms=int(min(0.5, max(0.0, deadline - time.monotonic())) * 1000))
                for tp, records in polled.items():  # partitions newly assigned are not paused: unread them
                    consumer.seek(tp, records[0].offset)
        finally:
            consumer.resume(*(tp for tp in paused if tp in consumer.assignment()))

    # alerts ------------------------------------------------------------------------------------

    def _alert_loop(self) -> None:
        alerts = self._alerts
        while alerts is not None and not self._stopping.wait(self.settings.alert_interval_s):
            try:
                alerts.run_once(datetime.now(UTC))
            except Exception as error:
                log.warning("alert evaluation failed: %s", error)


def wait_done(future: Future[int], timeout: float = 0.1) -> bool:
    """Wait up to `timeout` s for `future`; whether it is done (its own errors are raised by `result()`)."""
    return bool(wait([future], timeout=timeout).done)


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, service: ProcessorService) -> None:
        self.service = service

    def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        self.service._on_revoked(set(revoked))

    def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        self.service.partitions = sorted(tp.partition for tp in assigned)
        metrics.OWNED_PARTITIONS.set(len(self.service.partitions))
        log.info("assigned partitions %s", self.service.partitions)
