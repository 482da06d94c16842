from __future__ import annotations

import sys
import threading
import time
import types
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Any

import pyarrow as pa
import pytest
from clickhouse_connect.driver.client import Client
from kafka.admin import KafkaAdminClient

from processors import decode_pool
from processors.decode import Decoded, decode
from processors.decode_pool import CHUNK_RECORDS, Decoder, Outcome
from processors.enrich import Enricher
from processors.pricing import PriceBook
from processors.refusal import refusal
from processors.service import ProcessorService
from processors.settings import ProcessorSettings
from tests.processor_workload import Call, make_calls, messages, produce
from tests.test_processor_service import run_until_consumed, settings_for
from tests.test_processor_sigkill import committed_total, end_total


@dataclass
class Record:
    value: bytes | None
    partition: int
    offset: int


ENRICHER = Enricher(PriceBook.load(), refusal)


def outcome_of(outcome: Outcome) -> Decoded | str:
    try:
        return outcome.get()
    except Exception as error:
        return f"{type(error).__name__}: {error}"


def without_calls(outcomes: Sequence[tuple[object, Decoded | str]]) -> list[Decoded | str]:
    return [replace(o, rows=[], table=None) if isinstance(o, Decoded) else o for _, o in outcomes]


def calls_of(outcomes: Sequence[tuple[object, Decoded | str]]) -> pa.Table:
    decoded = [o for _, o in outcomes if isinstance(o, Decoded)]
    tables = [d.table for d in decoded if d.table is not None]
    rows = [row for d in decoded for row in d.rows]
    return pa.concat_tables([*tables, ENRICHER.table(rows)]).combine_chunks()


def every_outcome(pool: Decoder, records: Sequence[Record]) -> list[tuple[object, Decoded | str]]:
    """Submit `records`, then wait for every chunk in flight: all outcomes from earlier calls on, in order."""
    return [(r, outcome_of(o)) for r, o in [*pool.outcomes(records), *pool.drain()]]


