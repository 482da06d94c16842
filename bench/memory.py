"""Processor memory over a long stream: RSS sampled every second while it consumes `--spans` calls.

    .venv/bin/python bench/memory.py [--spans 10000000] [--content 0.1] [--per-message 100]

Starts its own Kafka broker and a private chDB path, runs the processor with default settings
(`CUTOVER_*` from the environment apply) in this process, and feeds the topic from a child
process: calls start within the last minute (a live stream: histograms touch the current
minutes), a `--content` fraction of them with content captured (prompt, ~1 KB answer,
reference answer: each goes through the hallucination worker's bounded queue).

Prints the RSS curve, anonymous and file-backed apart (this process and any decode workers:
the processor's whole footprint; the Kafka broker's JVM, a child of this process too, is
shown apart and not counted)
at warm-up (first 10% of the stream), middle and end, its max after warm-up, and the largest
hallucination backlog seen, next to the queue's bound. Target: flat under 300 MB.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pyarrow as pa  # noqa: E402
from clickhouse_connect.driver.client import Client  # noqa: E402
from kafka import KafkaProducer  # noqa: E402
from scratch import processor_settings, scratch_broker  # noqa: E402

from cutover import semconv  # noqa: E402
from cutover.store import open_client  # noqa: E402
from processors.hallucination import HallucinationWorker  # noqa: E402
from processors.service import ProcessorService  # noqa: E402
from tests.processor_workload import _kv, make_calls, request_bytes  # noqa: E402

CHUNK = 20_000  # calls the feeder generates at a time
WORDS = [
    "the",
    "capital",
    "of",
    "france",
    "is",
    "paris",
    "which",
    "lies",
    "on",
    "the",
    "seine",
    "and",
    "has",
    "about",
    "two",
    "million",
    "people",
]


def feed(bootstrap: str, topic: str, spans: int, content: float, per_message: int) -> None:
    """Child process: `spans` calls in messages of `per_message`, `content` of them with captured text."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_request_size=16_777_216)
    every = max(1, round(1 / content)) if content > 0 else 0
    for chunk_at in range(0, spans, CHUNK):
        calls = make_calls(min(CHUNK, spans - chunk_at), seed=chunk_at, spread_s=60)
        for i, call in enumerate(calls):
            call.start_ns = time.time_ns() - 60_000_000_000 + (i * 60_000_000_000) // CHUNK
            call.output_text = ""
            call.api_refusal = False
            call.finish_reason = "stop"
            if every and (chunk_at + i) % every == 0 and not call.error_type:
                n = chunk_at + i
                call.output_text = " ".join(WORDS[(n + k) % len(WORDS)] for k in range(180)) + f" ({n})"
        for at in range(0, len(calls), per_message):
            request = ExportTraceServiceRequest.FromString(request_bytes(calls[at : at + per_message]))
            for span in request.resource_spans[0].scope_spans[0].spans:
                if any(kv.key == semconv.OUTPUT_MESSAGES for kv in span.attributes):
                    span.attributes.append(_kv(semconv.REFERENCE_ANSWER, "Paris is the capital of France."))
            producer.send(topic, request.SerializeToString())
    producer.flush()
    producer.close()


def rss_mb(pids: list[int]) -> tuple[float, float]:
    """(anonymous, file-backed) resident MB of these processes. File-backed pages are mostly
    chDB's mapped engine code (~300 MB at start): shared, clean, reclaimable, not grown by the stream."""
    anon = file = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as status:
                for line in status:
                    if line.startswith("RssAnon:"):
                        anon += int(line.split()[1])
                    elif line.startswith(("RssFile:", "RssShmem:")):
                        file += int(line.split()[1])
        except OSError:
            pass
    return anon / 1024, file / 1024


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def glibc_heap_mb() -> tuple[float, float, float]:
    """(from the OS, in use, free but kept) MB of glibc malloc over all its arenas: Python's large
    objects, kafka-python's buffers and chDB's C++ allocations all come from it."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    info = libc.mallinfo2()
    mb = 2**20
    return (info.arena + info.hblkhd) / mb, (info.uordblks + info.hblkhd) / mb, info.fordblks / mb


def jemalloc_summary(client: Client) -> str:
    """chDB's own allocator (jemalloc, in-process): its one-line totals (allocated, active, resident...).

    MemoryTracking counts what chDB holds; freed pages jemalloc keeps (dirty, retained) are not in it."""
    stats = str(client.query("SELECT stats FROM system.jemalloc_stats").result_rows[0][0])
    return next((line.strip() for line in stats.splitlines() if line.startswith("Allocated:")), "no totals line")


def children(others: set[int]) -> list[int]:
    """This process's child processes but `others` (the feeder, the Kafka broker): decode workers, their forkserver."""
    try:
        with open(f"/proc/{os.getpid()}/task/{os.getpid()}/children") as listing:
            return [int(pid) for pid in listing.read().split() if int(pid) not in others]
    except OSError:
        return []


