"""The processor service end to end: real Kafka broker, real chDB, known ground truth."""

from __future__ import annotations

import math
import re
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from kafka import KafkaConsumer
from opentelemetry.proto.metrics.v1.metrics_pb2 import MetricsData

from cutover.histogram import quantile
from processors.pricing import PriceBook
from processors.service import ProcessorService
from processors.settings import ProcessorSettings
from tests.processor_workload import Call, make_calls, messages, produce

REPO = Path(__file__).resolve().parents[1]


def settings_for(bootstrap: str, topic: str, database: str, group: str, **extra) -> ProcessorSettings:
    values = dict(
        kafka_bootstrap=bootstrap,
        spans_topic=topic,
        dlq_topic=f"{topic}_dlq",
        consumer_group=group,
        clickhouse_database=database,
        batch_max_calls=1000,
        batch_max_wait_s=0.3,
        alert_interval_s=3600,
        processor_metrics_port=0,
    )
    return ProcessorSettings(**{**values, **extra})


def run_until_consumed(
    services: list[ProcessorService], messages_total: int, timeout: float = 120, after_assignment=None
) -> None:
    """Start the services, optionally run `after_assignment` once each owns partitions, stop when all is read."""
    for service in services:
        service.start()
    deadline = time.monotonic() + timeout
    try:
        if after_assignment is not None:
            while not all(s.partitions for s in services):
                assert time.monotonic() < deadline, "the group never gave every instance a partition"
                time.sleep(0.1)
            after_assignment()
        while sum(s.stats.messages for s in services) < messages_total:
            assert time.monotonic() < deadline, [s.stats.as_dict() for s in services]
            assert all(s.failure is None for s in services), [s.failure for s in services]
            time.sleep(0.2)
    finally:
        for service in services:
            service.stop()


def exact_quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def expected_cost(book: PriceBook, call: Call) -> Decimal | None:
    family = book.family(call.model)
    if family is None:
        return None
    price = book.price(family, datetime.fromtimestamp(call.start_ns / 1e9, tz=UTC).date())
    assert price is not None
    per_token = Decimal(1_000_000)
    return (
        (call.input_tokens - call.cached_tokens) * price.input
        + call.cached_tokens * price.cached_input
        + call.output_tokens * price.output
    ) / per_token


def merged_histograms(client, database: str, metric: str) -> dict[str, tuple[dict[int, int], int, int]]:
    rows = client.query(
        f"""
        SELECT model, sumMap(buckets), sum(zero_count), sum(count)
        FROM {database}.latency_histograms FINAL WHERE metric = %(metric)s GROUP BY model
        """,
        parameters={"metric": metric},
    ).result_rows
    return {model: (dict(buckets), int(zero), int(count)) for model, buckets, zero, count in rows}


def sql_examples() -> list[tuple[str, str]]:
    text = (REPO / "docs" / "sql.md").read_text()
    return re.findall(r"^### (.+?)\n+```sql\n(.+?)```", text, flags=re.M | re.S)


@pytest.fixture
def calls() -> list[Call]:
    return make_calls(3000, seed=11)


