"""Freshness: how long after a call ends its row can be queried, at a sustained rate.

    .venv/bin/python bench/freshness.py [--rate 5000] [--seconds 120] [--settle 15] [--emitters 4]

Starts its own Kafka broker and a private chDB path, runs the processor (default settings,
`CUTOVER_*` from the environment apply) in this process, and in a child process emits GenAI
spans at `--rate` calls/s through the real client path: `collectors.instrument` (our span
processor, the SDK's batch processor, `KafkaSpanExporter`) -> Kafka, split over `--emitters`
processes as a service at 5,000 calls/s would be (one Python process's exporter thread tops
out below that on a busy machine and its SDK queue drops the rest). The emitters stand in for
applications on other hosts, so they run at `--emitter-nice` (10): on a shared machine at the
processor's own priority they took the cores it is measured on (their SDK queues drop what
they cannot export; the bench prints how many). The OpenAI call itself
is left out (each span is made with the instrumentation's tracer): at 5,000 calls/s the
SDK + simulator would need the cores the pipeline is measured on. Calls come in traces of
`CALLS_PER_TRACE` under an "agent run" root span (which the processor skips).

A poller queries `llm_calls` every `--poll-s` seconds on its own connection, as a dashboard would, and records for
each new row (poll time - span end time): the freshness an SRE sees, over-estimated by at
most one poll interval. Prints p50/p90/p99/max, the rate achieved, and rows never seen.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kafka.consumer.fetcher import ConsumerRecord  # noqa: E402
from scratch import processor_settings, scratch_broker  # noqa: E402

from collectors.settings import CollectorSettings  # noqa: E402
from cutover import semconv  # noqa: E402
from cutover.store import open_client  # noqa: E402
from processors.decode_pool import Outcome as DecodeOutcome  # noqa: E402
from processors.service import ProcessorService  # noqa: E402

MODELS = ("gpt-5.4", "gpt-5.5")
# Calls per trace (an agent run): the exporter writes one Kafka message per trace and batch, so
# one call per trace would cost the emitter a producer.send per call.
CALLS_PER_TRACE = 10
TASKS = ("coding", "knowledge", "rag", "simple")


def emit(rate: float, seconds: float, seed: int) -> None:
    """Child process: `rate` calls/s of GenAI spans for `seconds` through collectors.instrument."""
    from opentelemetry import trace

    from collectors.instrument import instrument

    instrumentation = instrument(service_name="freshness-bench")
    tracer = instrumentation.tracer_provider.get_tracer("bench.freshness")
    rng = random.Random(seed)
    root: trace.Span | None = None
    context = None
    started = time.monotonic()
    sent = 0
    while (elapsed := time.monotonic() - started) < seconds:
        due = int(elapsed * rate)
        while sent < due:
            now = time.time_ns()
            latency_ns = int(rng.lognormvariate(6.5, 0.6) * 1e6)  # ~700 ms median
            if sent % CALLS_PER_TRACE == 0:
                if root is not None:
                    root.end()
                root = tracer.start_span("agent run")
                context = trace.set_span_in_context(root)
            span = tracer.start_span(f"chat {MODELS[sent % 2]}", context=context, start_time=now - latency_ns)
            span.set_attributes(
                {
                    semconv.OPERATION: "chat",
                    semconv.PROVIDER: "openai",
                    semconv.REQUEST_MODEL: MODELS[sent % 2],
                    semconv.RESPONSE_MODEL: MODELS[sent % 2],
                    semconv.INPUT_TOKENS: rng.randint(50, 3000),
                    semconv.OUTPUT_TOKENS: rng.randint(10, 800),
                    semconv.FINISH_REASONS: ("stop",),
                    semconv.TASK: TASKS[sent % 4],
                }
            )
            span.end(end_time=now)
            sent += 1
        time.sleep(0.005)
    if root is not None:
        root.end()
    instrumentation.force_flush()
    batch_dropped = instrumentation.batch_processor.dropped
    print(f"sent {sent} dropped {instrumentation.dropped} (batch queue full: {batch_dropped})", flush=True)
    instrumentation.shutdown()


def percentile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=5000)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--settle", type=float, default=15, help="seconds to wait for the last rows")
    parser.add_argument("--poll-s", type=float, default=0.1)
    parser.add_argument("--emitters", type=int, default=4, help="emitter processes sharing --rate")
    parser.add_argument(
        "--emitter-nice", type=int, default=10, help="niceness of the emitters (0: the processor's own priority)"
    )
    parser.add_argument("--emit", type=int, metavar="SEED", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.emit is not None:
        os.nice(args.emitter_nice)
        emit(args.rate, args.seconds, args.emit)
        return

    with scratch_broker("cutover-fresh-") as (broker, scratch):
        settings = processor_settings(broker, "fresh")
        topic = settings.spans_topic
        client = open_client(f"chdb://{scratch / 'chdb'}")
        service = ProcessorService(settings, client=client)
        # When each trace's message reached Kafka (key = hex trace id, producer CreateTime): splits
        # a row's age into the application's share (SDK queue, export) and the processor's.
        appended: dict[str, float] = {}
        decode_step = service.decode

        def decode(record: ConsumerRecord, outcome: DecodeOutcome) -> None:
            appended[record.key.decode()] = record.timestamp / 1e3
            decode_step(record, outcome)

        service.decode = decode  # type: ignore[method-assign]
        service.start()
        while not service.partitions:
            time.sleep(0.05)
        # The poller reads through a connection of its own, as a dashboard would: one chDB handle
        # runs one call at a time, so sharing the processor's would queue every poll behind an insert.
        reader = open_client(f"chdb://{scratch / 'chdb'}")
        seen: set[str] = set()
        lags: list[int] = []  # the group's lag (messages not yet committed), sampled by the poller
        ages: list[float] = []
        to_insert: list[float] = []  # span end -> the insert carrying its row began (ingested_at)
        from_kafka: list[float] = []  # the message's Kafka timestamp -> poll time
        stop = threading.Event()

        def poll() -> None:
            watermark = "1970-01-01 00:00:00.000"
            while not stop.wait(args.poll_s):
                lags.append(service.stats.lag)
                rows = reader.query(
                    "SELECT span_id, toUnixTimestamp64Micro(end_time), "
                    "toString(ingested_at), toUnixTimestamp64Milli(ingested_at), trace_id "
                    "FROM fresh.llm_calls WHERE ingested_at >= %(w)s",
                    parameters={"w": watermark},
                ).result_rows
                now = time.time()
                for span_id, end_us, ingested, ingested_ms, trace_id in rows:
                    if span_id not in seen:
                        seen.add(span_id)
                        if trace_id in appended:
                            from_kafka.append(now - appended[trace_id])
                        ages.append(now - end_us / 1e6)
                        to_insert.append(ingested_ms / 1e3 - end_us / 1e6)
                    watermark = max(watermark, ingested)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        cpu_began = resource.getrusage(resource.RUSAGE_SELF)
        env = {**os.environ, "CUTOVER_KAFKA_BOOTSTRAP": broker.bootstrap, "CUTOVER_SPANS_TOPIC": topic}
        started = time.monotonic()
        emitters = [
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    f"--emit={seed}",
                    f"--rate={args.rate / args.emitters}",
                    f"--seconds={args.seconds}",
                    f"--emitter-nice={args.emitter_nice}",
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for seed in range(args.emitters)
        ]
        outputs = [emitter.communicate() for emitter in emitters]
        emitted_s = time.monotonic() - started
        for emitter, (_, err) in zip(emitters, outputs, strict=True):
            if emitter.returncode:
                raise SystemExit(f"an emitter failed:\n{err}")
        reports = [out.split() for out, _ in outputs]  # "sent N dropped D (batch queue full: Q)"
        sent = sum(int(words[1]) for words in reports)
        dropped = sum(int(words[3]) for words in reports)
        queue_full = sum(int(words[7].rstrip(")")) for words in reports)
        for _, err in outputs:
            if err.strip():
                print("emitter log (last lines):", *err.strip().splitlines()[-3:], sep="\n  ")
        deadline = time.monotonic() + args.settle
        while len(seen) < sent and time.monotonic() < deadline:
            time.sleep(0.2)
        stop.set()
        poller.join()
        service.stop()
        cpu_ended = resource.getrusage(resource.RUSAGE_SELF)

    ages.sort()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"{args.emitters} emitters sent {sent:,} spans, dropped {dropped:,} (SDK queue full: {queue_full:,}); "
        f"emitted for {emitted_s:.1f} s = {sent / emitted_s:,.0f} calls/s; load average {load}"
    )
    print(f"rows queryable: {len(ages):,} of {sent:,} ({sent - len(ages):,} not seen within {args.settle:.0f} s)")
    if ages:
        print(
            f"freshness (poll time - span end), s: p50 {percentile(ages, 0.5):.2f}  p90 {percentile(ages, 0.9):.2f}  "
            f"p99 {percentile(ages, 0.99):.2f}  max {ages[-1]:.2f}   (polled every {args.poll_s} s)"
        )
        from_kafka.sort()
        if from_kafka:
            print(
                f"  of which Kafka append -> queryable (the processor's share): p50 {percentile(from_kafka, 0.5):.2f}  "
                f"p90 {percentile(from_kafka, 0.9):.2f}  p99 {percentile(from_kafka, 0.99):.2f}"
            )
        print(f"  the group's lag (uncommitted messages, every 5 s): max {max(lags, default=0):,}")
        to_insert.sort()
        print(
            f"  of which span end -> insert began (ingested_at): p50 {percentile(to_insert, 0.5):.2f}  "
            f"p99 {percentile(to_insert, 0.99):.2f}; the rest is the insert and the poll"
        )
    cpu_s = sum(getattr(cpu_ended, f) - getattr(cpu_began, f) for f in ("ru_utime", "ru_stime"))
    print(
        f"CPU of this process (processor, chDB, poller): {cpu_s:.1f} s = {cpu_s / max(len(ages), 1) * 1e6:.0f} us per row seen"
    )
    exporter = CollectorSettings()
    print(
        f"emitters at nice {args.emitter_nice}; processor settings: batch_max_wait_s={settings.batch_max_wait_s} histogram_interval_s={settings.histogram_interval_s} decode_workers={settings.decode_workers}; "
        f"exporter: schedule_delay_s={exporter.exporter_schedule_delay_s} queue_size={exporter.exporter_queue_size}"
    )


if __name__ == "__main__":
    main()
