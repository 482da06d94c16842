"""The shadow-pair queries before and after `shadow_pair_calls`, timed side by side in one run.

The "before" queries are `dashboards/queries.py` as of `--before` (read from git: they scan
`llm_calls FINAL`), the "after" ones this tree's (`shadow_pair_calls FINAL`); both run on the same
seeded chDB store (bench/dashboard.py's, `--path` reuses one), interleaved run by run so the
machine's load falls on both alike, and each pair must return the same rows. Times are wall
clock (median, best); "cpu" is the median CPU time of the whole process (chDB runs in it), which
a busy machine inflates less than the wall clock.

    .venv/bin/python bench/pair_queries.py [--calls 10000000] [--days 14] [--runs 7] [--path DIR] [--before 04a4313]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from types import ModuleType

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.dashboard import DB, MODELS, seeded_store
from dashboards import pair_agreement, queries
from dashboards.queries import Filters

REPO = Path(__file__).resolve().parents[1]


def queries_at(revision: str) -> ModuleType:
    """`dashboards/queries.py` as of `revision`, imported under another name."""
    source = subprocess.run(
        ["git", "show", f"{revision}:dashboards/queries.py"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    path = Path(tempfile.mkdtemp(prefix="cutover-bench-pairs-")) / "queries_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("queries_before", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["queries_before"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def same_rows(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """The same rows and values, whatever the dtypes (the newer queries may fetch through Arrow)."""
    a, b = (x.sort_values("shadow_pair_id").reset_index(drop=True) for x in (a, b[list(a.columns)]))
    try:
        pd.testing.assert_frame_equal(a, b, check_dtype=False)
    except AssertionError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000_000)
    parser.add_argument("--days", type=float, default=14)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--path", type=Path, default=None, help="chDB data path (default: a fresh temporary one)")
    parser.add_argument("--before", default="04a4313", help="git revision of the queries to compare with")
    args = parser.parse_args()
    before = queries_at(args.before)
    client, end = seeded_store(args.path, args.calls, args.days)
    print(f"load average {os.getloadavg()[0]:.1f}; runs per query: {args.runs} (each after one warm-up)\n")
    print(
        f"{'query':40} {'range':>5} {'before med':>10} {'min':>7} {'after med':>10} {'min':>7} {'ratio':>6}"
        f" {'cpu before':>8} {'after':>8}"
    )
    for label, span in (("1 h", timedelta(hours=1)), ("24 h", timedelta(hours=24)), ("7 d", timedelta(days=7))):
        f = Filters(end - span, end)
        ids = pair_agreement.to_read(queries.readiness_pairs(client, DB, f, 50_000), "task")
        cases: dict[str, Callable[[ModuleType], pd.DataFrame]] = {
            "readiness: pairs (50,000 newest)": lambda m, f=f: m.readiness_pairs(client, DB, f, 50_000),
            f"readiness: answers' text ({len(ids):,} pairs)": lambda m, f=f, ids=ids: m.pair_texts(client, DB, f, ids),
            "shadow: pairs (50,000 newest)": lambda m, f=f: m.shadow_pairs(client, DB, f, 50_000),
            "shadow: answers' text for agreement": lambda m, f=f: m.shadow_pair_texts(
                client, DB, f, *MODELS, pair_agreement.PAIRS
            ),
        }
        for name, run in cases.items():
            if not same_rows(run(before), run(queries)):
                raise SystemExit(f"{name}, {label}: the two versions return different rows")
            times: dict[ModuleType, list[float]] = {before: [], queries: []}
            cpu: dict[ModuleType, list[float]] = {before: [], queries: []}
            for _ in range(args.runs):
                for module in (before, queries):
                    began, began_cpu = time.perf_counter(), time.process_time()
                    run(module)
                    times[module].append((time.perf_counter() - began) * 1000)
                    cpu[module].append((time.process_time() - began_cpu) * 1000)
            old, new = statistics.median(times[before]), statistics.median(times[queries])
            old_cpu, new_cpu = statistics.median(cpu[before]), statistics.median(cpu[queries])
            print(
                f"{name:40} {label:>5} {old:10.1f} {min(times[before]):7.1f} {new:10.1f} {min(times[queries]):7.1f}"
                f" {old / new:5.1f}x {old_cpu:8.1f} {new_cpu:8.1f}",
                flush=True,
            )
    print(f"\nload average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
