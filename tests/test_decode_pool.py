from __future__ import annotations

from dataclasses import dataclass

from processors.decode import Decoded, decode
from processors.decode_pool import CHUNK_RECORDS, Decoder, Outcome
from processors.service import ProcessorService
from tests.processor_workload import make_calls, messages, produce
from tests.test_processor_service import run_until_consumed, settings_for


@dataclass
class Record:
    value: bytes | None
    partition: int
    offset: int


def outcome_of(outcome: Outcome) -> Decoded | str:
    try:
        return outcome.get()
    except Exception as error:
        return f"{type(error).__name__}: {error}"


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
        pooled = [(r, outcome_of(o)) for r, o in pool.outcomes(records)]
        # An abandoned iterator (a rebalance mid-poll) leaves the pool usable.
        next(pool.outcomes(records))
        again = [(r, outcome_of(o)) for r, o in pool.outcomes(records[:5])]
    finally:
        pool.close()
    assert [r for r, _ in pooled] == records
    assert pooled == inline
    assert again == inline[:5]
    assert inline[0][1] == decode(good[0], 0, 0)
    assert any(isinstance(o, Decoded) and o.error for _, o in inline)  # the bad ones carry their reasons


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