def jemalloc_mb(client: Client) -> tuple[float, float]:
    """(allocated, resident) MB of chDB's jemalloc."""
    line = jemalloc_summary(client)
    numbers = dict(part.strip().split(": ")[:2] for part in line.split(",") if ": " in part)
    return int(numbers["Allocated"].split()[0]) / 2**20, int(numbers["resident"].split()[0]) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=10_000_000)
    parser.add_argument("--content", type=float, default=0.1)
    parser.add_argument("--per-message", type=int, default=100)
    parser.add_argument("--feed", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.feed:
        feed(args.feed[0], args.feed[1], args.spans, args.content, args.per_message)
        return

    with scratch_broker("cutover-memory-") as (broker, scratch):
        settings = processor_settings(broker, "memory")
        feeder = subprocess.Popen(
            [sys.executable, __file__, f"--spans={args.spans}", f"--content={args.content}",
             f"--per-message={args.per_message}", "--feed", broker.bootstrap, settings.spans_topic],
        )  # fmt: skip
        client = open_client(f"chdb://{scratch / 'chdb'}")
        service = ProcessorService(settings, client=client)
        started = time.monotonic()
        service.start()
        curve: list[tuple[float, int, float, float, int]] = []  # (s, calls, anon MB, file MB, backlog)
        content = service._parts.content if service._parts is not None else None
        hallucination = content if isinstance(content, HallucinationWorker) else None
        others = {feeder.pid, broker.pid() or -1}
        parts: list[str] = []  # where the memory is, at each twentieth of the stream
        while service.stats.calls_written < args.spans:
            assert service.failure is None, service.failure
            pids = [os.getpid(), *children(others)]
            backlog = hallucination.backlog if hallucination is not None else 0
            anon, file = rss_mb(pids)
            calls = service.stats.calls_written
            curve.append((time.monotonic() - started, calls, anon, file, backlog))
            if calls >= len(parts) * args.spans / 20:
                allocated, resident = jemalloc_mb(client)
                heap = glibc_heap_mb()
                parts.append(
                    f"{calls:>11,} {anon:5.0f} {file:5.0f} {resident:6.0f} {allocated:6.0f} {heap[0]:6.0f} {heap[1]:6.0f} "
                    f"{pa.default_memory_pool().bytes_allocated() / 2**20:5.0f} {sys.getallocatedblocks() / 1e6:6.2f} "
                    f"{backlog:7,} {rss_mb([broker.pid() or -1])[0]:6.0f} {time.monotonic() - started:6.0f}"
                )
                print(f"{parts[-1]}  (so far)", file=sys.stderr, flush=True)  # a long run shows its curve as it goes
            time.sleep(1.0)
        elapsed = time.monotonic() - started
        heap = glibc_heap_mb()
        jemalloc = jemalloc_summary(client)
        tracked = client.command("SELECT value FROM system.metrics WHERE metric = 'MemoryTracking'")
        caches = client.query(
            "SELECT metric, value FROM system.metrics WHERE metric LIKE '%CacheBytes' AND value > 0 ORDER BY value DESC"
        ).result_rows
        parts_held = client.query(
            "SELECT countIf(active), countIf(NOT active) FROM system.parts WHERE database = 'memory'"
        ).result_rows[0]
        stats = service.stats.as_dict()
        checked = hallucination.stats.as_dict() if hallucination is not None else {}
        service.stop()
        feeder.wait()

    warm = [c for c in curve if c[1] <= args.spans * 0.1] or curve[:1]
    after = [c for c in curve if c[1] > args.spans * 0.1] or curve
    mid = min(curve, key=lambda c: abs(c[1] - args.spans / 2))
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"{args.spans:,} calls ({args.content:.0%} with content) in {elapsed:.0f} s = {args.spans / elapsed:,.0f} calls/s; "
        f"{len(curve)} RSS samples; load average {load}"
    )
    for name, at in (("anonymous (heap)", 2), ("file-backed", 3)):
        print(
            f"RSS {name} MB: warm-up (first 10% of calls) max {max(c[at] for c in warm):.0f}; "
            f"mid {mid[at]:.0f} at {mid[1]:,} calls; end {curve[-1][at]:.0f}; "
            f"after warm-up min {min(c[at] for c in after):.0f} max {max(c[at] for c in after):.0f}"
        )
    print(
        f"at the end: chDB MemoryTracking {int(str(tracked)) / 2**20:.0f} MB; Python heap blocks {sys.getallocatedblocks():,}; "
        f"Arrow pool {pa.default_memory_pool().bytes_allocated() / 2**20:.0f} MB "
        f"(peak {pa.default_memory_pool().max_memory() / 2**20:.0f} MB)"
    )
    print(
        "      calls  anon  file  chDB jemalloc     glibc malloc  Arrow Python  halluc. | broker   time\n"
        "             (MB, the processor)  resident alloc. from OS in use  pool blocks(M) backlog | anon MB    (s)"
    )
    print("\n".join(parts))
    print(f"at the end: chDB jemalloc {jemalloc}")
    print(
        "at the end: chDB caches "
        + (", ".join(f"{name.removesuffix('Bytes')} {int(value) / 2**20:.1f} MB" for name, value in caches) or "empty")
        + f"; parts {parts_held[0]} active, {parts_held[1]} outdated (kept until removed)"
    )
    print(
        f"at the end: glibc malloc {heap[0]:.0f} MB from the OS, {heap[1]:.0f} MB in use, {heap[2]:.0f} MB free but kept"
    )
    print(
        f"hallucination backlog: max {max(c[4] for c in curve):,} (bound {settings.hallucination_queue_size:,}); "
        f"worker {checked}"
    )
    print(f"processor: {stats}")


if __name__ == "__main__":
    main()