def wait_until(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_a_worker_pool_decodes_exactly_what_the_process_does_in_order() -> None:
    good = [value for _, value in messages(make_calls(600, seed=3), per_message=7)]
    bad = [b"random \x00\xff bytes", good[0][:40], b"", None]
    # More records than one chunk holds, bad ones spread through, two partitions.
    records = [
        Record(v, i % 2, i) for i, v in enumerate([*good[:30], bad[0], *good[30:60], bad[1], *good[60:], *bad[2:]])
    ]
    assert len(records) > CHUNK_RECORDS // 4
    inline = [(r, outcome_of(o)) for r, o in Decoder(0).outcomes(records)]
    pool = Decoder(1)
    try:
        pooled = every_outcome(pool, records)
        # An iterator abandoned with its chunks dropped (a rebalance mid-poll) leaves the pool usable.
        list(pool.outcomes(records))
        next(pool.drain(), None)
        pool.drop()
        again = every_outcome(pool, records[:5])
    finally:
        pool.close()
    assert [r for r, _ in pooled] == records
    # Workers enrich: their calls come as one insert table, equal to enriching the process's rows.
    assert without_calls(pooled) == without_calls(inline)
    assert calls_of(pooled).equals(calls_of(inline))
    assert without_calls(again) == without_calls(inline[:5]) and calls_of(again).equals(calls_of(inline[:5]))
    assert inline[0][1] == decode(good[0], 0, 0)
    assert any(isinstance(o, Decoded) and o.error for _, o in inline)  # the bad ones carry their reasons


def test_workers_do_not_run_a_foreign_main_script(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As in the dashboard (Streamlit runs its app as `__main__`) or pytest after an AppTest: the
    spawned workers decode without running that script, which here leaves a mark and exits."""
    mark = tmp_path / "ran"
    script = tmp_path / "app.py"
    script.write_text(f"open({str(mark)!r}, 'w').close()\nraise SystemExit(3)\n")
    app = types.ModuleType("__main__")
    app.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", app)
    records = [Record(value, 0, i) for i, (_, value) in enumerate(messages(make_calls(20, seed=4), per_message=5))]
    pool = Decoder(2)
    try:
        pooled = every_outcome(pool, records)
    finally:
        pool.close()
    assert sys.modules["__main__"] is app
    assert not mark.exists()
    assert calls_of(pooled).num_rows == 20
    assert calls_of(pooled).equals(calls_of([(r, outcome_of(o)) for r, o in Decoder(0).outcomes(records)]))


def small_chunks(monkeypatch: pytest.MonkeyPatch, records: int, in_flight: int) -> None:
    monkeypatch.setattr(decode_pool, "CHUNK_RECORDS", records)
    monkeypatch.setattr(decode_pool, "IN_FLIGHT_PER_WORKER", in_flight)


def test_chunks_stay_in_flight_across_calls_and_come_back_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    small_chunks(monkeypatch, records=4, in_flight=3)
    good = [value for _, value in messages(make_calls(300, seed=5), per_message=10)]
    records = [Record(v, i % 3, i) for i, v in enumerate([*good[:12], b"\x00bad", *good[12:]])]
    inline = [(r, outcome_of(o)) for r, o in Decoder(0).outcomes(records)]
    pool = Decoder(1)
    taken: list[tuple[object, Decoded | str]] = []

    def take(new: Sequence[Record]) -> None:
        taken.extend((r, outcome_of(o)) for r, o in pool.outcomes(new))
        assert pool.pending <= 3  # the in-flight bound: a call waits for the oldest chunk rather than exceed it

    try:
        take(records[:8])  # two chunks: the call returns at once, with whatever is already decoded
        assert pool.pending == 2 - len(taken) // 4
        wait_until(lambda: not pool.pending or pool.ready, "the worker never decoded the first chunk")
        ready_before = pool.pending
        take([])  # a poll that returned nothing still takes what is decoded
        assert ready_before == 0 or len(taken) >= 4
        take(records[8:24])  # four chunks more than the bound allows: the call takes the oldest as it goes
        assert len(taken) >= 24 - 4 * 3
        take(records[24:])
        taken.extend((r, outcome_of(o)) for r, o in pool.drain())
        assert pool.pending == 0 and list(pool.drain()) == []
    finally:
        pool.close()
    assert [r for r, _ in taken] == records
    assert without_calls(taken) == without_calls(inline)
    assert calls_of(taken).equals(calls_of(inline))
    assert isinstance(taken[12][1], Decoded) and taken[12][1].error  # the bad one, in its place, with its reason


def test_dropped_chunks_never_come_back_not_even_to_an_iterator_already_running(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    small_chunks(monkeypatch, records=2, in_flight=4)
    good = [value for _, value in messages(make_calls(100, seed=6), per_message=10)]
    records = [Record(v, 0, i) for i, v in enumerate(good)]
    pool = Decoder(1)
    try:
        list(pool.outcomes(records[:6]))
        running = pool.drain()
        first = next(running, None)
        pool.drop()  # a rebalance while the service was taking an outcome
        assert pool.pending == 0
        assert list(running) == []  # the rest of that chunk and the chunks behind it are gone
        fresh = every_outcome(pool, records[6:9])
    finally:
        pool.close()
    assert first is None or first[0] == records[0]
    assert [r for r, _ in fresh] == records[6:9]  # only the records submitted after the drop


def test_the_processor_with_a_decode_worker_writes_every_call_and_dead_letters(
    kafka_bootstrap, topic, ch_client, ch_database
) -> None:
    calls = make_calls(1500, seed=9)
    good = list(messages(calls, per_message=20))
    items = [*good[:10], (b"bad", b"\x00not otlp"), *good[10:]]
    produce(kafka_bootstrap, topic, items)
    settings = settings_for(kafka_bootstrap, topic, ch_database, f"g_{topic}", decode_workers=1)
    service = ProcessorService(settings, client=ch_client)
    run_until_consumed([service], len(items))
    stats = service.stats
    if not (stats.commit_failures or stats.rebalance_replays):  # else (a starved machine) batches were replayed
        assert stats.dlq == 1 and stats.calls_written == len(calls)
    stored = ch_client.query(
        f"SELECT span_id, model, input_tokens, kafka_offset FROM {ch_database}.llm_calls FINAL ORDER BY span_id"
    ).result_rows
    expected = sorted((call.span_id.hex(), call.model, call.input_tokens) for call in calls)
    assert [row[:3] for row in stored] == expected


# The processor with a decode worker, its loop turned by the test: a stop or a rebalance lands exactly
# when chunks are in flight (workers decode ahead of the writer), and the rows and offsets come out exact.


def by_hand(settings: ProcessorSettings, client: Client) -> ProcessorService:
    """A processor on its real clients whose loop the test turns with `step()` (no consuming thread)."""
    service = ProcessorService(settings, client=client)
    service.attach(service._connect())
    return service


def step_until(service: ProcessorService, condition, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, (what, service.stats.as_dict())
        service.step()


def in_flight(service: ProcessorService) -> int:
    return service._decoder.pending if service._decoder is not None else 0


def finish_by_hand(service: ProcessorService) -> None:
    try:
        service.finish()
    finally:
        service._require().consumer.close(autocommit=False)
        service.stop()


def stored(client: Client, database: str) -> tuple[int, int, int]:
    """(rows after dedup, distinct span ids, calls in the latency histograms)."""
    final, unique, histogram_calls = client.query(
        f"SELECT (SELECT count() FROM {database}.llm_calls FINAL), (SELECT uniqExact(span_id) FROM {database}.llm_calls),"
        f" (SELECT sum(count) FROM {database}.latency_histograms FINAL WHERE metric = 'latency_ms')"
    ).result_rows[0]
    return int(final), int(unique), int(histogram_calls)


def in_histograms(calls: Iterable[Call]) -> int:
    return sum(c.in_histograms for c in calls)


# One poll is one chunk of at most 10 messages of 20 calls; batches of 300 calls commit as they go.
PIPELINED = dict(decode_workers=1, poll_max_records=10, batch_max_calls=300, histogram_interval_s=0)


def pipelined_topic(
    bootstrap: str, topic: str, database: str, count: int, seed: int
) -> tuple[list[Call], list[tuple[bytes, bytes]], ProcessorSettings]:
    """`count` calls on `topic` in messages of 20, and the settings of a pipelined processor reading them."""
    calls = make_calls(count, seed=seed)
    items = list(messages(calls, per_message=20))
    produce(bootstrap, topic, items)
    return calls, items, settings_for(bootstrap, topic, database, f"g_{topic}", **PIPELINED)


def test_a_stop_with_chunks_in_flight_writes_and_commits_them_and_a_restart_reads_on_exactly_from_there(
    kafka_bootstrap, topic, ch_client, ch_database
) -> None:
    calls, items, settings = pipelined_topic(kafka_bootstrap, topic, ch_database, 6000, seed=31)
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        first = by_hand(settings, ch_client)
        try:
            step_until(
                first, lambda: first.stats.batches > 0 and in_flight(first) > 0, "a commit, then chunks in flight"
            )
            pending_at_stop = in_flight(first)
        finally:
            finish_by_hand(first)
        consumed = first.stats.messages
        assert pending_at_stop > 0 and 0 < consumed < len(items)
        # Everything taken, in flight included, is written and committed; nothing twice.
        assert committed_total(admin, settings.consumer_group) == consumed
        final, unique, _ = stored(ch_client, ch_database)
        assert final == unique == first.stats.calls_written > 0

        second = ProcessorService(settings, client=ch_client)
        run_until_consumed([second], len(items) - consumed)
        assert committed_total(admin, settings.consumer_group) == end_total(kafka_bootstrap, topic) == len(items)
    finally:
        admin.close()
    # The restart re-read and re-wrote nothing (raw rows would not tell: the hallucination
    # worker re-inserts the rows it flags).
    assert consumed + second.stats.messages == len(items)
    assert first.stats.calls_written + second.stats.calls_written == len(calls)
    assert stored(ch_client, ch_database) == (len(calls), len(calls), in_histograms(calls))


def test_a_rebalance_with_chunks_in_flight_drops_them_and_every_call_is_stored_once(
    kafka_bootstrap, topic, ch_client, ch_database
) -> None:
    calls, items, settings = pipelined_topic(kafka_bootstrap, topic, ch_database, 8000, seed=37)
    first = by_hand(settings, ch_client)
    second = ProcessorService(settings, client=ch_client)
    dropped: list[int] = []  # chunks in flight at each drop
    gate = threading.Event()
    try:
        step_until(first, lambda: first.stats.batches > 0 and in_flight(first) > 0, "a commit, then chunks in flight")
        decoder = first._decoder
        assert decoder is not None
        drop = decoder.drop

        def recorded_drop() -> None:
            dropped.append(decoder.pending)
            drop()

        decoder.drop = recorded_drop  # type: ignore[method-assign]
        # Until the rebalance, no chunk comes back from the worker: the revoke (inside one of the
        # first's polls) finds them in flight however fast the worker is next to this loop.
        submit = decoder._submit

        def gated(chunk: Sequence[Any]) -> Future[Any]:
            result: Future[Any] = Future()
            real = submit(chunk)
            real.add_done_callback(
                lambda done: threading.Thread(target=relay, args=(done, result), daemon=True).start()
            )
            return result

        def relay(done: Future[Any], result: Future[Any]) -> None:
            gate.wait()
            if result.cancelled():  # dropped at the revoke
                return
            if done.cancelled():
                result.cancel()
            elif done.exception() is not None:
                result.set_exception(done.exception())
            else:
                result.set_result(done.result())

        decoder._submit = gated  # type: ignore[method-assign]
        second.start()
        deadline = time.monotonic() + 120
        while len(first.partitions) == 4 or not second.partitions:
            assert time.monotonic() < deadline, ("no rebalance", first.stats.as_dict(), second.stats.as_dict())
            assert second.failure is None, second.failure
            if decoder.full:
                first._wait_alive(0.2)  # polls with our partitions paused: the group goes on, nothing is fetched
            else:
                first.step()
        gate.set()
        decoder._submit = submit  # type: ignore[method-assign]
        owners = sorted([*first.partitions, *second.partitions])
        first_owned, second_owned = list(first.partitions), list(second.partitions)
        count = f"SELECT count() FROM {ch_database}.llm_calls FINAL"
        step_until(
            first,
            lambda: (
                ch_client.command(count) == len(calls) and committed_total_of(settings, kafka_bootstrap) == len(items)
            ),
            "every call stored and every offset committed",
        )
    finally:
        gate.set()
        second.stop()
        finish_by_hand(first)
    # Both own partitions (whether the second has anything left to read depends on how far the
    # first got before the revoke: what it wrote then was committed, so it is not read twice).
    assert owners == [0, 1, 2, 3] and first_owned and second_owned
    assert dropped and dropped[0] > 0  # the revoke found chunks in flight
    # Once each, every call (FINAL collapses the re-read ones), and the histograms count each once.
    assert stored(ch_client, ch_database) == (len(calls), len(calls), in_histograms(calls))


def committed_total_of(settings: ProcessorSettings, bootstrap: str) -> int:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return committed_total(admin, settings.consumer_group)
    finally:
        admin.close()
