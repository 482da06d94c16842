from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import pyarrow as pa

from processors.decode import Decoded, decode
from processors.decode_pool import CHUNK_RECORDS, Decoder, Outcome
from processors.enrich import Enricher
from processors.pricing import PriceBook
from processors.refusal import refusal
from processors.service import ProcessorService
from tests.processor_workload import make_calls, messages, produce
from tests.test_processor_service import run_until_consumed, settings_for


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
    # Workers enrich: their calls come as one insert table, equal to enriching the process's rows.
    assert without_calls(pooled) == without_calls(inline)
    assert calls_of(pooled).equals(calls_of(inline))
    assert without_calls(again) == without_calls(inline[:5]) and calls_of(again).equals(calls_of(inline[:5]))
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
