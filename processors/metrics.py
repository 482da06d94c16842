"""The processor's Prometheus metrics (prometheus-client, default registry), served on `/metrics`.

Counters move when the loop counts a settled batch (the same figures as `ProcessorStats`), so
a scrape and the progress line agree. Per process: instances sharing a process add up.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import Counter, Gauge, Histogram

from processors.group_watch import GroupView

_COUNTED = {
    "messages": "Kafka messages consumed and committed",
    "spans": "spans decoded from committed messages",
    "calls_written": "LLM calls written to ClickHouse and committed",
    "skipped_non_genai": "spans skipped because they are not GenAI calls",
    "dlq": "messages sent to the dead-letter topic",
    "unpriced": "calls written without a price (model not in the price book)",
    "batches": "batches written and committed",
    "retries": "failed attempts retried with backoff (ClickHouse, DLQ, Kafka)",
    "rebalance_replays": "batches dropped uncommitted by a rebalance, to be re-read",
    "commit_failures": "offset commits that failed (the batch is replayed idempotently)",
    "rejoins": "group rejoins after owning no partitions while partitions lagged unconsumed",
}
COUNTERS = {name: Counter(f"cutover_processor_{name}", help) for name, help in _COUNTED.items()}
HISTOGRAM_RECOMPUTE_SECONDS = Histogram(
    "cutover_processor_histogram_recompute_seconds",
    "Seconds of one background histogram recompute (the slots and minutes of the batches written since the last)",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
BATCH_WRITE_SECONDS = Histogram(
    "cutover_processor_batch_write_seconds",
    "Seconds to write one batch to ClickHouse and confirm its dead letters, retries included",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
CONSUMER_LAG = Gauge(
    "cutover_processor_consumer_lag",
    "Messages of the spans topic not yet committed by the group (log end - committed), per partition",
    ["partition"],
)
OWNED_PARTITIONS = Gauge("cutover_processor_owned_partitions", "Partitions of the spans topic this process owns")
HALLUCINATION_QUEUE = Gauge("cutover_processor_hallucination_queue_depth", "Calls waiting for the hallucination checks")
HALLUCINATION_SAMPLE_RATE = Gauge(
    "cutover_processor_hallucination_sample_rate",
    "Share of the last batch's checkable calls queued for hallucination checks (1 = every call)",
)


def count(values: Mapping[str, int]) -> None:
    for name, value in values.items():
        counter = COUNTERS.get(name)
        if counter is not None and value:
            counter.inc(value)


def observe_group(view: GroupView, owned: Iterable[int]) -> None:
    for partition, lag in view.lag.items():
        CONSUMER_LAG.labels(partition=str(partition)).set(lag)
    OWNED_PARTITIONS.set(len(list(owned)))