def test_ground_truth_counts_costs_refusals_quantiles_and_replay(kafka_bootstrap, topic, ch_client, ch_database, calls):
    items = list(messages(calls, per_message=20))
    produce(kafka_bootstrap, topic, items)
    first = ProcessorService(settings_for(kafka_bootstrap, topic, ch_database, f"g1_{topic}"), client=ch_client)
    run_until_consumed([first], len(items))
    stats = first.stats
    assert stats.dlq == 0
    if not (stats.commit_failures or stats.rebalance_replays):  # else (a starved machine) batches were replayed
        assert stats.spans == len(calls) + len(items) and stats.skipped_non_genai == len(items)
        assert stats.calls_written == len(calls)
        assert stats.unpriced == sum(c.model == "mystery-model" for c in calls)

    def check_calls() -> None:
        by_model = Counter(c.model for c in calls)
        rows = ch_client.query(
            f"SELECT model, count(), uniqExact(span_id), sum(cost_usd), countIf(cost_usd IS NULL), sum(is_refusal),"
            f" sum(is_timeout), sum(is_error) FROM {ch_database}.llm_calls FINAL GROUP BY model"
        ).result_rows
        assert {r[0]: (r[1], r[2]) for r in rows} == {m: (n, n) for m, n in by_model.items()}
        book = PriceBook.load()
        for model, _, _, cost, unpriced, refusals, timeouts, errors in rows:
            mine = [c for c in calls if c.model == model]
            costs = [expected_cost(book, c) for c in mine]
            if model == "mystery-model":
                assert cost is None and unpriced == len(mine)
            else:
                priced = [c for c in costs if c is not None]
                assert unpriced == 0 and len(priced) == len(costs), model
                assert Decimal(cost) == sum(priced), model  # exact, not merely within 1e-9
            assert refusals == sum(c.api_refusal or c.finish_reason == "content_filter" for c in mine)
            assert timeouts == sum("Timeout" in c.error_type for c in mine)
            assert errors == sum(bool(c.error_type) for c in mine)

    def check_quantiles() -> None:
        merged = merged_histograms(ch_client, ch_database, "latency_ms")
        ttft = merged_histograms(ch_client, ch_database, "ttft_ms")
        for model in {c.model for c in calls}:
            latencies = [c.latency_ms for c in calls if c.model == model and c.in_histograms]
            buckets, zero, count = merged[model]
            assert count == len(latencies)
            ttfts = [c.ttft_s * 1000 for c in calls if c.model == model and c.ttft_s is not None and c.in_histograms]
            for q in (0.5, 0.95, 0.99):
                exact, got = exact_quantile(latencies, q), quantile(buckets, q, zero)
                assert got is not None and abs(got - exact) <= 0.01 * exact, (model, q)
                exact_ttft, got_ttft = exact_quantile(ttfts, q), quantile(ttft[model][0], q, ttft[model][1])
                assert got_ttft is not None and abs(got_ttft - exact_ttft) <= 0.01 * exact_ttft

    check_calls()
    check_quantiles()

    # Replay everything (a new group re-reads the topic from the start): nothing counts twice.
    replay = ProcessorService(settings_for(kafka_bootstrap, topic, ch_database, f"g2_{topic}"), client=ch_client)
    run_until_consumed([replay], len(items))
    assert ch_client.command(f"SELECT count() FROM {ch_database}.llm_calls") >= len(calls)
    check_calls()
    check_quantiles()

    # The SRE examples in docs/sql.md all run, and the documented percentile query is within 1%.
    examples = sql_examples()
    assert len(examples) >= 7
    results = {}
    for title, sql in examples:
        results[title] = ch_client.query(sql.replace("cutover.", f"{ch_database}.")).result_rows
    percentiles = next(rows for title, rows in results.items() if "p50/p95/p99" in title)
    by_model = {row[0]: row for row in percentiles}
    for model in {c.model for c in calls}:
        latencies = [c.latency_ms for c in calls if c.model == model and c.in_histograms]
        assert by_model[model][1] == len(latencies)
        for q, value in zip((0.5, 0.95, 0.99), by_model[model][2:5], strict=True):
            exact = exact_quantile(latencies, q)
            assert abs(value - exact) <= 0.01 * exact, (model, q, value, exact)


