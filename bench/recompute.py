"""Histogram recompute cost as a live minute fills: batch after batch into one minute, each
followed by the recompute of the groups it touched (what the processor runs per batch).

    .venv/bin/python bench/recompute.py [--batches 60] [--calls 5000]

Batch k holds the calls that ended during second k of one minute (`--calls` calls/s exported
as they end, as an SDK's batch processor sends them), after a minute of earlier calls already
stored; the calls' latencies are the processor workload's (median 0.9-2 s, log-normal). Prints
the recompute time after the first batch, at a few points through the minute and after the
last, with the load average. Run it from another tree (e.g. an older commit exported under
/tmp, this file copied in) to compare schemes side by side: it imports the processor from the
tree it sits in.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pyarrow as pa  # noqa: E402

from cutover.store import open_client  # noqa: E402
from processors.decode import decode  # noqa: E402
from processors.enrich import Enricher  # noqa: E402
from processors.pricing import PriceBook  # noqa: E402
from processors.refusal import refusal  # noqa: E402
from processors.schema import migrate  # noqa: E402
from processors.writer import CallWriter, touched_groups  # noqa: E402
from tests.processor_workload import Call, make_calls, messages  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--calls", type=int, default=5000)
    args = parser.parse_args()
    enricher = Enricher(PriceBook.load(), refusal)
    minute_ns = (time.time_ns() // 60_000_000_000 - 10) * 60_000_000_000  # a whole minute, ten minutes ago
    lead_s = 60
    calls = make_calls(
        args.calls * (lead_s + args.batches),
        seed=1,
        start_ns=minute_ns - lead_s * 10**9,
        spread_s=lead_s + args.batches,
    )
    by_second: dict[int, list[Call]] = {}
    for call in calls:
        by_second.setdefault((call.start_ns + call.latency_ns - minute_ns) // 10**9, []).append(call)
    earlier = [call for second, ended in by_second.items() if second < 0 for call in ended]

    def table(ended: list[Call]) -> pa.Table:
        ended.sort(key=lambda call: call.start_ns + call.latency_ns)
        return enricher.table([row for _, value in messages(ended, per_message=512) for row in decode(value).rows])

    batches = [table(by_second.get(k, [])) for k in range(args.batches)]
    with tempfile.TemporaryDirectory(prefix="cutover-recompute-") as folder:
        client = open_client(f"chdb://{Path(folder) / 'chdb'}")
        migrate(client, "bench", 0)
        writer = CallWriter(client, "bench")
        writer.write(table(earlier))
        times: list[float] = []
        cpu_s = 0.0  # chDB's threads included: they run in this process
        for columns in batches:
            writer.insert(columns)
            groups = touched_groups(columns)
            began, cpu_began = time.perf_counter(), time.process_time()
            writer.recompute(groups)
            times.append(time.perf_counter() - began)
            cpu_s += time.process_time() - cpu_began
        latency = client.command("SELECT sum(count) FROM bench.latency_histograms FINAL WHERE metric = 'latency_ms'")
    marks = sorted({0, len(times) // 4, len(times) // 2, 3 * len(times) // 4, len(times) - 1})
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"{REPO}: {args.batches} batches of the calls that ended in one second, {args.calls:,}/s; load average {load}"
    )
    print("recompute after batch " + ", ".join(f"{k + 1}: {times[k] * 1000:.0f} ms" for k in marks))
    print(
        f"total {sum(times):.2f} s ({cpu_s:.2f} CPU s), mean {sum(times) / len(times) * 1000:.0f} ms per batch; "
        f"calls in the latency histograms: {latency:,}"
    )


if __name__ == "__main__":
    main()
