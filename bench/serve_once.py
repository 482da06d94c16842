"""One full processor run over a filled topic, for bench/processor.py: by this tree's code or an older one's.

    python bench/serve_once.py --code DIR --bootstrap HOST:PORT --topic T --chdb PATH --label L --workers N --expected N

runs `processors.service.ProcessorService` as found under DIR (a `git archive` of an older
revision; default this tree) and prints its `Run` as JSON (see `run_service`). A separate process
because chDB allows one engine per process and the older code must not mix with ours.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import threading
import time
from pathlib import Path
from typing import NamedTuple

from clickhouse_connect.driver.client import Client

# The processor's Python threads by name prefix -> the stage they run; every other thread of
# the process was started by chDB's engine (its pipelines, merges, pools).
STAGES = (
    ("cutover-consume", "consume"),
    ("kafka-io-cutover-processor", "kafka-python"),
    ("cutover-histograms", "histograms"),
    ("cutover-hallucination", "hallucination"),
)
CHDB = "chDB's threads"


class Run(NamedTuple):
    total_s: float  # start to every offset committed
    steady_s: float  # partitions assigned to every row queryable
    cpu_s: float  # the processor and its decode workers, start to every offset committed
    threads: dict[str, float]  # CPU seconds of `cpu_s` by stage (`STAGES`, chDB's threads, the rest)
    # Group rejoins after kafka-python left this member owning nothing: the figures then include that stall.
    rejoins: int
    # Background histogram recomputes and their wall seconds (None: code without that metric). Their chDB
    # work is inside chDB's threads, where /proc cannot tell it from inserts and merges.
    recomputes: int | None
    recompute_s: float | None


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def thread_cpu_s() -> dict[int, tuple[str, float]]:
    """Native thread id -> (stage, CPU seconds so far) of each live thread of this process."""
    names = {thread.native_id: thread.name for thread in threading.enumerate()}
    tick = os.sysconf("SC_CLK_TCK")
    found = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except FileNotFoundError:  # exited meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": state, ..., utime, stime
        name = names.get(int(task.name))
        stage = CHDB if name is None else next((s for prefix, s in STAGES if name.startswith(prefix)), "other")
        found[int(task.name)] = (stage, (int(fields[11]) + int(fields[12])) / tick)
    return found


def recompute_totals() -> tuple[int, float] | None:
    """Background histogram recomputes so far (count, seconds), from the processor's Prometheus metric."""
    from processors import metrics

    histogram = getattr(metrics, "HISTOGRAM_RECOMPUTE_SECONDS", None)
    if histogram is None:
        return None
    samples = {sample.name.rsplit("_", 1)[-1]: sample.value for sample in histogram.collect()[0].samples}
    return int(samples["count"]), samples["sum"]


def by_stage(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]], cpu_s: float
) -> dict[str, float]:
    """CPU seconds per stage between two `thread_cpu_s` snapshots; threads gone by the second count as "exited"."""
    stages: dict[str, float] = {}
    for tid, (stage, seconds) in after.items():
        stages[stage] = stages.get(stage, 0.0) + seconds - before.get(tid, (stage, 0.0))[1]
    stages["exited"] = max(0.0, cpu_s - sum(stages.values()))
    return stages


def run_service(bootstrap: str, topic: str, client: Client, label: str, workers: int, expected: int) -> Run:
    """One processor from a fresh group into a fresh database until every call is written.

    CPU seconds, because on a shared machine wall time also counts the time spent waiting for
    a core; the workers' CPU time is known once they exit, at the stop. Rows are counted
    without FINAL (the part counts, ~1 ms): the bench's spans are unique. CPU by stage comes
    from /proc per thread: this process's threads only (decode workers count as "workers").
    """
    from processors.service import ProcessorService
    from processors.settings import ProcessorSettings

    name = "bench_" + "".join(c if c.isalnum() else "_" for c in label)
    settings = ProcessorSettings(
        kafka_bootstrap=bootstrap, spans_topic=topic, dlq_topic=f"{topic}_dlq", consumer_group=name,
        clickhouse_database=name, alert_interval_s=3600, decode_workers=workers,
    )  # fmt: skip
    service = ProcessorService(settings, client=client)
    cpu_started, children_started, threads_started = time.process_time(), children_cpu_s(), thread_cpu_s()
    recomputes_started = recompute_totals()
    started = time.perf_counter()
    assigned = queryable = 0.0
    service.start()
    while service.stats.calls_written < expected:
        assert service.failure is None, service.failure
        now = time.perf_counter()
        if not assigned and service.partitions:
            assigned = now
        if not queryable and client.command(f"SELECT count() FROM {name}.llm_calls") >= expected:
            queryable = now
        time.sleep(0.05)
    done = time.perf_counter()
    cpu_s = time.process_time() - cpu_started
    threads = by_stage(threads_started, thread_cpu_s(), cpu_s)
    recomputes_done = recompute_totals()
    service.stop()
    threads["workers"] = children_cpu_s() - children_started
    stored = client.command(f"SELECT count() FROM {name}.llm_calls FINAL")
    assert stored == expected, stored
    steady_s = (queryable or done) - (assigned or started)
    recomputes: int | None = None
    recompute_s: float | None = None
    if recomputes_started is not None and recomputes_done is not None:
        recomputes, recompute_s = recomputes_done[0] - recomputes_started[0], recomputes_done[1] - recomputes_started[1]
    return Run(
        done - started, steady_s, cpu_s + threads["workers"], threads, service.stats.rejoins, recomputes, recompute_s
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", type=Path, required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--chdb", type=Path, required=True)
    parser.add_argument("--label", required=True)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--expected", type=int, required=True)
    args = parser.parse_args()
    sys.path.insert(0, str(args.code))
    # The bench imported these before its full runs; so does the baseline, for the same start-up.
    import pandas  # noqa: F401
    import pyarrow  # noqa: F401

    from cutover.store import open_client

    client = open_client(f"chdb://{args.chdb}")
    run = run_service(args.bootstrap, args.topic, client, args.label, args.workers, args.expected)
    print(json.dumps(run._asdict()))


if __name__ == "__main__":
    main()
