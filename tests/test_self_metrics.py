"""`/metrics` of `cutover collect` and `cutover process`, scraped while real spans flow through both."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from cutover.local_kafka import free_port
from tests.processor_workload import make_calls, request_bytes

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except (urllib.error.URLError, ConnectionError):
        return {}
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def post(port: int, body: bytes, content_type: str = "application/x-protobuf") -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/traces", data=body, headers={"Content-Type": content_type}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, ConnectionError):
        return 0


def start(command: str, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    log = log_path.open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "cutover.cli", command], env=env, stdout=log, stderr=subprocess.STDOUT
    )


def wait_for(
    what: str, predicate: Callable[[], object], process: subprocess.Popen[bytes], log_path: Path, timeout: float = 120
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert process.poll() is None, f"{what}: exited early:\n{log_path.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{log_path.read_text()[-3000:]}"
        time.sleep(0.2)


def test_both_services_expose_the_figures_of_what_flowed_through_them(topic, cutover_env, tmp_path):
    collect_port, collect_metrics, process_metrics = free_port(), free_port(), free_port()
    env = dict(
        cutover_env,
        CUTOVER_SPANS_TOPIC=topic,
        CUTOVER_DLQ_TOPIC=f"{topic}_dlq",
        CUTOVER_CONSUMER_GROUP=f"g_{topic}",
        CUTOVER_COLLECT_PORT=str(collect_port),
        CUTOVER_COLLECTOR_METRICS_PORT=str(collect_metrics),
        CUTOVER_PROCESSOR_METRICS_PORT=str(process_metrics),
        CUTOVER_BATCH_MAX_WAIT_S="0.2",
    )
    calls = make_calls(300, seed=31)
    chunks = [calls[i : i + 50] for i in range(0, len(calls), 50)]
    collect_log, process_log = tmp_path / "collect.log", tmp_path / "process.log"
    collect = start("collect", env, collect_log)
    process = start("process", env, process_log)
    try:
        wait_for("collect /metrics", lambda: bool(scrape(collect_metrics)), collect, collect_log)
        wait_for("collect to listen", lambda: post(collect_port, b"", "text/plain") == 415, collect, collect_log)
        for chunk in chunks:
            assert post(collect_port, request_bytes(chunk)) == 200
        assert post(collect_port, b"{}", content_type="text/plain") == 415
        collected = scrape(collect_metrics)
        assert collected[("cutover_collector_requests_total", (("status", "200"),))] == len(chunks)
        assert collected[("cutover_collector_requests_total", (("status", "415"),))] >= 2
        assert collected[("cutover_collector_spans_total", ())] == len(calls)
        messages = collected[("cutover_collector_messages_total", ())]
        assert messages >= len(chunks)
        assert collected[("cutover_exporter_dropped_spans_total", ())] == 0

        def processed() -> bool:
            samples = scrape(process_metrics)
            lags = [v for (name, _), v in samples.items() if name == "cutover_processor_consumer_lag"]
            return (
                samples.get(("cutover_processor_messages_total", ())) == messages and len(lags) == 4 and sum(lags) == 0
            )

        wait_for("the processor's figures", processed, process, process_log, timeout=180)
        samples = scrape(process_metrics)
        assert samples[("cutover_processor_calls_written_total", ())] == len(calls)
        assert samples[("cutover_processor_spans_total", ())] == len(calls)
        assert samples[("cutover_processor_dlq_total", ())] == 0
        assert samples[("cutover_processor_retries_total", ())] == 0
        assert samples[("cutover_processor_batch_write_seconds_count", ())] >= 1
        assert samples[("cutover_processor_batch_write_seconds_sum", ())] > 0
        assert samples[("cutover_processor_owned_partitions", ())] == 4
        assert samples[("cutover_processor_hallucination_queue_depth", ())] >= 0
        assert samples[("cutover_processor_hallucination_sample_rate", ())] == 1
    finally:
        for service in (process, collect):
            service.terminate()
            service.wait(60)
