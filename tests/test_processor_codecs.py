"""Every Kafka compression codec a Collector may use (gzip, snappy, lz4, zstd) is read by the processor."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from processors.service import ProcessorService
from tests.processor_workload import make_calls, messages, produce
from tests.test_processor_service import run_until_consumed, settings_for


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_a_compressed_batch_is_processed(kafka_broker, kafka_bootstrap, topic, ch_client, ch_database, codec):
    calls = make_calls(200, seed=len(codec))
    items = list(messages(calls, per_message=20))
    produce(kafka_bootstrap, topic, items, compression_type=codec)

    service = ProcessorService(settings_for(kafka_bootstrap, topic, ch_database, f"g_{topic}"), client=ch_client)
    run_until_consumed([service], len(items))
    assert service.failure is None
    assert service.stats.dlq == 0
    stored = {
        (bytes.fromhex(trace), bytes.fromhex(span), int(tokens))
        for trace, span, tokens in ch_client.query(
            f"SELECT trace_id, span_id, input_tokens FROM {ch_database}.llm_calls FINAL"
        ).result_rows
    }
    assert stored == {(c.trace_id, c.span_id, c.input_tokens) for c in calls}
    # The batches really were stored compressed with that codec (the broker keeps the producer's).
    segments = sorted(kafka_broker.data.glob(f"{topic}-*/*.log"))
    assert {codec} == {CODECS[c] for segment in segments for c in batch_codecs(segment)}


CODECS = {1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}


def batch_codecs(segment: Path) -> list[int]:
    """Compression codec id of every record batch in a Kafka log segment (v2 batch header)."""
    data, at, codecs = segment.read_bytes(), 0, []
    while at + 23 <= len(data):
        (length,) = struct.unpack_from(">i", data, at + 8)
        (attributes,) = struct.unpack_from(">h", data, at + 21)
        codecs.append(attributes & 0x7)
        at += 12 + length
    return codecs