def test_bad_messages_go_to_the_dlq_with_reasons_while_good_ones_flow(kafka_bootstrap, topic, ch_client, ch_database):
    calls = make_calls(400, seed=5)
    good = list(messages(calls, per_message=20))
    foreign = MetricsData()
    foreign.resource_metrics.add().resource.attributes.add(key="service.name").value.string_value = "not traces"
    bad = [
        (b"random", bytes(range(7, 250))),
        (b"truncated", good[0][1][: len(good[0][1]) // 3]),
        (b"wrong-schema", foreign.SerializeToString()),
        (b"empty", b""),
    ]
    items = [good[0], bad[0], *good[1:8], bad[1], bad[2], *good[8:], bad[3]]
    produce(kafka_bootstrap, topic, items)
    service = ProcessorService(settings_for(kafka_bootstrap, topic, ch_database, f"g_{topic}"), client=ch_client)
    run_until_consumed([service], len(items))
    stats = service.stats
    if not (stats.commit_failures or stats.rebalance_replays):
        assert stats.dlq == len(bad) and stats.calls_written == len(calls)
    assert ch_client.command(f"SELECT count() FROM {ch_database}.llm_calls FINAL") == len(calls)

    consumer = KafkaConsumer(
        f"{topic}_dlq", bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=5000
    )
    letters = {m.key: m for m in consumer}
    consumer.close()
    assert set(letters) == {key for key, _ in bad}
    for key, value in bad:
        letter = letters[key]
        headers = {name: v.decode() for name, v in letter.headers}
        assert letter.value == value  # the original bytes, to replay after a fix
        assert headers["source.topic"] == topic and int(headers["source.offset"]) >= 0
        assert headers["error"]
    assert "undecodable" in dict(letters[b"random"].headers)["error"].decode()
    assert "no spans" in dict(letters[b"wrong-schema"].headers)["error"].decode()


def test_partitions_processed_by_two_instances_merge_to_the_single_instance_numbers(
    kafka_bootstrap, topic, ch_client, ch_database, calls
):
    items = list(messages(calls, per_message=20))
    single_db = f"{ch_database}_single"
    try:
        pair = [
            ProcessorService(settings_for(kafka_bootstrap, topic, ch_database, f"pair_{topic}"), client=ch_client)
            for _ in range(2)
        ]
        run_until_consumed(pair, len(items), after_assignment=lambda: produce(kafka_bootstrap, topic, items))
        assert sorted(p for s in pair for p in s.partitions) == [0, 1, 2, 3]
        assert all(s.stats.messages > 0 for s in pair), [s.stats.as_dict() for s in pair]  # both did a share
        single = ProcessorService(settings_for(kafka_bootstrap, topic, single_db, f"single_{topic}"), client=ch_client)
        run_until_consumed([single], len(items))

        def summary(database: str):
            calls_by_model = ch_client.query(
                f"SELECT model, count(), sum(cost_usd), sum(is_refusal) FROM {database}.llm_calls FINAL"
                " GROUP BY model ORDER BY model"
            ).result_rows
            histograms: dict[str, dict[str, tuple[object, ...]]] = defaultdict(dict)
            for metric in ("latency_ms", "ttft_ms", "output_tps"):
                for model, (buckets, zero, count) in merged_histograms(ch_client, database, metric).items():
                    histograms[metric][model] = (sorted(buckets.items()), zero, count)
            return calls_by_model, dict(histograms)

        assert summary(ch_database) == summary(single_db)
        assert sum(row[1] for row in summary(ch_database)[0]) == len(calls)
    finally:
        ch_client.command(f"DROP DATABASE IF EXISTS {single_db}")


def test_clickhouse_failure_is_retried_with_backoff_and_nothing_is_lost(kafka_bootstrap, topic, ch_client, ch_database):
    calls = make_calls(600, seed=9)
    items = list(messages(calls, per_message=20))
    settings = settings_for(kafka_bootstrap, topic, ch_database, f"g_{topic}", retry_max_backoff_s=0.5)
    service = ProcessorService(settings, client=ch_client)
    service.start()
    try:
        # Inserts fail for real while the table is away, as they would while ClickHouse is down.
        ch_client.command(f"RENAME TABLE {ch_database}.llm_calls TO {ch_database}.llm_calls_away")
        produce(kafka_bootstrap, topic, items)
        deadline = time.monotonic() + 60
        while service.stats.retries < 4:
            assert time.monotonic() < deadline and service.failure is None, service.stats.as_dict()
            time.sleep(0.1)
        assert service.stats.calls_written == 0 and service.stats.messages == 0  # nothing committed meanwhile
        ch_client.command(f"RENAME TABLE {ch_database}.llm_calls_away TO {ch_database}.llm_calls")
        while service.stats.messages < len(items):
            assert time.monotonic() < deadline and service.failure is None, service.stats.as_dict()
            time.sleep(0.1)
    finally:
        service.stop()
    assert ch_client.command(f"SELECT count() FROM {ch_database}.llm_calls FINAL") == len(calls)


def test_an_instance_joining_mid_stream_loses_nothing_and_counts_nothing_twice(
    kafka_bootstrap, topic, ch_client, ch_database
):
    calls = make_calls(6000, seed=13)
    items = list(messages(calls, per_message=20))
    small = dict(batch_max_calls=200, poll_max_records=5)  # many commits, so the rebalance lands mid-stream
    first = ProcessorService(settings_for(kafka_bootstrap, topic, ch_database, f"g_{topic}", **small), client=ch_client)
    second = ProcessorService(
        settings_for(kafka_bootstrap, topic, ch_database, f"g_{topic}", **small), client=ch_client
    )
    first.start()
    try:
        produce(kafka_bootstrap, topic, items[: len(items) // 2])
        deadline = time.monotonic() + 120
        while first.stats.messages < 40:
            assert time.monotonic() < deadline and first.failure is None, first.stats.as_dict()
            time.sleep(0.05)
        second.start()
        while not second.partitions:
            assert time.monotonic() < deadline, "the second instance never got a partition"
            time.sleep(0.05)
        produce(kafka_bootstrap, topic, items[len(items) // 2 :])
        count = f"SELECT count() FROM {ch_database}.llm_calls FINAL"
        while ch_client.command(count) < len(calls) or first.stats.lag or second.stats.lag:
            assert time.monotonic() < deadline, (first.stats.as_dict(), second.stats.as_dict())
            assert first.failure is None and second.failure is None
            time.sleep(0.2)
        # Read while both run: once the second stops, the first takes every partition back.
        first_owned = list(first.partitions)
    finally:
        second.stop()
        first.stop()
    assert second.stats.messages > 0 and first_owned != [0, 1, 2, 3]
    assert (
        ch_client.command(count)
        == ch_client.command(f"SELECT uniqExact(span_id) FROM {ch_database}.llm_calls")
        == len(calls)
    )
    histogram_calls = ch_client.command(
        f"SELECT sum(count) FROM {ch_database}.latency_histograms FINAL WHERE metric = 'latency_ms'"
    )
    assert histogram_calls == sum(c.in_histograms for c in calls)


def test_a_failing_dlq_holds_the_commit_until_the_dead_letter_is_stored(kafka_bootstrap, topic, ch_client, ch_database):
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic

    dlq_topic = f"{topic}_dlq"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    # The broker rejects any dead letter bigger than 200 bytes: the DLQ is "down" for ours.
    admin.create_topics([NewTopic(dlq_topic, 1, 1, topic_configs={"max.message.bytes": "200"})])
    calls = make_calls(100, seed=4)
    good = list(messages(calls, per_message=20))
    poison = (b"poison", bytes(range(256)) * 4)
    produce(kafka_bootstrap, topic, [good[0], poison, *good[1:]])
    settings = settings_for(kafka_bootstrap, topic, ch_database, f"g_{topic}", retry_max_backoff_s=0.5)
    service = ProcessorService(settings, client=ch_client)
    service.start()
    try:
        deadline = time.monotonic() + 60
        while service.stats.retries < 3:
            assert time.monotonic() < deadline and service.failure is None, service.stats.as_dict()
            time.sleep(0.1)
        assert service.stats.messages == 0  # nothing committed past the letter that is not stored
        admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, dlq_topic, configs={"max.message.bytes": "1048576"})]
        )
        while service.stats.messages < len(good) + 1:
            assert time.monotonic() < deadline and service.failure is None, service.stats.as_dict()
            time.sleep(0.1)
    finally:
        service.stop()
        admin.close()
    assert service.stats.dlq == 1
    assert ch_client.command(f"SELECT count() FROM {ch_database}.llm_calls FINAL") == len(calls)
    consumer = KafkaConsumer(
        dlq_topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=5000
    )
    letters = [m for m in consumer]
    consumer.close()
    assert [(m.key, m.value) for m in letters] == [poison]


def test_a_histogram_interval_defers_recompute_commit_and_counts_but_not_the_rows(
    kafka_bootstrap, topic, ch_client, ch_database, calls
):
    from kafka.structs import TopicPartition

    items = list(messages(calls, per_message=20))
    produce(kafka_bootstrap, topic, items)
    group = f"g_{topic}"
    settings = settings_for(kafka_bootstrap, topic, ch_database, group, histogram_interval_s=300)
    service = ProcessorService(settings, client=ch_client)
    histogram_calls = f"SELECT sum(count) FROM {ch_database}.latency_histograms FINAL WHERE metric = 'latency_ms'"
    partitions = [TopicPartition(topic, p) for p in range(4)]
    observer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False)
    service.start()
    try:
        deadline = time.monotonic() + 120
        while ch_client.command(f"SELECT count() FROM {ch_database}.llm_calls FINAL") < len(calls):
            assert time.monotonic() < deadline and service.failure is None, service.stats.as_dict()
            time.sleep(0.2)
        # The calls are in ClickHouse; their histograms, offsets and counters wait for the interval.
        assert ch_client.command(histogram_calls) == 0
        assert service.stats.messages == 0 and service.stats.calls_written == 0
        assert [observer.committed(tp) for tp in partitions] == [None] * 4
    finally:
        service.stop()  # settles what was written: recompute, then commit
    assert ch_client.command(histogram_calls) == sum(c.in_histograms for c in calls)
    assert sum(observer.committed(tp) or 0 for tp in partitions) == len(items)
    observer.close()
    if not (service.stats.commit_failures or service.stats.rebalance_replays):
        assert service.stats.messages == len(items) and service.stats.calls_written == len(calls)


def test_an_instant_span_and_a_span_without_tokens_neither_stall_nor_bill_zero(
    kafka_bootstrap, topic, ch_client, ch_database
):
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from processors.enrich import NO_TOKENS

    first, later = make_calls(40, seed=21), make_calls(200, seed=22)
    instant, tokenless = first[0], first[1]
    instant.latency_ns, instant.ttft_s, instant.error_type = 0, 0.0, ""
    request = ExportTraceServiceRequest.FromString(next(messages(first, per_message=len(first)))[1])
    span = request.resource_spans[0].scope_spans[0].spans[1]
    kept = [kv for kv in span.attributes if not kv.key.startswith("gen_ai.usage.")]
    del span.attributes[:]
    span.attributes.extend(kept)
    # The odd calls go first and the rest after, into one partition (one key), so a stall would hold them back.
    items = [(b"k", request.SerializeToString()), *((b"k", value) for _, value in messages(later, per_message=20))]
    produce(kafka_bootstrap, topic, items)
    service = ProcessorService(settings_for(kafka_bootstrap, topic, ch_database, f"g_{topic}"), client=ch_client)
    run_until_consumed([service], len(items))
    assert service.stats.dlq == 0
    assert ch_client.command(f"SELECT count() FROM {ch_database}.llm_calls FINAL") == len(first) + len(later)
    row = ch_client.query(
        f"SELECT latency_ms, ttft_ms, output_tokens_per_s FROM {ch_database}.llm_calls FINAL WHERE span_id = %(s)s",
        parameters={"s": instant.span_id.hex()},
    ).result_rows
    assert row == [(0.0, 0.0, None)]
    row = ch_client.query(
        f"SELECT tokens_reported, cost_usd, price_version, input_tokens FROM {ch_database}.llm_calls FINAL"
        " WHERE span_id = %(s)s",
        parameters={"s": tokenless.span_id.hex()},
    ).result_rows
    assert row == [(0, None, NO_TOKENS, 0)]
    if not (service.stats.commit_failures or service.stats.rebalance_replays):
        unpriced = sum(c.model == "mystery-model" for c in first + later) + (tokenless.model != "mystery-model")
        assert service.stats.unpriced == unpriced
    # The instant call is in its minute's histograms (as a zero), next to every other call of the run.
    zero, count = ch_client.query(
        f"SELECT sum(zero_count), sum(count) FROM {ch_database}.latency_histograms FINAL WHERE metric = 'latency_ms'"
    ).result_rows[0]
    assert zero >= 1 and count == sum(c.in_histograms for c in first + later)
