"""One full processor run over a filled topic, for bench/processor.py: by this tree's code or an older one's.

    python bench/serve_once.py --code DIR --bootstrap HOST:PORT --topic T --chdb PATH --label L --workers N --expected N

runs `processors.service.ProcessorService` as found under DIR (a `git archive` of an older
revision; default this tree) and prints `{"total_s": ..., "steady_s": ..., "cpu_s": ...}` (see `run_service`). A separate process
because chDB allows one engine per process and the older code must not mix with ours.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

from clickhouse_connect.driver.client import Client


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_service(
    bootstrap: str, topic: str, client: Client, label: str, workers: int, expected: int
) -> tuple[float, float, float]:
    """(seconds from start to every offset committed, seconds from partitions assigned to every row
    queryable, CPU seconds of the processor and its decode workers from start to every offset committed).

    CPU seconds, because on a shared machine wall time also counts the time spent waiting for
    a core; the workers' CPU time is known once they exit, at the stop. Rows are counted
    without FINAL (the part counts, ~1 ms): the bench's spans are unique.
    """
    from processors.service import ProcessorService
    from processors.settings import ProcessorSettings

    name = "bench_" + "".join(c if c.isalnum() else "_" for c in label)
    settings = ProcessorSettings(
        kafka_bootstrap=bootstrap, spans_topic=topic, dlq_topic=f"{topic}_dlq", consumer_group=name,
        clickhouse_database=name, alert_interval_s=3600, decode_workers=workers,
    )  # fmt: skip
    service = ProcessorService(settings, client=client)
    cpu_started, children_started = time.process_time(), children_cpu_s()
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
    service.stop()
    cpu_s += children_cpu_s() - children_started
    stored = client.command(f"SELECT count() FROM {name}.llm_calls FINAL")
    assert stored == expected, stored
    return done - started, (queryable or done) - (assigned or started), cpu_s


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
    total_s, steady_s, cpu_s = run_service(args.bootstrap, args.topic, client, args.label, args.workers, args.expected)
    print(json.dumps({"total_s": total_s, "steady_s": steady_s, "cpu_s": cpu_s}))


if __name__ == "__main__":
    main()
