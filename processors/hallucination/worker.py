"""Runs the hallucination checks off the hot path and writes their verdicts.

The processor hands over each written batch's content-carrying rows with `submit`, which
never blocks: rows go into a queue bounded in calls and in bytes of text (captured content
has no size limit), and when the queue cannot take them all a uniform random sample goes in
and each sampled row carries the sample rate it was drawn at (`hallucination_sample_rate`,
so rates can be re-weighted). A queued row keeps only the columns the checks read. Latency, refusal and cost
columns were written before `submit`, so checks never delay them.

Per batch the worker writes one `hallucination_flags` row per check run (flagged or not),
then re-inserts the checked calls as `version + 1` with the verdict. The re-insert is an
`INSERT ... SELECT` from `llm_calls FINAL` (server-side, columnar), so the new version
carries the stored row's every column unchanged; rows must therefore be submitted after
they are written. Shadow pairs: a call's partner is looked up in the batch and in
`llm_calls FINAL`; when it arrived earlier and was already checked, it gets the pair
verdict too (a new version of its row), so the pair is judged whichever half comes last.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from clickhouse_connect.driver.client import Client

from processors.hallucination.checks import Check, Flag, ShadowDisagreement
from processors.hallucination.registry import BACKGROUND_CHECKS, build_checks
from processors.retry import backoff, stop_within
from processors.settings import ProcessorSettings

if TYPE_CHECKING:
    from processors.hallucination.judge import LLMJudge

log = logging.getLogger("cutover.hallucination")

FLAG_COLUMNS = (
    "span_id",
    "trace_id",
    "start_time",
    "model",
    "task",
    "check_name",
    "score",
    "flagged",
    "reason",
    "sample_rate",
)
_PARTNER_COLUMNS = (
    "span_id, trace_id, start_time, model, task, input_text, output_text, shadow_pair_id, "
    "hallucination_checked, hallucination_sample_rate"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# What the checks, the judge and the verdict writes read of a call: a queued row keeps only these
# (a full llm_calls row dict held ~3x the memory, most of it columns nothing here reads).
QUEUED_COLUMNS = (
    "span_id",
    "trace_id",
    "start_time",
    "model",
    "task",
    "input_text",
    "output_text",
    "context_text",
    "reference_answer",
    "shadow_pair_id",
)
_TEXT_COLUMNS = ("input_text", "output_text", "context_text", "reference_answer")
_ROW_OVERHEAD_BYTES = 1_000  # a queued row's dict, ids and time: ~0.5 KB by tracemalloc, rounded up


def queued_bytes(row: Mapping[str, Any]) -> int:
    """What a queued row holds, roughly: its texts (the bulk, unbounded) and a fixed overhead."""
    return _ROW_OVERHEAD_BYTES + sum(len(row.get(column) or "") for column in _TEXT_COLUMNS)


@dataclass
class WorkerStats:
    offered: int = 0  # content rows submitted
    queued: int = 0
    sampled_out: int = 0  # not checked: the queue was full
    checked: int = 0
    flagged: int = 0
    flags_written: int = 0
    partner_updates: int = 0  # earlier halves of shadow pairs re-judged
    batches: int = 0
    write_failures: int = 0  # failed write attempts (retried)
    abandoned: int = 0  # rows left unchecked at stop while ClickHouse was down

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def checkable(row: Mapping[str, Any]) -> bool:
    """Only answers can hallucinate: errors and refusals have none to check."""
    return bool(row.get("output_text")) and not row.get("is_error") and not row.get("is_refusal")


def _micros(value: datetime | int) -> int:
    """Start times arrive as datetimes (from ClickHouse) or int microseconds (from the decoder)."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        delta = moment - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return int(value)


