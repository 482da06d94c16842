"""Processor throughput: the full path as a ratio of the decoder alone, on one core and on two.

    .venv/bin/python bench/processor.py [--spans 200000] [--per-message 512]

Starts its own Kafka broker and a private chDB path, fills a topic with OTLP
`ExportTraceServiceRequest`s of `--per-message` GenAI spans (the SDK's default export batch
is 512) in the order an exporter sends them: a backlog of a `--rate` calls/s stream, spans
in end-time order (each message then spans a few seconds of start times, as a
BatchSpanProcessor's export does); then measures in one run, pinned to one CPU unless said otherwise:
  1. bare upb parse of every message (`ExportTraceServiceRequest.FromString`),
  2. our decode to call rows (`processors.decode.decode`): the "decoder-only" rate, the best of
     a pass before the full runs and one after each (on one core): the reference drifts with the
     machine as much as the full path does (74.5k to 103k spans/s between runs here), and a
     ratio against one unlucky pass would flatter the full path,
  3. decode + enrichment (cost, refusal), and separately the writer: the Arrow inserts (and the
     merges they set off), then one histogram rebuild of every slot they touched; with the Kafka
     fetch of a bare consumer, these stages' CPU seconds add up to a floor under the full path's
     CPU (each stage done once, in large batches), printed as the one-core ratio it caps the
     full path at, without and with the histograms,
  4. the full service (consume from Kafka, decode, enrich, insert into chDB, recompute
     histograms, commit offsets) three times, each by a fresh group into a fresh database:
     on one core; on two cores; on two cores with one and with two decode worker processes
     (`CUTOVER_DECODE_WORKERS=1`, `2`),
and prints spans/s of each and the full path's ratio to the decoder-only rate (target >= 0.5
on one core): from start to every offset committed, and steady, from the group join (start-up
is a one-off in a real process) to every row queryable (the last histogram recompute and
commit, up to `CUTOVER_HISTOGRAM_INTERVAL_S` later, are a one-off at the end of a backlog);
and the same ratio in CPU seconds (the processor's threads plus its decode workers against the
decoder's): wall time on a shared machine also counts waiting for a core, CPU time does not
(it leaves out what only wall time shows: waiting on the broker). Under each run, its CPU
seconds by thread (/proc): the consuming thread (decode, enrichment, Arrow, the insert call),
kafka-python's network thread, the histogram and hallucination threads, chDB's own threads
(insert pipelines, merges, recomputes), decode workers; how many histogram recomputes ran and
their wall seconds (their queries run on chDB's threads); and the ceiling that chDB's threads
alone put on the one-core ratio, decoder CPU / (decoder CPU + chDB threads' CPU): the full
path decodes as much as the decoder alone, and on one core chDB's threads run on it too.

    .venv/bin/python bench/processor.py --baseline REV

also runs each full-path configuration with the processor code of git revision REV (a `git
archive` in a temporary folder, run by bench/serve_once.py in its own process, same cores,
same topic, its own chDB path), interleaved with ours, and prints both side by side.

    .venv/bin/python bench/processor.py --baseline-decoder REV

also times the decoder of git revision REV (loaded from `git show REV:processors/decode.py`
into a temporary module, never kept in the tree) against ours on the same messages,
interleaved over `--rounds` rounds, best of each, and prints both side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from clickhouse_connect.driver.client import Client  # noqa: E402
from kafka import KafkaConsumer  # noqa: E402
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402
from scratch import scratch_broker  # noqa: E402
from serve_once import CHDB, Run, run_service  # noqa: E402

from cutover.store import open_client  # noqa: E402
from processors.decode import decode  # noqa: E402
from processors.enrich import Enricher  # noqa: E402
from processors.pricing import PriceBook  # noqa: E402
from processors.refusal import refusal  # noqa: E402
from processors.schema import migrate  # noqa: E402
from processors.writer import CallWriter, touched_groups  # noqa: E402
from tests.processor_workload import make_calls, messages, produce  # noqa: E402


def read_topic(bootstrap: str, topic: str, count: int) -> list[bytes]:
    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=10_000
    )
    values = [record.value for _, record in zip(range(count), consumer, strict=False)]
    consumer.close()
    return values


def settle_merges(client: Client, database: str, quiet_s: float = 2.0) -> None:
    """Wait until no merge of `database` has run for `quiet_s` seconds."""
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < quiet_s:
        time.sleep(0.1)
        if client.command(f"SELECT count() FROM system.merges WHERE database = '{database}'"):
            quiet_since = time.monotonic()


def rate(spans: int, seconds: float) -> str:
    return f"{spans / seconds:>12,.0f} spans/s  ({seconds:6.2f} s)"


def decoder_at(revision: str) -> Callable[[bytes], object]:
    """`decode` of processors/decode.py as of a git revision, as a throwaway module."""
    source = subprocess.run(
        ["git", "show", f"{revision}:processors/decode.py"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    module = types.ModuleType(f"decode_{revision}")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, f"{revision}:processors/decode.py", "exec"), module.__dict__)
    return module.decode


def decode_pass(values: list[bytes]) -> tuple[float, float, int]:
    """Wall and CPU seconds of decoding every message to call rows (each message's rows dropped at once),
    and how many rows."""
    started, cpu_started = time.perf_counter(), time.process_time()
    rows = 0
    for value in values:
        rows += len(decode(value).rows)
    return time.perf_counter() - started, time.process_time() - cpu_started, rows


def compare_decoders(values: list[bytes], baseline: Callable[[bytes], object], rounds: int) -> tuple[float, float]:
    """Best CPU seconds of (baseline, ours) over interleaved rounds.

    CPU time, not wall time: on a shared machine the wall clock also counts the time this
    process waited for its core, which swamps a difference of a few percent.
    """
    best = [float("inf"), float("inf")]
    for _ in range(rounds):
        for i, decoder in enumerate((baseline, decode)):
            started = time.process_time()
            for value in values:
                decoder(value)
            best[i] = min(best[i], time.process_time() - started)
    return best[0], best[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=200_000)
    parser.add_argument("--per-message", type=int, default=512)
    parser.add_argument("--rate", type=float, default=5000, help="calls/s of the stream the backlog comes from")
    parser.add_argument("--baseline-decoder", metavar="REV", help="git revision whose decoder to time against ours")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds of the decoder comparison")
    parser.add_argument("--baseline", metavar="REV", help="git revision whose full processor to run beside ours")
    args = parser.parse_args()
    baseline = decoder_at(args.baseline_decoder) if args.baseline_decoder else None
    with tempfile.TemporaryDirectory(prefix="cutover-baseline-") as code:
        if args.baseline:
            archive = subprocess.run(["git", "archive", args.baseline], cwd=REPO, capture_output=True, check=True)
            subprocess.run(["tar", "-x", "-C", code], input=archive.stdout, check=True)
        bench(args, baseline, Path(code) if args.baseline else None)


def bench(args: argparse.Namespace, baseline: Callable[[bytes], object] | None, baseline_code: Path | None) -> None:

    with scratch_broker("cutover-bench-") as (broker, scratch):
        # One core for this process, pinned after the broker started: a child inherits the
        # mask, and a broker sharing the core would be measured as processor time.
        all_cores = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {min(all_cores)})
        topic = "bench_spans"
        broker.create_topics([topic])
        calls = make_calls(args.spans, seed=1, spread_s=args.spans / args.rate)
        # Exporters send spans as they end: an hour of randomly placed calls in every message
        # would make each batch touch every 5-second histogram slot of the hour.
        calls.sort(key=lambda call: call.start_ns + call.latency_ns)
        items = list(messages(calls, per_message=args.per_message))
        produce(broker.bootstrap, topic, items)
        started, cpu_started = time.perf_counter(), time.process_time()
        values = read_topic(broker.bootstrap, topic, len(items))
        fetch_s, fetch_cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
        assert len(values) == len(items)

        started = time.perf_counter()
        parsed = 0
        for value in values:
            request = ExportTraceServiceRequest.FromString(value)
            for resource_spans in request.resource_spans:
                for scope_spans in resource_spans.scope_spans:
                    parsed += len(scope_spans.spans)
        bare_s = time.perf_counter() - started

        passes = [decode_pass(values)]
        assert passes[0][2] == len(calls)
        if baseline is not None:
            baseline_s, ours_s = compare_decoders(values, baseline, args.rounds)

        enricher = Enricher(PriceBook.load(), refusal)
        enricher.table([row for value in values[:100] for row in decode(value).rows])  # its one-off start-up
        batches = []
        enrich_cpu_s = 0.0
        started = time.perf_counter()
        for at in range(0, len(values), 100):
            rows = [row for value in values[at : at + 100] for row in decode(value).rows]
            cpu_started = time.process_time()
            batches.append(enricher.table(rows))
            enrich_cpu_s += time.process_time() - cpu_started
        enrich_s = time.perf_counter() - started

        client = open_client(f"chdb://{scratch / 'chdb'}")
        migrate(client, "bench_write", 0)
        writer = CallWriter(client, "bench_write")
        # process_time() counts chDB's threads too (it runs in this process): the inserts, then the
        # merges they set off, which every MergeTree table needs (until none has run for 2 s).
        started, cpu_started = time.perf_counter(), time.process_time()
        for columns in batches:
            writer.insert(columns)
        insert_s = time.perf_counter() - started
        settle_merges(client, "bench_write")
        insert_cpu_s = time.process_time() - cpu_started
        groups = set().union(*(touched_groups(columns) for columns in batches))
        started, cpu_started = time.perf_counter(), time.process_time()
        writer.recompute(groups)
        rebuild_s, rebuild_cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
        # The full path runs as a real processor would: without the earlier stages' 200k
        # rows in memory for its garbage collector to walk.
        expected = len(calls)
        del calls, batches, columns
        one_core = os.sched_getaffinity(0)
        full = {}
        for label, cores, workers in RUNS:
            os.sched_setaffinity(0, one_core if cores == 1 else all_cores)
            full[label] = run_service(broker.bootstrap, topic, client, label, workers, expected)
            if baseline_code is not None:
                full[f"{label} @{args.baseline}"] = serve_elsewhere(
                    baseline_code,
                    broker.bootstrap,
                    topic,
                    scratch / "chdb-baseline",
                    f"{label} baseline",
                    workers,
                    expected,
                )
            os.sched_setaffinity(0, one_core)
            passes.append(decode_pass(values))
        decode_s, decode_cpu_s = min(wall for wall, _, _ in passes), min(cpu for _, cpu, _ in passes)

    print(
        f"{expected:,} GenAI spans (+{len(items):,} HTTP spans) in {len(items):,} messages of {args.per_message}, "
        f"a backlog of {args.rate:,.0f} calls/s in end-time order; "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print(f"bare protobuf parse          {rate(parsed, bare_s)}")
    print(f"Kafka fetch (kafka-python)   {rate(parsed, fetch_s)}   (a bare consumer reading the same messages)")
    print(
        f"decode to call rows          {rate(parsed, decode_s)}   {bare_s / decode_s:6.1%} of bare parse; "
        f"best of {len(passes)} passes (slowest {parsed / max(wall for wall, _, _ in passes):,.0f} spans/s)"
    )
    if baseline is not None:
        print(
            f"decoder of {args.baseline_decoder:<17} {rate(parsed, baseline_s)}   best of {args.rounds}, interleaved, CPU time"
        )
        print(f"our decoder                  {rate(parsed, ours_s)}   {baseline_s / ours_s:6.1%} of its speed")
    print(f"decode + enrich              {rate(parsed, enrich_s)}   {bare_s / enrich_s:6.1%} of bare parse")
    print(
        f"chDB insert                  {rate(parsed, insert_s)}   (the writer alone, same batches; its merges not timed)"
    )
    print(f"histograms, one rebuild      {rate(parsed, rebuild_s)}   (every slot of those batches at once)")
    print(f"decode to call rows, CPU time {decode_cpu_s:6.2f} s")
    floor_s = fetch_cpu_s + decode_cpu_s + enrich_cpu_s + insert_cpu_s
    print(
        f"floor of the full path, CPU s: Kafka fetch {fetch_cpu_s:.2f} + decode {decode_cpu_s:.2f} + enrichment "
        f"{enrich_cpu_s:.2f} + chDB insert and its merges {insert_cpu_s:.2f} = {floor_s:.2f}, on one core "
        f"{decode_cpu_s / floor_s:4.2f} x decoder-only CPU at most; with one histogram rebuild of every slot "
        f"({rebuild_cpu_s:.2f}, the least an exact rebuild from the stored calls costs) "
        f"{decode_cpu_s / (floor_s + rebuild_cpu_s):4.2f} x; before hallucination checks and commits"
    )
    one_core = {label for label, cores, _ in RUNS if cores == 1}
    for label, run in full.items():
        print(
            f"full processor, {label:<36} {rate(parsed, run.total_s)}   {decode_s / run.total_s:5.2f} x decoder-only; "
            f"steady (group join -> rows queryable): {parsed / run.steady_s:>9,.0f} spans/s, "
            f"{decode_s / run.steady_s:5.2f} x decoder-only; CPU {run.cpu_s:6.2f} s, {decode_cpu_s / run.cpu_s:5.2f} x decoder-only CPU"
        )
        stages = ", ".join(f"{stage} {seconds:.2f}" for stage, seconds in run.threads.items() if seconds >= 0.005)
        ceiling = decode_cpu_s / (decode_cpu_s + run.threads[CHDB])
        shared = f"; chDB's threads alone cap it at {ceiling:4.2f} x decoder-only CPU" if label in one_core else ""
        print(f"    CPU s by thread: {stages}{shared}")
        if run.recomputes is not None and run.recompute_s is not None:
            print(
                f"    histogram recomputes: {run.recomputes} taking {run.recompute_s:.2f} s (wall; their CPU is in chDB's threads)"
            )
        if run.rejoins:
            print(
                f"    kafka-python left the member owning nothing; the group watch rejoined {run.rejoins}x: this run includes the stall"
            )


# (label, cores, decode workers): the same topic read by a fresh group into a fresh database each time.
RUNS = (
    ("one core", 1, 0),
    ("two cores, in-process", 2, 0),
    ("two cores, 1 decode worker", 2, 1),
    ("two cores, 2 decode workers", 2, 2),
)


def serve_elsewhere(code: Path, bootstrap: str, topic: str, chdb: Path, label: str, workers: int, expected: int) -> Run:
    """`run_service` by the processor code under `code`, in a child process (on this process's cores)."""
    command = [
        sys.executable, str(REPO / "bench" / "serve_once.py"), "--code", str(code), "--bootstrap", bootstrap,
        "--topic", topic, "--chdb", str(chdb), "--label", label, "--workers", str(workers), "--expected", str(expected),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=True, timeout=1800)
    return Run(**json.loads(result.stdout.strip().splitlines()[-1]))


if __name__ == "__main__":
    main()
