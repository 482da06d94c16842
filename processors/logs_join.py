"""Joins GenAI content sent as OTLP log records onto the call rows of their spans.

Instrumentations in event mode (the official `opentelemetry-instrumentation-genai-openai` and
`opentelemetry-instrumentation-openai-v2`) put prompts and answers on log records, not on the
span: `gen_ai.{system,user,assistant,tool}.message` and `gen_ai.choice` events (older GenAI
semconv, the text in the body) or one `gen_ai.client.inference.operation.details` event with
`gen_ai.input.messages` / `gen_ai.output.messages` attributes (current semconv). `cutover
collect` puts them on the logs topic; this module reads every partition of that topic beside
the spans consumer and keys the content by (trace id, span id). It reads by assignment, not
group membership, and commits its offsets under the group `<group>-logs`: no rebalance can leave
it owning nothing (kafka-python can lose an assignment under load), and any instance can join any
call because call rows live in ClickHouse. Several processor instances therefore each read all
of the logs topic; their re-writes of a row carry the same content, so they collapse.

Choice: a re-write, not a wait. Call rows are written as their spans arrive, never held back
for content that may never come (most apps do not capture it). Every `logs_join_interval_s`
the content received is joined onto the rows already in `llm_calls`: each matched row is
re-inserted as `version + 1` with its input/output text, `content_captured = 1` and its refusal
classified on the new output text; the ReplacingMergeTree keeps the newest version, so a log
record that arrives after its row (the usual order: the SDK exports logs and spans in separate
batches) re-writes it. Content whose row is not there yet waits, and records of a call that
arrive later within the window merge in and re-write the row again. Memory is bounded: a
call's content is kept `logs_join_window_s` after its first record (`logs_join_max_pending`
calls and `logs_join_max_pending_mb` of text at most, the oldest dropped first); content that never met its row is counted as
unmatched and dropped. Offsets are committed only up to the oldest record still waiting, so a
restart re-reads what was not yet joined (re-joining is idempotent). Joined rows go to the
hallucination checks like rows that carried their content on the span.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from clickhouse_connect.driver.client import Client
from google.protobuf.message import DecodeError
from kafka import KafkaConsumer
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata, TopicPartition
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from cutover import kafka_clients
from cutover.kafka_clients import KafkaConnection
from processors.enrich import RefusalClassifier
from processors.settings import ProcessorSettings

log = logging.getLogger("cutover.logs_join")

_INPUT_EVENTS = frozenset(
    {"gen_ai.system.message", "gen_ai.user.message", "gen_ai.assistant.message", "gen_ai.tool.message"}
)
_CHOICE_EVENT = "gen_ai.choice"
_DETAILS_EVENT = "gen_ai.client.inference.operation.details"
_INPUT_ATTRIBUTES = ("gen_ai.system_instructions", "gen_ai.input.messages")
_OUTPUT_ATTRIBUTES = ("gen_ai.output.messages",)
# How often the partitions of the logs topic are looked up again (a topic may grow).
ASSIGN_INTERVAL_S = 30.0
# A pending call's key, times, lists and offsets: ~0.9 KB by tracemalloc, rounded up; its texts come on top.
_ENTRY_OVERHEAD_BYTES = 1_000
# How far a call's start may lie before its first content record (a long stream) or after it (clock skew).
_START_SLACK = timedelta(hours=1)

Json = Any  # an AnyValue as plain Python: str, int, float, bool, bytes, list, dict or None


@dataclass
class LogsJoinStats:
    records: int = 0  # GenAI content log records received
    ignored: int = 0  # log records that are not GenAI content or carry no span
    undecodable: int = 0  # Kafka messages that are not an ExportLogsServiceRequest
    joined: int = 0  # call rows re-written with their content
    unmatched: int = 0  # calls whose content found no row within the window (or was evicted)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class _Content:
    """The content received for one call so far."""

    first_seen: float
    event_time: datetime
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    finish_reason: str = ""
    dirty: bool = True  # received since it was last joined
    joined: bool = False
    offsets: dict[TopicPartition, int] = field(default_factory=dict)  # oldest unjoined record per partition
    size: int = _ENTRY_OVERHEAD_BYTES  # what it holds, roughly: its texts and a fixed overhead


def any_value(value: AnyValue) -> Json:
    """An OTLP AnyValue as plain Python."""
    kind = value.WhichOneof("value")
    if kind == "kvlist_value":
        return {item.key: any_value(item.value) for item in value.kvlist_value.values}
    if kind == "array_value":
        return [any_value(item) for item in value.array_value.values]
    return None if kind is None else getattr(value, kind)


def texts(value: Json) -> list[str]:
    """The text of a message, a list of messages or parts, or a JSON string of them, in order."""
    if isinstance(value, str):
        stripped = value.lstrip()
        if stripped[:1] in ("[", "{"):
            try:
                return texts(json.loads(value))
            except ValueError:
                pass
        return [value] if value else []
    if isinstance(value, list):
        return [text for item in value for text in texts(item)]
    if isinstance(value, dict):
        found: list[str] = []
        for key in ("content", "text", "parts", "message"):
            if key in value:
                found.extend(texts(value[key]))
        return found
    return []


def content_of(record: LogRecord) -> tuple[list[str], list[str], str] | None:
    """(input texts, output texts, finish reason) of a GenAI content record; None for any other record."""
    attributes = {item.key: item.value for item in record.attributes}
    name = record.event_name or (attributes["event.name"].string_value if "event.name" in attributes else "")
    if name in _INPUT_EVENTS:
        return texts(any_value(record.body)), [], ""
    if name == _CHOICE_EVENT:
        body = any_value(record.body)
        finish = body.get("finish_reason") if isinstance(body, dict) else None
        message = body.get("message") if isinstance(body, dict) else body
        return [], texts(message), finish if isinstance(finish, str) else ""
    if name == _DETAILS_EVENT:
        inputs = [text for key in _INPUT_ATTRIBUTES if key in attributes for text in texts(any_value(attributes[key]))]
        outputs = [
            text for key in _OUTPUT_ATTRIBUTES if key in attributes for text in texts(any_value(attributes[key]))
        ]
        finish = ""
        raw = (
            any_value(attributes["gen_ai.response.finish_reasons"])
            if "gen_ai.response.finish_reasons" in attributes
            else None
        )
        if isinstance(raw, list) and raw and isinstance(raw[0], str):
            finish = raw[0]
        return inputs, outputs, finish
    return None


class LogsJoiner:
    """Consumes the logs topic and re-writes call rows with the content it carries (see the module doc)."""

    def __init__(
        self,
        client: Client,
        database: str,
        settings: ProcessorSettings,
        classify: RefusalClassifier,
        on_joined: Callable[[list[dict[str, Any]]], None] | None = None,
    ) -> None:
        self.client = client
        self.database = database
        self.settings = settings
        self.stats = LogsJoinStats()
        self._classify = classify
        self._on_joined = on_joined
        self._pending: OrderedDict[tuple[str, str], _Content] = OrderedDict()
        self._pending_bytes = 0
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer: KafkaConsumer | None = None

    def start(self) -> None:
        settings = self.settings
        self._consumer = kafka_clients.consumer(
            KafkaConnection.from_settings(settings),
            "processor-logs",
            group_id=f"{settings.consumer_group}-logs",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            metadata_max_age_ms=30_000,
        )
        self._thread = threading.Thread(target=self._loop, name="cutover-logs-join", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        last_join = last_assign = time.monotonic()
        try:
            while not self._stopping.is_set():
                if not consumer.assignment() or time.monotonic() - last_assign >= ASSIGN_INTERVAL_S:
                    last_assign = time.monotonic()
                    if not self._assign(consumer):
                        self._stopping.wait(0.5)  # the topic has no partitions yet
                        continue
                for records in consumer.poll(timeout_ms=200, max_records=2000).values():
                    for record in records:
                        self.take(record.value, TopicPartition(record.topic, record.partition), record.offset)
                if time.monotonic() - last_join >= self.settings.logs_join_interval_s:
                    last_join = time.monotonic()
                    self._join_and_commit(consumer)
            self._join_and_commit(consumer)
        except Exception:
            log.exception("log content join failed; content not yet joined will be re-read on restart")
        finally:
            consumer.close(autocommit=False)

    def _assign(self, consumer: KafkaConsumer) -> bool:
        """Own every partition of the logs topic (a grown topic included); False while it has none."""
        topic = self.settings.logs_topic
        wanted = {TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()}
        if wanted and wanted != consumer.assignment():
            consumer.assign(sorted(wanted))  # positions start from the group's committed offsets
        return bool(wanted)

    def _join_and_commit(self, consumer: KafkaConsumer) -> None:
        try:
            self.join()
        except Exception as error:  # ClickHouse down: keep the content, try again next round
            log.warning("joining log content onto calls failed (%s); retrying next round", error)
            return
        self.expire()
        committable = {tp: consumer.position(tp) for tp in consumer.assignment()}
        for content in self._pending.values():
            for tp, offset in content.offsets.items():
                if tp in committable and offset < committable[tp]:
                    committable[tp] = offset
        if committable:
            try:
                consumer.commit({tp: OffsetAndMetadata(offset, "", -1) for tp, offset in committable.items()})
            except KafkaError as error:
                log.warning("logs offset commit failed (%s); joined content will be re-read idempotently", error)

    def take(self, value: bytes | None, tp: TopicPartition, offset: int) -> None:
        """Add the GenAI content of one Kafka message of the logs topic."""
        try:
            request = ExportLogsServiceRequest.FromString(value or b"")
        except (DecodeError, ValueError):
            self.stats.undecodable += 1
            return
        now = time.monotonic()
        for resource_logs in request.resource_logs:
            for scope_logs in resource_logs.scope_logs:
                for record in scope_logs.log_records:
                    content = content_of(record) if len(record.span_id) == 8 and len(record.trace_id) == 16 else None
                    if content is None:
                        self.stats.ignored += 1
                        continue
                    self.stats.records += 1
                    self._add((record.trace_id.hex(), record.span_id.hex()), record, content, now, tp, offset)

    def _add(
        self,
        key: tuple[str, str],
        record: LogRecord,
        content: tuple[list[str], list[str], str],
        now: float,
        tp: TopicPartition,
        offset: int,
    ) -> None:
        entry = self._pending.get(key)
        if entry is None:
            nanos = record.time_unix_nano or record.observed_time_unix_nano or time.time_ns()
            entry = self._pending[key] = _Content(now, datetime.fromtimestamp(nanos / 1e9, UTC))
            self._pending_bytes += entry.size
        inputs, outputs, finish = content
        added = sum(map(len, inputs)) + sum(map(len, outputs))
        entry.size += added
        self._pending_bytes += added
        entry.inputs.extend(inputs)
        entry.outputs.extend(outputs)
        entry.finish_reason = entry.finish_reason or finish
        entry.dirty = True
        entry.offsets.setdefault(tp, offset)
        most_bytes = self.settings.logs_join_max_pending_mb * 2**20
        while len(self._pending) > self.settings.logs_join_max_pending or (
            self._pending_bytes > most_bytes and len(self._pending) > 1
        ):
            _, evicted = self._pending.popitem(last=False)
            self._drop(evicted)

    def _drop(self, entry: _Content) -> None:
        self._pending_bytes -= entry.size
        if not entry.joined:
            self.stats.unmatched += 1

    @property
    def pending_bytes(self) -> int:
        """Bytes (texts and a fixed overhead per call) of the content held."""
        return self._pending_bytes

    def join(self) -> int:
        """Re-write the rows of calls with new content; returns rows re-written."""
        dirty = {key: entry for key, entry in self._pending.items() if entry.dirty}
        if not dirty:
            return 0
        rows = self._stored_rows(dirty)
        for row in rows:
            entry = dirty[(row["trace_id"], row["span_id"])]
            row["input_text"] = "\n\n".join(entry.inputs) or row["input_text"]
            row["output_text"] = "\n\n".join(entry.outputs) or row["output_text"]
            row["finish_reason"] = row["finish_reason"] or entry.finish_reason
            row["content_captured"] = 1
            if row["refusal_source"] in ("", "classifier"):
                source, kind = self._classify(False, row["finish_reason"], row["output_text"])
                row["refusal_source"], row["is_refusal"], row["refusal_kind"] = source, int(source != ""), kind
            row["version"] += 1
        if rows:
            names = list(rows[0])
            self.client.insert(
                "llm_calls", [[row[n] for n in names] for row in rows], column_names=names, database=self.database
            )
            if self._on_joined is not None:
                self._on_joined(rows)
        for row in rows:
            entry = dirty[(row["trace_id"], row["span_id"])]
            entry.dirty, entry.joined = False, True
            entry.offsets.clear()
        self.stats.joined += len(rows)
        return len(rows)

    def expire(self) -> None:
        """Drop content older than the window; what never met its row is counted as unmatched."""
        oldest_kept = time.monotonic() - self.settings.logs_join_window_s
        while self._pending:
            key, entry = next(iter(self._pending.items()))
            if entry.first_seen >= oldest_kept:
                break
            del self._pending[key]
            self._drop(entry)

    def _stored_rows(self, wanted: Mapping[tuple[str, str], _Content]) -> list[dict[str, Any]]:
        times = [entry.event_time for entry in wanted.values()]
        result = self.client.query(
            f"""
            SELECT * EXCEPT ingested_at FROM {self.database}.llm_calls FINAL
            WHERE start_time BETWEEN fromUnixTimestamp64Micro(%(first)s) AND fromUnixTimestamp64Micro(%(last)s)
              AND (trace_id, span_id) IN %(keys)s
            """,
            parameters={
                "first": int((min(times) - _START_SLACK).timestamp() * 1_000_000),
                "last": int((max(times) + _START_SLACK).timestamp() * 1_000_000),
                "keys": list(wanted),
            },
        )
        return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]