class HallucinationWorker:
    """Bounded-queue background worker: `start()`, `submit(rows)` (never blocks), `stop()`."""

    def __init__(
        self,
        client: Client,
        database: str,
        settings: ProcessorSettings,
        checks: Sequence[Check] | None = None,
        judge: LLMJudge | None = None,
    ) -> None:
        self.client = client
        self.database = database
        self.settings = settings
        self.checks = (
            list(checks)
            if checks is not None
            else build_checks(settings.hallucination_check_names, settings.hallucination_flag_score)
        )
        if judge is None and BACKGROUND_CHECKS[0] in settings.hallucination_check_names:
            from processors.hallucination.judge import LLMJudge
            from processors.pricing import PriceBook

            judge = LLMJudge(client, database, settings, PriceBook.load(settings.prices_file))
        self.judge = judge  # the `llm_judge` check: its own threads, fed each written batch
        self._pair_check = next((c for c in self.checks if isinstance(c, ShadowDisagreement)), None)
        self._queue: queue.Queue[tuple[Mapping[str, Any], float]] = queue.Queue(settings.hallucination_queue_size)
        self._max_bytes = settings.hallucination_queue_mb * 2**20
        self._bytes = 0  # of the rows queued or in the batch being checked
        self._bytes_lock = threading.Lock()
        self._batch_size = settings.hallucination_batch_size
        self._stopping = threading.Event()
        self._give_up = threading.Event()
        self._thread: threading.Thread | None = None
        self._sampling = False
        self._random = random.Random()
        self.sample_rate = 1.0  # of the last submitted rows: 1 while the checks keep up
        self.stats = WorkerStats()

    # lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self.judge is not None:
            self.judge.start()
        self._thread = threading.Thread(target=self._run, name="cutover-hallucination", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Check what is queued (for up to `timeout` s), then stop; unchecked rows stay unchecked."""
        self._stopping.set()
        if self._thread is not None:
            stop_within([self._thread], timeout, self._give_up, grace=10)
        if self.judge is not None:
            self.judge.stop(timeout)
        log.info("hallucination worker stopped: %s", self.stats.as_dict())

    @property
    def backlog(self) -> int:
        """Calls queued and not yet taken into a batch."""
        return self._queue.qsize()

    @property
    def backlog_bytes(self) -> int:
        """Bytes (texts and a fixed overhead per call) of the calls queued or being checked."""
        return self._bytes

    def idle(self) -> bool:
        """Nothing queued or in progress (for tests and orderly shutdowns)."""
        return self._queue.unfinished_tasks == 0

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.idle() and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.idle()

    # intake -------------------------------------------------------------------------------

    def submit(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Queue rows for checking without ever blocking; samples uniformly when the queue is short of room."""
        eligible = [
            {column: row[column] for column in QUEUED_COLUMNS if column in row} for row in rows if checkable(row)
        ]
        if not eligible:
            return
        self.stats.offered += len(eligible)
        sizes = [queued_bytes(row) for row in eligible]
        with self._bytes_lock:
            room_bytes = self._max_bytes - self._bytes
            room = self._queue.maxsize - self._queue.qsize()
            if room >= len(eligible) and sum(sizes) <= room_bytes:
                chosen, rate = list(zip(eligible, sizes, strict=True)), 1.0
            else:
                # In random order until the queue is full (in calls or bytes): a uniform sample.
                chosen = []
                for i in self._random.sample(range(len(eligible)), len(eligible)):
                    if len(chosen) >= room or sizes[i] > room_bytes:
                        break
                    room_bytes -= sizes[i]
                    chosen.append((eligible[i], sizes[i]))
                rate = len(chosen) / len(eligible)
            self.sample_rate = rate
            queued = 0
            for row, size in chosen:
                try:
                    self._queue.put_nowait((row, rate))
                except queue.Full:
                    break
                self._bytes += size
                queued += 1
        self.stats.queued += queued
        self.stats.sampled_out += len(eligible) - queued
        if queued < len(eligible) and not self._sampling:
            self._sampling = True
            log.warning(
                "hallucination checks cannot keep up: sampling (this batch %d of %d calls); sample rates are recorded",
                queued,
                len(eligible),
            )
        elif queued == len(eligible) and self._sampling:
            self._sampling = False
            log.warning("hallucination checks keep up again: checking every call")

    # work --------------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                self._write_with_retry(batch)
            except Exception as error:
                log.exception("hallucination batch of %d calls abandoned: %s", len(batch), error)
                self.stats.abandoned += len(batch)
            finally:
                with self._bytes_lock:
                    self._bytes -= sum(queued_bytes(row) for row, _ in batch)
                for _ in batch:
                    self._queue.task_done()

    def _next_batch(self) -> list[tuple[Mapping[str, Any], float]] | None:
        batch: list[tuple[Mapping[str, Any], float]] = []
        if self._give_up.is_set():  # stop() ran out of time: what is still queued stays unchecked
            self.stats.abandoned += self._queue.qsize()
            return None
        while not batch:
            try:
                batch.append(self._queue.get(timeout=0.2))
            except queue.Empty:
                if self._stopping.is_set():
                    return None
        while len(batch) < self._batch_size:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _write_with_retry(self, batch: list[tuple[Mapping[str, Any], float]]) -> None:
        retrying = backoff(
            self.settings.retry_max_backoff_s,
            halted=self._give_up.is_set,
            sleep=self._give_up.wait,
            on_failure=self._failed,
        )
        retrying(lambda: self.process(batch))

    def _failed(self, error: BaseException | None) -> None:
        self.stats.write_failures += 1
        if self.stats.write_failures == 1 or self.stats.write_failures % 100 == 0:
            log.warning("hallucination write failed (%s); retrying with backoff", error)

    def process(self, batch: Sequence[tuple[Mapping[str, Any], float]]) -> None:
        """Check one batch and write its flags and new call versions (idempotent, so retried whole)."""
        rows = [row for row, _ in batch]
        partners = self._partners(rows)
        in_batch = {row["span_id"] for row in rows}
        flag_rows: list[tuple] = []
        verdicts: dict[str, tuple[int, float]] = {}
        later: dict[str, int] = {}  # stored partners (not in this batch) whose pair verdict is known now
        for row, rate in batch:
            call = dict(row)
            partner = partners.get(call["span_id"])
            if partner is not None:
                call.update(
                    partner_output_text=partner["output_text"],
                    partner_model=partner["model"],
                    partner_span_id=partner["span_id"],
                )
            flags = [flag for check in self.checks if (flag := check.run(call)) is not None]
            flag_rows.extend(self._flag_row(call, flag, rate) for flag in flags)
            verdicts[call["span_id"]] = (int(any(flag.flagged for flag in flags)), rate)
            # A stored partner gets the verdict even if its own check has not run yet: that run
            # may have looked for this call before it was stored, and would never judge the pair.
            if partner is not None and partner["span_id"] not in in_batch and self._pair_check is not None:
                mirrored = dict(
                    partner,
                    partner_output_text=call["output_text"],
                    partner_model=call["model"],
                    partner_span_id=call["span_id"],
                )
                flag = self._pair_check.run(mirrored)
                if flag is not None:
                    flag_rows.append(self._flag_row(mirrored, flag, partner["hallucination_sample_rate"]))
                    later[partner["span_id"]] = max(later.get(partner["span_id"], 0), int(flag.flagged))
        if flag_rows:
            self.client.insert(
                "hallucination_flags", flag_rows, column_names=list(FLAG_COLUMNS), database=self.database
            )
        self._new_versions(verdicts, rows)
        if later:
            earlier = [p for p in partners.values() if p["span_id"] in later]
            self._new_versions({span: (flag, -1.0) for span, flag in later.items()}, earlier, checked=False)
        stats = self.stats  # counted once the batch is written: a retried batch is not counted twice
        stats.batches += 1
        stats.checked += len(batch)
        stats.flagged += sum(flagged for flagged, _ in verdicts.values())
        stats.flags_written += len(flag_rows)
        stats.partner_updates += len(later)
        if self.judge is not None:  # after the writes: a retried batch is offered once
            self.judge.offer(batch)

    @staticmethod
    def _flag_row(call: Mapping[str, Any], flag: Flag, rate: float) -> tuple:
        return (
            call["span_id"],
            call.get("trace_id", ""),
            _micros(call["start_time"]),
            call.get("model", ""),
            call.get("task", ""),
            flag.check_name,
            flag.score,
            int(flag.flagged),
            flag.reason,
            rate,
        )

    def _partners(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
        """span id -> the other half of its shadow pair (from this batch, else from llm_calls)."""
        if self._pair_check is None:
            return {}
        pair_ids = sorted({row["shadow_pair_id"] for row in rows if row.get("shadow_pair_id")})
        if not pair_ids:
            return {}
        members: dict[str, dict[str, Mapping[str, Any]]] = {}
        stored = self.client.query(
            f"SELECT {_PARTNER_COLUMNS} FROM {self.database}.llm_calls FINAL "
            "WHERE shadow_pair_id IN %(pairs)s AND is_error = 0 AND is_refusal = 0 AND output_text != ''",
            parameters={"pairs": pair_ids},
        )
        for found in stored.named_results():
            members.setdefault(found["shadow_pair_id"], {})[found["span_id"]] = found
        for row in rows:  # the batch's own rows win: they are the newest
            if row.get("shadow_pair_id"):
                members.setdefault(row["shadow_pair_id"], {})[row["span_id"]] = row
        partners: dict[str, Mapping[str, Any]] = {}
        for row in rows:
            pair = members.get(row.get("shadow_pair_id") or "", {})
            others = [other for span, other in pair.items() if span != row["span_id"]]
            if others:
                partners[row["span_id"]] = others[0]
        return partners

    def _new_versions(
        self, verdicts: Mapping[str, tuple[int, float]], rows: Sequence[Mapping[str, Any]], checked: bool = True
    ) -> None:
        """Re-insert the stored rows as version + 1 with the verdict (OR-ed with an earlier one).

        For a partner judged from the other side (`checked=False`) its checked mark stays as
        stored (a sampled-out call is not called checked), and a sample rate below 0 keeps
        the stored rate."""
        spans = list(verdicts)
        flags = [verdicts[span][0] for span in spans]
        rates = [verdicts[span][1] for span in spans]
        models = sorted({row.get("model", "") for row in rows})
        starts = [_micros(row["start_time"]) for row in rows]
        # model and start_time bound the read to the sorting key's granules instead of a full scan.
        self.client.command(
            f"""
            INSERT INTO {self.database}.llm_calls
            SELECT * REPLACE (
                version + 1 AS version,
                {"1" if checked else "hallucination_checked"} AS hallucination_checked,
                greatest(hallucination_flag, toUInt8(transform(span_id, %(spans)s, %(flags)s, 0))) AS hallucination_flag,
                if(transform(span_id, %(spans)s, %(rates)s, -1.0) < 0, hallucination_sample_rate,
                   toFloat32(transform(span_id, %(spans)s, %(rates)s, -1.0))) AS hallucination_sample_rate,
                now64(3) AS ingested_at
            )
            FROM {self.database}.llm_calls FINAL
            WHERE model IN %(models)s
              AND start_time BETWEEN fromUnixTimestamp64Micro(%(first)s) AND fromUnixTimestamp64Micro(%(last)s)
              AND span_id IN %(spans)s
            """,
            parameters={
                "spans": spans,
                "flags": flags,
                "rates": rates,
                "models": models,
                "first": min(starts),
                "last": max(starts),
            },
        )
