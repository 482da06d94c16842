"""The load generator and shadow mirroring, end to end: simulator -> openai SDK -> spans on the real broker."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterable, Iterator
from typing import Any

import openai
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from collectors.instrument import instrument
from collectors.labels import call_labels
from collectors.shadow import ShadowMirror
from cutover import kafka_clients, semconv
from cutover.kafka_clients import KafkaConnection
from cutover.local_kafka import free_port
from simulator.loadgen import CallPlanner, run_loadgen
from simulator.server import SimulatorThread
from simulator.settings import LoadgenSettings, SimulatorSettings
from simulator.workload import load_corpus


def _value(any_value):
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


def consume_spans(bootstrap: str, topic: str, expected: int, timeout: float = 60.0, settle: float = 2.0) -> list[dict]:
    """Every span on the topic as a dict of attributes (+ `_duration_s`, `_status`): waits for
    `expected`, then `settle` seconds more so that an extra span would be seen too."""
    consumer = kafka_clients.consumer(
        KafkaConnection.plaintext(bootstrap), "test", topic, auto_offset_reset="earliest", consumer_timeout_ms=500
    )
    spans: list[dict] = []
    deadline, quiet_until = time.monotonic() + timeout, None
    try:
        while time.monotonic() < deadline:
            for record in consumer.poll(timeout_ms=300).values():
                for message in record:
                    request = ExportTraceServiceRequest.FromString(message.value)  # raises if not OTLP protobuf
                    for resource in request.resource_spans:
                        service = {a.key: _value(a.value) for a in resource.resource.attributes}
                        for scope in resource.scope_spans:
                            for span in scope.spans:
                                attrs = {a.key: _value(a.value) for a in span.attributes}
                                attrs["_duration_s"] = (span.end_time_unix_nano - span.start_time_unix_nano) / 1e9
                                attrs["_service"] = service.get(semconv.SERVICE_NAME)
                                attrs["_trace_id"] = span.trace_id.hex()
                                spans.append(attrs)
            if len(spans) >= expected:
                quiet_until = quiet_until or time.monotonic() + settle
                if time.monotonic() >= quiet_until:
                    break
    finally:
        consumer.close()
    return spans


@pytest.fixture(scope="module")
def simulator() -> Iterator[SimulatorThread]:
    settings = SimulatorSettings(simulator_port=free_port(), simulator_time_scale=0.02, simulator_seed=3)
    with SimulatorThread(settings) as running:
        yield running


def _loadgen_cli(env: dict[str, str], *args: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "cutover.cli", "loadgen", *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary: dict = json.loads(done.stdout)
    return summary


def test_loadgen_puts_exactly_one_span_per_primary_and_shadow_call_on_the_topic(
    cutover_env, topic, kafka_bootstrap, simulator
):
    env = {**cutover_env, "CUTOVER_SPANS_TOPIC": topic, "CUTOVER_LOADGEN_BASE_URL": simulator.base_url}
    calls = 60
    summary = _loadgen_cli(
        env,
        "--calls",
        str(calls),
        "--rate",
        "0",
        "--concurrency",
        "8",
        "--shadow",
        "0.3",
        "--stream-fraction",
        "0.5",
        "--responses-fraction",
        "0.2",
        "--timeout",
        "2",
        "--seed",
        "9",
        "--capture-content",
    )
    mirrored = summary["shadow"]["mirrored"]
    assert summary["calls"] == calls and mirrored > 5 and summary["shadow"]["dropped"] == 0
    assert summary["spans_expected"] == calls + mirrored and summary["spans_dropped"] == 0

    spans = consume_spans(kafka_bootstrap, topic, calls + mirrored)
    genai = [s for s in spans if semconv.OPERATION in s]
    assert len(spans) == len(genai) == calls + mirrored

    assert Counter(s[semconv.REQUEST_MODEL] for s in genai) == {"gpt-5.4": calls, "gpt-5.5": mirrored}
    assert {s["_service"] for s in genai} == {"loadgen"}
    assert Counter(s[semconv.OPERATION] for s in genai).keys() <= {"chat", "responses", "generate_content"}
    ok = [s for s in genai if semconv.ERROR_TYPE not in s]
    failed = len(genai) - len(ok)
    assert failed == summary["errors"]
    for s in genai:
        assert s["_duration_s"] > 0 and s[semconv.TASK] in ("coding", "knowledge", "rag", "simple")
        assert s[semconv.CLIENT_TIMEOUT] == 2.0
    for s in ok:
        assert s[semconv.RESPONSE_MODEL] == s[semconv.REQUEST_MODEL]
        assert s[semconv.INPUT_TOKENS] > 0 and s[semconv.OUTPUT_TOKENS] > 0
        assert s.get(semconv.CACHE_READ_INPUT_TOKENS, 0) <= s[semconv.INPUT_TOKENS]
        assert s.get(semconv.REASONING_OUTPUT_TOKENS, 0) <= s[semconv.OUTPUT_TOKENS]
        assert semconv.OUTPUT_MESSAGES in s  # content capture on
        if s[semconv.TASK] in ("knowledge", "rag"):
            assert s[semconv.REFERENCE_ANSWER]
        if s[semconv.TASK] == "rag":
            assert s[semconv.CONTEXT] in json.loads(s[semconv.INPUT_MESSAGES])[-1]["parts"][0]["content"]
    assert any(s.get(semconv.CACHE_READ_INPUT_TOKENS, 0) > 0 for s in ok)
    assert any(s.get(semconv.REASONING_OUTPUT_TOKENS, 0) > 0 for s in ok)

    streamed = sum(m["streamed"] for m in summary["models"].values())
    with_ttfc = [s for s in ok if semconv.TIME_TO_FIRST_CHUNK in s]
    assert streamed - failed <= len(with_ttfc) <= streamed
    assert all(0 < s[semconv.TIME_TO_FIRST_CHUNK] <= s["_duration_s"] for s in with_ttfc)

    primaries = {s[semconv.SHADOW_PAIR_ID]: s for s in genai if s.get(semconv.SHADOW_ROLE) == "primary"}
    shadows = {s[semconv.SHADOW_PAIR_ID]: s for s in genai if s.get(semconv.SHADOW_ROLE) == "shadow"}
    assert len(primaries) == len(shadows) == mirrored and primaries.keys() == shadows.keys()
    for pair_id, shadow in shadows.items():
        primary = primaries[pair_id]
        assert (primary[semconv.REQUEST_MODEL], shadow[semconv.REQUEST_MODEL]) == ("gpt-5.4", "gpt-5.5")
        assert primary[semconv.TASK] == shadow[semconv.TASK]
        assert (
            primary[semconv.INPUT_TOKENS] == shadow[semconv.INPUT_TOKENS]
            or semconv.ERROR_TYPE in primary
            or semconv.ERROR_TYPE in shadow
        )
    assert sum(1 for s in genai if semconv.SHADOW_ROLE not in s) == calls - mirrored


def test_seeded_loadgen_runs_ask_and_get_the_same(kafka_bootstrap, topic, simulator, monkeypatch):
    monkeypatch.setenv("CUTOVER_KAFKA_BOOTSTRAP", kafka_bootstrap)
    monkeypatch.setenv("CUTOVER_SPANS_TOPIC", topic)
    settings = LoadgenSettings(
        loadgen_base_url=simulator.base_url,
        loadgen_rate=0,
        loadgen_concurrency=6,
        loadgen_shadow=0.2,
        loadgen_timeout=2,
        loadgen_seed=21,
    )

    def outcome(summary) -> dict:
        return {
            "calls": summary.calls,
            "tasks": summary.tasks,
            "mirrored": summary.shadow.mirrored,
            "models": {m: s.model_dump(exclude={"latency_ms"}) for m, s in summary.models.items()},
        }

    first, second = (outcome(run_loadgen(settings, calls=40, capture_content=False)) for _ in range(2))
    assert first == second
    other = outcome(run_loadgen(settings.model_copy(update={"loadgen_seed": 22}), calls=40, capture_content=False))
    assert other != first
    spans = consume_spans(kafka_bootstrap, topic, 3 * 40 + first["mirrored"] * 2 + other["mirrored"])
    assert len(spans) == 3 * 40 + first["mirrored"] * 2 + other["mirrored"]


def test_call_plans_follow_the_mix_and_fractions():
    settings = LoadgenSettings(loadgen_mix="coding=1,rag=3", loadgen_stream_fraction=0.25, loadgen_shadow=0.1)
    plans = [CallPlanner(settings, load_corpus()).plan(i) for i in range(4000)]
    tasks = Counter(p.task.task for p in plans)
    assert set(tasks) == {"coding", "rag"} and 0.7 < tasks["rag"] / 4000 < 0.8
    assert 0.22 < sum(p.stream for p in plans) / 4000 < 0.28
    assert 0.08 < sum(p.shadow for p in plans) / 4000 < 0.12
    assert plans == [CallPlanner(settings, load_corpus()).plan(i) for i in range(4000)]


def test_shadow_mirror_never_blocks_the_primary_and_drops_when_full(kafka_bootstrap, topic, tmp_path, monkeypatch):
    """A slow candidate on a one-slot mirror: the primary returns at once, the next sampled call is dropped."""
    import yaml

    from simulator.profiles import DEFAULT_PROFILES

    raw = yaml.safe_load(DEFAULT_PROFILES.read_text())
    raw.pop("defaults")
    never = {"rate_limited": 0.0, "server_error": 0.0, "stall": 0.0}
    raw["models"]["slow-candidate"] = {
        **raw["models"]["gpt-5.5"],
        "overhead_ms": {"median": 3000, "sigma": 0},
        "faults": never,
    }
    instant = {"overhead_ms": {"median": 0, "sigma": 0}, "output_tokens_per_s": 1e6, "reasoning_tokens_per_s": 1e6}
    raw["models"]["gpt-5.4"].update(faults=never, **instant)
    (tmp_path / "profiles.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("CUTOVER_KAFKA_BOOTSTRAP", kafka_bootstrap)
    monkeypatch.setenv("CUTOVER_SPANS_TOPIC", topic)
    corpus = load_corpus()
    task = corpus.tasks["simple"][0]
    settings = SimulatorSettings(simulator_port=free_port(), simulator_profiles=tmp_path / "profiles.yaml")
    inst = instrument(service_name="shadow-test", capture_content=False)
    try:
        with (
            SimulatorThread(settings) as sim,
            openai.OpenAI(base_url=sim.base_url, api_key="sim", max_retries=0) as client,
        ):
            mirror = ShadowMirror("slow-candidate", fraction=1.0, max_workers=1, max_queue=0)
            create = client.chat.completions.create
            with call_labels(task="simple"):
                first = mirror.call(create, model="gpt-5.4", messages=corpus.messages(task))
                after_first = mirror.stats
                second = mirror.call(create, model="gpt-5.4", messages=corpus.messages(task))
            mirror.close(wait=True)
    finally:
        inst.shutdown()
    assert first.choices[0].message.content == second.choices[0].message.content == task.answer
    assert after_first.mirrored == 1 and after_first.completed == 0  # the primary did not wait for its shadow
    stats = mirror.stats
    assert (stats.sampled, stats.mirrored, stats.dropped, stats.completed, stats.failed) == (2, 1, 1, 1, 0)
    spans = consume_spans(kafka_bootstrap, topic, 3)
    assert len(spans) == 3
    roles = Counter((s[semconv.REQUEST_MODEL], s.get(semconv.SHADOW_ROLE)) for s in spans)
    assert roles == {("gpt-5.4", "primary"): 1, ("slow-candidate", "shadow"): 1, ("gpt-5.4", None): 1}
    assert len({s[semconv.SHADOW_PAIR_ID] for s in spans if semconv.SHADOW_PAIR_ID in s}) == 1
    assert all(s[semconv.TASK] == "simple" for s in spans)


def test_duration_bound_run_starts_calls_at_the_target_rate(kafka_bootstrap, topic, simulator, monkeypatch):
    monkeypatch.setenv("CUTOVER_KAFKA_BOOTSTRAP", kafka_bootstrap)
    monkeypatch.setenv("CUTOVER_SPANS_TOPIC", topic)
    settings = LoadgenSettings(
        loadgen_base_url=simulator.base_url, loadgen_rate=20, loadgen_shadow=0, loadgen_timeout=2
    )
    summary = run_loadgen(settings, duration=1.0, capture_content=False)
    assert summary.calls == 20 and summary.shadow.mirrored == 0 and summary.spans_expected == 20  # 1 s at 20/s
    assert len(consume_spans(kafka_bootstrap, topic, 20)) == 20


@pytest.mark.parametrize(
    ("command", "variable", "value"),
    [
        ("loadgen", "CUTOVER_LOADGEN_MIX", "coding=1,poetry=2"),
        ("loadgen", "CUTOVER_LOADGEN_SHADOW", "1.5"),
        ("simulate", "CUTOVER_SIMULATOR_PORT", "70000"),
        ("simulate", "CUTOVER_SIMULATOR_PROFILES", "/nonexistent/profiles.yaml"),
    ],
)
def test_bad_settings_stop_with_one_line_and_exit_2(tmp_path, command, variable, value):
    done = subprocess.run(
        [sys.executable, "-m", "cutover.cli", command, *(["--calls", "1"] if command == "loadgen" else [])],
        env={"PATH": "/usr/bin:/bin", "CUTOVER_HOME": str(tmp_path), variable: value},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert variable in lines[0] or value in lines[0]


def test_cutover_simulate_serves_until_stopped(tmp_path):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "cutover.cli", "simulate", "--port", str(port), "--time-scale", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert f"127.0.0.1:{port}/v1" in process.stdout.readline()
        deadline = time.monotonic() + 20
        while True:
            try:
                with openai.OpenAI(
                    base_url=f"http://127.0.0.1:{port}/v1", api_key="sim", max_retries=0, timeout=5
                ) as client:
                    assert [m.id for m in client.models.list()] == ["gpt-5.4", "gpt-5.5", "gpt-5.5-pro", "gpt-4o-mini"]
                break
            except openai.APIConnectionError:
                assert time.monotonic() < deadline, process.stderr.read()
                time.sleep(0.1)
    finally:
        process.terminate()
        # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status tells why it ended
        assert process.wait(timeout=15) in (0, -signal.SIGTERM)
    assert "Traceback" not in process.stderr.read()


def test_shadow_mirror_with_the_async_client(kafka_bootstrap, topic, simulator, monkeypatch):
    import asyncio

    monkeypatch.setenv("CUTOVER_KAFKA_BOOTSTRAP", kafka_bootstrap)
    monkeypatch.setenv("CUTOVER_SPANS_TOPIC", topic)
    corpus = load_corpus()
    tasks = [t for items in corpus.tasks.values() for t in items][:12]

    async def calls() -> ShadowMirror:
        mirror = ShadowMirror("gpt-5.5", fraction=1.0, max_workers=1, max_queue=100)
        async with openai.AsyncOpenAI(base_url=simulator.base_url, api_key="sim", max_retries=0, timeout=5) as client:
            for i, task in enumerate(tasks):
                with call_labels(task=task.task):
                    stream = i % 2 == 1
                    extra: dict[str, Any] = (
                        {"stream": True, "stream_options": {"include_usage": True}} if stream else {}
                    )
                    reply = await mirror.acall(
                        client.chat.completions.create, model="gpt-5.4", messages=corpus.messages(task), **extra
                    )
                    if stream:
                        assert isinstance(reply, AsyncIterable)
                        async for _ in reply:
                            pass
            await mirror.aclose()
        return mirror

    inst = instrument(service_name="shadow-async-test", capture_content=False)
    try:
        mirror = asyncio.run(calls())
    finally:
        inst.shutdown()
    stats = mirror.stats
    assert (stats.sampled, stats.mirrored, stats.dropped) == (12, 12, 0) and stats.completed + stats.failed == 12
    spans = consume_spans(kafka_bootstrap, topic, 24)
    assert len(spans) == 24
    by_pair: dict[str, dict[str, dict]] = {}
    for s in spans:
        by_pair.setdefault(s[semconv.SHADOW_PAIR_ID], {})[s[semconv.SHADOW_ROLE]] = s
    assert len(by_pair) == 12
    for pair in by_pair.values():
        assert (
            pair["primary"][semconv.REQUEST_MODEL] == "gpt-5.4" and pair["shadow"][semconv.REQUEST_MODEL] == "gpt-5.5"
        )
        assert pair["primary"][semconv.TASK] == pair["shadow"][semconv.TASK]


def test_human_summary_names_models_roles_and_span_accounting(cutover_env, topic, simulator):
    env = {**cutover_env, "CUTOVER_SPANS_TOPIC": topic, "CUTOVER_LOADGEN_BASE_URL": simulator.base_url}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cutover.cli",
            "loadgen",
            "--calls",
            "12",
            "--rate",
            "0",
            "--shadow",
            "0.5",
            "--timeout",
            "2",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert "12 calls in" in out and "gpt-5.4" in out and "primary" in out
    mirrored = int(out.split(" mirrored")[0].rsplit(" ", 1)[-1])
    assert f"spans: {12 + mirrored} expected on Kafka, 0 dropped" in out
    assert ("gpt-5.5" in out and "shadow" in out) == (mirrored > 0)
