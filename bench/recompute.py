"""Histogram recompute cost as a live minute fills: batch after batch into one minute, each
followed by the recompute of the groups it touched (what the processor runs per batch).

    .venv/bin/python bench/recompute.py [--batches 60] [--calls 5000]

Batch k holds `--calls` calls that started during second k of one minute (5,000 calls/s
arriving in one-second batches). Prints the recompute time after the first batch, at a few
points through the minute and after the last, with the load average. Run it from another tree
(e.g. an older commit exported under /tmp) to compare schemes side by side: it imports the
processor from the tree it sits in.
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

from cutover.store import open_client  # noqa: E402
from processors.decode import decode  # noqa: E402
from processors.enrich import Enricher  # noqa: E402
from processors.pricing import PriceBook  # noqa: E402
from processors.refusal import refusal  # noqa: E402
from processors.schema import migrate  # noqa: E402
from processors.writer import CallWriter, touched_groups  # noqa: E402
from tests.processor_workload import make_calls, messages  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--calls", type=int, default=5000)
    args = parser.parse_args()
    enricher = Enricher(PriceBook.load(), refusal)
    minute_ns = (time.time_ns() // 60_000_000_000 - 10) * 60_000_000_000  # a whole minute, ten minutes ago
    batches = []
    for k in range(args.batches):
        calls = make_calls(args.calls, seed=k, start_ns=minute_ns + k * 1_000_000_000, spread_s=1.0)
        rows = [row for _, value in messages(calls, per_message=50) for row in decode(value).rows]
        batches.append(enricher.table(rows))
    with tempfile.TemporaryDirectory(prefix="cutover-recompute-") as folder:
        client = open_client(f"chdb://{Path(folder) / 'chdb'}")
        migrate(client, "bench", 0)
        writer = CallWriter(client, "bench")
        times: list[float] = []
        for columns in batches:
            writer.insert(columns)
            groups = touched_groups(columns)
            began = time.perf_counter()
            writer.recompute(groups)
            times.append(time.perf_counter() - began)
        latency = client.command("SELECT sum(count) FROM bench.latency_histograms FINAL WHERE metric = 'latency_ms'")
    marks = sorted({0, len(times) // 4, len(times) // 2, 3 * len(times) // 4, len(times) - 1})
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{REPO}: {args.batches} batches of {args.calls:,} calls into one minute; load average {load}")
    print("recompute after batch " + ", ".join(f"{k + 1}: {times[k] * 1000:.0f} ms" for k in marks))
    print(
        f"total {sum(times):.2f} s, mean {sum(times) / len(times) * 1000:.0f} ms per batch; "
        f"calls in the latency histograms: {latency:,}"
    )


if __name__ == "__main__":
    main()
