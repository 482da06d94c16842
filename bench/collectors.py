"""Benchmark: instrumentation overhead per call, and primary latency with shadow mirroring on vs off.

    .venv/bin/python bench/collectors.py [--calls 400]

Runs a real local Kafka broker (free ports) and the simulator in a subprocess (so it does not
share this process's GIL), then measures side by side in one run:

1. overhead: each request through the SDK's own (unwrapped) method and through the instrumented
   one (`collectors.instrument`, spans exported to Kafka), call by call, against a zero-latency,
   fault-free profile;
2. shadow: the same requests (same nonce, hence the same simulated latency) in blocks with the
   mirror off and on at fraction 1.0 (every call mirrored: the worst case).
"""

from __future__ import annotations

import argparse
import inspect
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from functools import partial
from pathlib import Path

import openai
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scratch import scratch_broker  # noqa: E402

from collectors.instrument import instrument  # noqa: E402
from collectors.shadow import ShadowMirror  # noqa: E402
from cutover.local_kafka import free_port  # noqa: E402
from simulator.profiles import DEFAULT_PROFILES  # noqa: E402
from simulator.server import NONCE_HEADER  # noqa: E402
from simulator.workload import load_corpus  # noqa: E402

BLOCK = 20  # calls per block of the shadow comparison


def _fault_free_profiles(folder: Path) -> Path:
    raw = yaml.safe_load(DEFAULT_PROFILES.read_text())
    raw.pop("defaults")
    for profile in raw["models"].values():
        profile["faults"] = {"rate_limited": 0.0, "server_error": 0.0, "stall": 0.0}
        profile["refusal"]["sensitive_rate"] = 0.0
    path = folder / "profiles.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _start_simulator(profiles: Path, time_scale: float) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {
        **os.environ,
        "CUTOVER_SIMULATOR_PORT": str(port),
        "CUTOVER_SIMULATOR_PROFILES": str(profiles),
        "CUTOVER_SIMULATOR_TIME_SCALE": str(time_scale),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "cutover.cli", "simulate"],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{base}/health", timeout=1).read()
            return process, f"{base}/v1"
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"the simulator did not start: {process.stderr.read().decode()[-2000:]}")


def _requests(count: int) -> list[dict]:
    corpus = load_corpus()
    tasks = [t for items in corpus.tasks.values() for t in items]
    out = []
    for i in range(count):
        stream = i % 2 == 1
        kwargs = {
            "model": "gpt-5.4",
            "messages": corpus.messages(tasks[i % len(tasks)]),
            "extra_headers": {NONCE_HEADER: f"bench-{i}"},
        }
        if stream:
            kwargs.update(stream=True, stream_options={"include_usage": True})
        out.append(kwargs)
    return out


def _call(create, kwargs: dict) -> float:
    started = time.perf_counter()
    reply = create(**kwargs)
    if kwargs.get("stream"):
        for _ in reply:
            pass
    return time.perf_counter() - started


def _median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def bench_overhead(base_url: str, calls: int) -> None:
    # The instrumentor wraps `Completions.create` in place; `inspect.unwrap` gives back the SDK's
    # own method, so bare and instrumented calls can alternate call by call on the same request.
    from openai.resources.chat.completions import Completions

    bare_create = inspect.unwrap(Completions.create)
    requests = _requests(calls)
    bare: list[float] = []
    instrumented: list[float] = []
    inst = instrument(service_name="bench", capture_content=False)
    try:
        with openai.OpenAI(base_url=base_url, api_key="bench", max_retries=0, timeout=30) as client:
            assert client.chat.completions.create.__func__ is not bare_create, "the SDK is not instrumented"
            for kwargs in requests[:20]:
                _call(client.chat.completions.create, kwargs)
            for kwargs in requests:
                bare.append(_call(partial(bare_create, client.chat.completions), kwargs))
                instrumented.append(_call(client.chat.completions.create, kwargs))
        inst.force_flush()
        dropped = inst.dropped
    finally:
        inst.shutdown()
    if dropped:
        raise SystemExit(f"the exporter dropped {dropped} spans: the comparison would be unfair")
    b, i = _median_ms(bare), _median_ms(instrumented)
    pairs = [x - y for x, y in zip(instrumented, bare, strict=True)]
    print(f"instrumentation overhead ({calls} request pairs, half streamed, zero-latency simulator, spans to Kafka):")
    print(f"  bare openai        median {b:7.3f} ms")
    print(f"  instrumented       median {i:7.3f} ms")
    print(
        f"  overhead per call  {_median_ms(pairs):+.3f} ms median per pair, {i - b:+.3f} ms of medians, ratio {i / b:.2f}x"
    )


def _drain(mirror: ShadowMirror) -> None:
    while (stats := mirror.stats).completed + stats.failed < stats.mirrored:
        time.sleep(0.005)


def bench_shadow(base_url: str, calls: int) -> None:
    requests = _requests(calls)
    off: list[float] = []
    on: list[float] = []
    control: list[float] = []  # off again: the noise floor of the comparison
    inst = instrument(service_name="bench", capture_content=False)
    mirror = ShadowMirror("gpt-5.5", fraction=1.0, max_workers=4, max_queue=64)
    try:
        with openai.OpenAI(base_url=base_url, api_key="bench", max_retries=0, timeout=30) as client:
            create = client.chat.completions.create
            mirrored = mirror.wrap(create)
            for kwargs in requests[:10]:
                _call(create, kwargs)
            # Blocks, not alternating calls: with the mirror on, shadow i overlaps primary i+1, as in
            # an application; alternating would let the shadows slow the "off" calls as much.
            for start in range(0, calls, BLOCK):
                block = requests[start : start + BLOCK]
                off.extend(_call(create, kwargs) for kwargs in block)
                on.extend(_call(mirrored, kwargs) for kwargs in block)
                _drain(mirror)
                control.extend(_call(create, kwargs) for kwargs in block)
            mirror.close(wait=True)
        inst.force_flush()
    finally:
        inst.shutdown()
    stats = mirror.stats
    pairs = [a - b for a, b in zip(on, off, strict=True)]
    noise = [a - b for a, b in zip(control, off, strict=True)]
    print(
        f"primary latency, shadow off vs on (fraction 1.0, {calls} identical request pairs, simulator time scale 0.02):"
    )
    print(f"  shadow off         median {_median_ms(off):8.3f} ms")
    print(
        f"  shadow on          median {_median_ms(on):8.3f} ms   ({stats.mirrored} mirrored, {stats.dropped} dropped, {stats.failed} failed)"
    )
    print(
        f"  difference         {_median_ms(pairs):+.3f} ms median per pair, {_median_ms(on) - _median_ms(off):+.3f} ms of medians "
        f"(target: under 1 ms)"
    )
    print(
        f"  noise floor        {_median_ms(noise):+.3f} ms median per pair of two shadow-off runs of the same requests"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=400, help="calls per side of each comparison")
    args = parser.parse_args()
    with scratch_broker("cutover-bench-collectors-") as (broker, folder):
        os.environ.update(CUTOVER_KAFKA_BOOTSTRAP=broker.bootstrap, CUTOVER_SPANS_TOPIC="bench_spans")
        profiles = _fault_free_profiles(folder)
        for time_scale, bench in ((0.0, bench_overhead), (0.02, bench_shadow)):
            simulator, base_url = _start_simulator(profiles, time_scale)
            try:
                bench(base_url, args.calls)
            finally:
                simulator.terminate()
                simulator.wait(timeout=10)


if __name__ == "__main__":
    main()
