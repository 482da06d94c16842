"""The processor service: consume -> decode -> enrich -> write -> recompute -> commit.

At least once plus idempotent writes = effectively exactly once. Offsets are committed
only after a batch's rows (and histograms) are in ClickHouse and its dead letters are
acknowledged by Kafka. If ClickHouse or the DLQ is down, the batch in hand is retried with
exponential backoff while the consumer stays in its group (partitions paused, polls keep
it alive); nothing is committed, nothing is dropped. When the group rebalances mid-batch,
the batch is written once more if possible, otherwise dropped uncommitted, and the new
owner re-reads it from the committed offsets.

Histograms are recomputed after every batch by default. Each recompute rescans its minutes
in `llm_calls FINAL` (~0.26 us per call in them), so at a sustained rate R the per-batch
recompute of the current minute costs ~R x 30 x 0.26 us per batch: an estimated ~30% of a
core at 40k calls/s with one-second batches (measured: 7% of the full path for 600k calls
in two minutes). `CUTOVER_HISTOGRAM_INTERVAL_S` spaces recomputes out:
batches are still written (calls, cost, refusals fresh) as they fill, but their histograms
are recomputed, and only then their offsets committed, once per interval for all minutes
written since. The guarantee is unchanged (no offset is committed before the histograms
of its calls); the trade-offs are histograms up to that many seconds behind the calls, and
up to that many seconds of batches re-read (idempotently) after a crash or rebalance.
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

from clickhouse_connect.driver.client import Client
from kafka import KafkaConsumer
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata, TopicPartition
from tenacity import Retrying, retry_if_not_exception_type, stop_any, wait_exponential

from cutover.store import StoreBusy, client_for
from processors.alerts import AlertEvaluator
from processors.decode_pool import Decoder, Outcome  # perf: decode pool seam
from processors.dlq import DeadLetter, DeadLetterQueue
from processors.enrich import Enricher, row_dicts
from processors.hallucination import HallucinationWorker
from processors.pricing import PriceBook
from processors.refusal import refusal_source
from processors.schema import migrate
from processors.settings import ProcessorSettings
from processors.writer import CallWriter, touched_minutes

log = logging.getLogger("cutover.processor")
T = TypeVar("T")
# A failed bootstrap returns to our retry loop (one log line per outage, stop honoured) within 5 s.
BOOTSTRAP_TIMEOUT_MS = 5_000


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
    lag: int = 0
    retries: int = 0
    rebalance_replays: int = 0
    commit_failures: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class _Batch:
    rows: list[tuple] = field(default_factory=list)
    letters: list[DeadLetter] = field(default_factory=list)
    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    messages: int = 0
    spans: int = 0
    skipped_non_genai: int = 0
    started: float = 0.0

    def empty(self) -> bool:
        return not self.offsets


@dataclass
class _Written:
    """Batches in ClickHouse whose histograms, offset commit and stats wait for the next recompute."""

    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    minutes: set[datetime] = field(default_factory=set)
    counts: ProcessorStats = field(default_factory=ProcessorStats)
    since: float = 0.0

    def empty(self) -> bool:
        return not self.offsets

    def add(self, batch: _Batch, columns: dict[str, list]) -> None:
        if self.empty():
            self.since = time.monotonic()
        self.offsets.update(batch.offsets)
        self.minutes.update(touched_minutes(columns["start_time"]))
        counts = self.counts
        counts.messages += batch.messages
        counts.spans += batch.spans
        counts.skipped_non_genai += batch.skipped_non_genai
        counts.calls_written += len(batch.rows)
        counts.dlq += len(batch.letters)
        counts.unpriced += sum(cost is None for cost in columns["cost_usd"])
        counts.batches += 1


class Interrupted(Exception):
    """A stop (or a rebalance) ended a retry: the batch in hand is given up uncommitted."""


class ProcessorService:
    def __init__(self, settings: ProcessorSettings, client: Client | None = None) -> None:
        self.settings = settings
        self.stats = ProcessorStats()
        self._client = client
        self._stopping = threading.Event()
        self._give_up = threading.Event()  # set when a stop's deadline passes during a retry
        self._threads: list[threading.Thread] = []
        self._batch = _Batch()
        self._written = _Written()
        self._flushing = False
        self._revoked = False
        self._degraded = False
        self._last_lag = 0.0
        self._last_log = time.monotonic()
        self._consume_thread: threading.Thread | None = None
        self._starting = False
        self._dlq: DeadLetterQueue | None = None
        self._hallucination: HallucinationWorker | None = None
        self._decoder: Decoder | None = None  # perf: decode pool seam
        self.partitions: list[int] = []  # partitions of the spans topic this instance owns now
        self.failure: BaseException | None = None

    # lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Connect and migrate (retrying while ClickHouse or Kafka is down), then start the background threads.

        Raises `Interrupted` if a stop is requested while it is still retrying.
        """
        settings = self.settings
        database = settings.clickhouse_database
        self._enricher = Enricher(PriceBook.load(settings.prices_file), refusal_source)
        self._starting = True
        try:
            self.client = self._client or self._retrying(lambda: client_for(settings), what="ClickHouse connection")
            self._retrying(lambda: migrate(self.client, database, settings.retention_days), what="schema migration")
            self._dlq = self._retrying(
                lambda: DeadLetterQueue(settings.bootstrap_servers, settings.dlq_topic, BOOTSTRAP_TIMEOUT_MS),
                what="Kafka connection",
            )
            self._consumer = self._retrying(
                lambda: KafkaConsumer(
                    bootstrap_servers=settings.bootstrap_servers,
                    group_id=settings.consumer_group,
                    client_id="cutover-processor",
                    enable_auto_commit=False,
                    auto_offset_reset="earliest",
                    max_poll_records=settings.poll_max_records,
                    fetch_max_bytes=64 * 1024 * 1024,
                    max_partition_fetch_bytes=16 * 1024 * 1024,
                    bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
                    # A topic created (or grown) after start is seen within 30 s, not the default 5 min.
                    metadata_max_age_ms=30_000,
                ),
                what="Kafka connection",
            )
        finally:
            self._starting = False
        self._writer = CallWriter(self.client, database)
        self._decoder = Decoder(settings.decode_workers)  # perf: decode pool seam
        self._consumer.subscribe([settings.spans_topic], listener=_Rebalance(self))
        self._hallucination = HallucinationWorker(self.client, database, settings)
        self._hallucination.start()
        self._alerts = AlertEvaluator(self.client, database, settings)
        # Start-up objects (modules, clients, schemas) live as long as the process: moved out of
        # the collector's reach, each full collection walks only the batches in flight
        # (bench/processor.py: full collections took ~5% of the full path's time without this).
        gc.freeze()
        self._consume_thread = threading.Thread(target=self._consume_loop, name="cutover-consume", daemon=True)
        alert_thread = threading.Thread(target=self._alert_loop, name="cutover-alerts", daemon=True)
        self._threads = [self._consume_thread, alert_thread]
        for thread in self._threads:
            thread.start()
        store = "the shared client" if self._client is not None else settings.clickhouse_dsn
        log.info(
            "processing %s -> %s (database %s) as group %s",
            settings.spans_topic,
            store,
            database,
            settings.consumer_group,
        )

    def stop(self, timeout: float = 30) -> None:
        """Finish and commit the batch in hand (giving up after `timeout` s, uncommitted), then close."""
        self._stopping.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                self._give_up.set()
                thread.join(5)
        if self._hallucination is not None:
            self._hallucination.stop()
        if self._decoder is not None:  # perf: decode pool seam
            self._decoder.close()
        if self._dlq is not None:
            self._dlq.close()
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
        while not self._stopping.wait(1.0):
            pass
        self.stop()
        if self.failure is not None:
            raise SystemExit(1)

    # consuming ---------------------------------------------------------------------------

    def _consume_loop(self) -> None:
        consumer, settings = self._consumer, self.settings
        try:
            while not self._stopping.is_set():
                self._take_all(consumer.poll(timeout_ms=200, max_records=settings.poll_max_records))
                batch = self._batch
                if not batch.empty() and time.monotonic() - batch.started >= settings.batch_max_wait_s:
                    self._flush(patient=True)
                else:
                    self._settle(patient=True)
                self._update_lag()
            if self._flush(patient=True):
                self._settle(patient=True, due=True)
        except Interrupted:
            log.warning(
                "stopped with unwritten or unrecomputed batches; not committed, they will be re-read on restart"
            )
        except BaseException as error:
            log.exception("processor failed")
            self.failure = error
            self._stopping.set()
        finally:
            consumer.close(autocommit=False)

    def _take_all(self, polled: dict) -> None:
        assert self._decoder is not None
        records = [record for records in polled.values() for record in records]
        for record, outcome in self._decoder.outcomes(records):  # perf: decode pool seam
            self._take(record, outcome)
            if len(self._batch.rows) >= self.settings.batch_max_calls and not self._flush(patient=True):
                # A rebalance reset our positions to the committed offsets: the rest of this
                # poll will be read again (by us or the new owner), so taking it now could
                # commit past records that were never written.
                return

    def _take(self, record, outcome: Outcome) -> None:  # perf: decode pool seam
        batch = self._batch
        if batch.empty():
            batch.started = time.monotonic()
        try:
            decoded = outcome.get()  # perf: decode pool seam (was decode(record.value, partition, offset))
        except Exception as error:
            decoded = None
            reason = f"processor error while decoding: {type(error).__name__}: {error}"
        else:
            batch.rows.extend(decoded.rows)
            reason = decoded.error
            batch.spans += decoded.spans
            batch.skipped_non_genai += decoded.skipped_non_genai
        if reason:
            letter = DeadLetter(record.key, record.value, record.topic, record.partition, record.offset, reason)
            self._dlq.send(letter)
            batch.letters.append(letter)
        batch.messages += 1
        batch.offsets[TopicPartition(record.topic, record.partition)] = record.offset + 1

    def _flush(self, patient: bool) -> bool:
        """Write the batch in hand and confirm its dead letters, then settle if due (see `_settle`).

        `patient` retries with backoff, otherwise one try. Returns False when a rebalance took
        the batches away (dropped uncommitted, to be re-read).
        """
        batch = self._batch
        if batch.empty():
            return self._settle(patient)
        columns = self._enricher.columns(batch.rows)
        content = [i for i, captured in enumerate(columns["content_captured"]) if captured]
        written = self._attempt(
            patient,
            (lambda: self._writer.insert(columns), "ClickHouse write"),
            (lambda: self._dlq.confirm(batch.letters), "DLQ produce"),
        )
        if not written:
            return False
        if content:
            self._hallucination.submit(row_dicts(columns, content))
        self._written.add(batch, columns)
        self._batch = _Batch()
        return self._settle(patient)

    def _settle(self, patient: bool, due: bool = False) -> bool:
        """Recompute the histograms of the written batches, then commit their offsets and count them.

        Runs once `histogram_interval_s` has passed since the first of them was written (at
        once when it is 0), or when `due` (stop, rebalance). Returns False like `_flush`.
        """
        written = self._written
        if written.empty():
            return True
        if not due and time.monotonic() - written.since < self.settings.histogram_interval_s:
            return True
        if not self._attempt(patient, (lambda: self._writer.recompute(written.minutes), "histogram recompute")):
            return False
        try:
            self._consumer.commit({tp: OffsetAndMetadata(offset, "", -1) for tp, offset in written.offsets.items()})
        except (CommitFailedError, KafkaError) as error:
            # Rows are written; the next owner of these partitions replays them onto the same keys.
            self.stats.commit_failures += 1
            log.warning("offset commit failed (%s); the batch will be replayed idempotently", error)
        stats, counts = self.stats, written.counts
        stats.messages += counts.messages
        stats.spans += counts.spans
        stats.skipped_non_genai += counts.skipped_non_genai
        stats.calls_written += counts.calls_written
        stats.dlq += counts.dlq
        stats.unpriced += counts.unpriced
        stats.batches += counts.batches
        self._written = _Written()
        return True

    def _attempt(self, patient: bool, *steps: tuple[Callable[[], object], str]) -> bool:
        """Run the steps in order (`patient`: each retried with backoff); False if a rebalance took the batches."""
        self._flushing = True
        self._revoked = False
        try:
            for action, what in steps:
                if patient:
                    self._retrying(action, what=what)
                else:
                    action()
        except Interrupted:
            if not self._revoked:
                raise
            # Our partitions were taken away mid-retry: their new owner re-reads these batches.
            self._drop()
            return False
        finally:
            self._flushing = False
        return True

    def _drop(self) -> None:
        self.stats.rebalance_replays += 1
        self._batch = _Batch()
        self._written = _Written()

    def _update_lag(self) -> None:
        now = time.monotonic()
        if now - self._last_lag < 5:
            return
        self._last_lag = now
        lag = 0
        for tp in self._consumer.assignment():
            high = self._consumer.highwater(tp)  # known from fetch responses: no extra request
            if high is not None:
                lag += max(0, high - self._consumer.position(tp))
        self.stats.lag = lag
        if now - self._last_log >= self.settings.stats_log_interval_s:
            self._last_log = now
            log.info("progress: %s, partitions %s", self.stats.as_dict(), self.partitions)

    def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        if self._flushing:
            self._revoked = True  # the retry in progress gives up; positions reset to the committed offsets
            return
        try:
            if self._flush(patient=False):
                self._settle(patient=False, due=True)
        except Exception as error:
            log.warning("rebalance: could not write or recompute the batches in hand (%s); they will be re-read", error)
            self._drop()

    # retries ---------------------------------------------------------------------------------

    def _halted(self) -> bool:
        if self._starting:
            return self._stopping.is_set()
        return self._give_up.is_set() or self._revoked

    def _retrying(self, action: Callable[[], T], what: str) -> T:
        """Run `action` until it succeeds, backing off exponentially; raise Interrupted on give-up."""
        retrying = Retrying(
            wait=wait_exponential(multiplier=0.2, max=self.settings.retry_max_backoff_s),
            retry=retry_if_not_exception_type(StoreBusy),  # another process holds the chDB path: waiting will not help
            stop=stop_any(lambda _: self._halted()),
            sleep=self._wait_alive,
            before_sleep=lambda state: self._failing(what, state.outcome.exception()),
            reraise=True,
        )
        try:
            result = retrying(action)
        except Exception as error:
            if self._halted():
                raise Interrupted() from error
            raise
        if self._degraded:
            self._degraded = False
            log.warning("%s succeeded again; resuming", what)
        return result

    def _failing(self, what: str, error: BaseException | None) -> None:
        self.stats.retries += 1
        if not self._degraded:  # log once per state change, not once per attempt
            self._degraded = True
            log.warning(
                "%s failed (%s: %s); retrying with backoff, nothing committed", what, type(error).__name__, error
            )

    def _wait_alive(self, seconds: float) -> None:
        """Back off while polling with partitions paused, so the group keeps our membership."""
        if threading.current_thread() is not self._consume_thread:
            (self._stopping if self._starting else self._give_up).wait(seconds)  # at start: no group to stay in yet
            return
        consumer = self._consumer
        deadline = time.monotonic() + seconds
        paused = consumer.assignment()
        consumer.pause(*paused)
        try:
            while time.monotonic() < deadline and not self._give_up.is_set() and not self._revoked:
                polled = consumer.poll(timeout_ms=int(min(0.5, max(0.0, deadline - time.monotonic())) * 1000))
                for tp, records in polled.items():  # partitions newly assigned are not paused: unread them
                    consumer.seek(tp, records[0].offset)
        finally:
            consumer.resume(*(tp for tp in paused if tp in consumer.assignment()))

    # alerts ------------------------------------------------------------------------------------

    def _alert_loop(self) -> None:
        while not self._stopping.wait(self.settings.alert_interval_s):
            try:
                self._alerts.run_once(datetime.now(UTC))
            except Exception as error:
                log.warning("alert evaluation failed: %s", error)


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, service: ProcessorService) -> None:
        self.service = service

    def on_partitions_revoked(self, revoked) -> None:
        self.service._on_revoked(set(revoked))

    def on_partitions_assigned(self, assigned) -> None:
        self.service.partitions = sorted(tp.partition for tp in assigned)
        log.info("assigned partitions %s", sorted(tp.partition for tp in assigned))
