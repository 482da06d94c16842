"""Every major GenAI instrumentation, as a real app runs it, lands one right row per call.

Per library (installed from PyPI into its own venv by scripts/interop.py): the real `openai`
SDK, instrumented by it, calls `cutover simulate` (two models, half streamed, rate limits,
timeouts, refusals, content capture on) and exports OTLP/HTTP traces and logs to `cutover
collect`; the processor writes the rows from the broker into chDB. Each row is compared with
what the simulator returned to the client (the driver's ground truth, joined by trace id).
What a library does not record at all (`GIVES`: TTFT, an API refusal's text) is asserted
absent; the README's table row for each library must equal the one rendered from what its
run observed (also written to artifacts/interop.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from cutover.local_kafka import free_port, port_open
from processors.pricing import PriceBook
from processors.service import ProcessorService
from simulator.outcomes import REFUSALS
from tests.test_collectors_receiver import start_collect, stop
from tests.test_processor_service import settings_for

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
from interop import LIBRARIES  # type: ignore[import-not-found]  # noqa: E402  # scripts/ holds scripts, not a package

CALLS = 40
ARTIFACT = REPO / "artifacts" / "interop.md"


@dataclass(frozen=True)
class Gives:
    """What a library records beyond model, input/output tokens and errors (which it must get right).

    Each capability is (on calls that did not stream, on streamed calls).
    """

    ttft: bool  # a time to first token on streamed calls
    cached: tuple[bool, bool]  # cached input tokens (else 0, and the call is billed at the full input rate)
    reasoning: tuple[bool, bool]  # reasoning tokens (billed as output either way)
    refusal: tuple[bool, bool]  # the text of an API refusal (`message.refusal` / `delta.refusal`)


BOTH, SYNC, NEITHER = (True, True), (True, False), (False, False)
# Library -> (README name, what it records); the run must observe exactly this.
GIVES: dict[str, tuple[str, Gives]] = {
    "official": ("official `opentelemetry-instrumentation-genai-openai` 1.3b0", Gives(True, BOTH, BOTH, BOTH)),
    "openai-v2": (
        "`opentelemetry-instrumentation-openai-v2` 2.4b0, event mode",
        Gives(False, NEITHER, NEITHER, NEITHER),
    ),
    "openllmetry-0.62": ("OpenLLMetry 0.62.4", Gives(True, BOTH, SYNC, SYNC)),
    "openllmetry-0.47": ("OpenLLMetry 0.47.5", Gives(True, BOTH, SYNC, SYNC)),
    "openlit": ("OpenLIT 1.45.0", Gives(True, BOTH, NEITHER, NEITHER)),
    "openinference": ("OpenInference 0.1.66", Gives(True, BOTH, BOTH, BOTH)),
    "logfire": ("Logfire 5.4.0", Gives(False, BOTH, BOTH, BOTH)),
}

# What every library must get right on every call (the table's "model, tokens, cost, error" column);
# tokens and cost as far as the library reports them (a cached count it drops is in its own column).
CORE = frozenset({"rows", "model", "is_error", "error_type", "is_timeout", "tokens", "cost", "price_source"})


def paths(recorded: tuple[bool, bool]) -> str:
    return {BOTH: "yes", SYNC: "calls that did not stream only", NEITHER: "no"}.get(recorded, "streamed calls only")


def table_row(library: str, landed: int, core_right: bool, gives: Gives) -> str:
    """The README table row of one library, as its run observed it."""
    cached = paths(gives.cached) + ("" if gives.cached == BOTH else " (over-billed)")
    return (
        f"| {GIVES[library][0]} | {landed}/{CALLS} | {'right' if core_right else 'WRONG'} "
        f"| {'yes' if gives.ttft else 'not recorded'} | {cached} | {paths(gives.reasoning)} "
        f"| {paths(gives.refusal)} |"
    )


def record_row(library: str, row: str) -> None:
    """Keeps artifacts/interop.md's row of this library current (the table to paste into the README)."""
    ARTIFACT.parent.mkdir(exist_ok=True)
    lines = ARTIFACT.read_text().splitlines() if ARTIFACT.exists() else []
    prefix = f"| {GIVES[library][0]} |"
    lines = [line for line in lines if not line.startswith(prefix)] + [row]
    ARTIFACT.write_text("\n".join(sorted(lines)) + "\n")


def start_simulator(env: dict[str, str], tmp_path: Path) -> tuple[subprocess.Popen, str]:
    profiles = yaml.safe_load((REPO / "simulator" / "profiles.yaml").read_text())
    for profile in profiles["models"].values():  # enough errors, timeouts and refusals in 40 calls
        profile["faults"] = {"rate_limited": 0.08, "server_error": 0.0, "stall": 0.05}
        profile["refusal"] = dict(profile["refusal"], rate={k: 0.15 for k in profile["refusal"]["rate"]})
        # cached and reasoning tokens on many calls, so a library that drops them is caught (and mispriced)
        profile["reasoning_share"] = {k: 0.3 for k in profile["reasoning_share"]}
        profile["cache_hit_rate"] = 0.5
    path = tmp_path / "profiles.yaml"
    path.write_text(yaml.safe_dump(profiles))
    port = free_port()
    log = (tmp_path / "simulate.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "cutover.cli", "simulate"],
        env=dict(
            env,
            CUTOVER_SIMULATOR_PORT=str(port),
            CUTOVER_SIMULATOR_PROFILES=str(path),
            CUTOVER_SIMULATOR_TIME_SCALE="0.2",
        ),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while not port_open("127.0.0.1", port):
        assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "simulate.log").read_text()
        time.sleep(0.2)
    return process, f"http://127.0.0.1:{port}/v1"


@pytest.mark.slow
@pytest.mark.parametrize("library", list(LIBRARIES))
def test_every_call_lands_as_one_right_row(
    library, kafka_broker, kafka_bootstrap, topic, ch_client, ch_database, cutover_env, tmp_path
):
    gives = GIVES[library][1]
    logs_topic = f"logs_{uuid.uuid4().hex[:8]}"
    kafka_broker.create_topics([logs_topic])
    simulator, simulator_url = start_simulator(cutover_env, tmp_path)
    collect, traces_url = start_collect(
        dict(cutover_env, CUTOVER_SPANS_TOPIC=topic, CUTOVER_LOGS_TOPIC=logs_topic),
        tmp_path / "collect.log",
        max_body=20 * 1024 * 1024,
    )
    try:
        driver = subprocess.run(
            [
                sys.executable,
                str(REPO / "scripts" / "interop.py"),
                "run",
                library,
                "--simulator",
                simulator_url,
                "--collector",
                traces_url.removesuffix("/v1/traces"),
                "--calls",
                str(CALLS),
            ],
            capture_output=True,
            text=True,
            timeout=1800,
        )
        assert driver.returncode == 0, driver.stderr[-3000:]
        truths = [json.loads(line) for line in driver.stdout.splitlines()]
        assert len(truths) == CALLS
    finally:
        stop(collect)
        stop(simulator)

    service = ProcessorService(
        settings_for(
            kafka_bootstrap, topic, ch_database, f"g_{topic}", logs_topic=logs_topic, logs_join_interval_s=0.5
        ),
        client=ch_client,
    )
    service.start()
    query = (
        "SELECT trace_id, count(), any(model), any(input_tokens), any(cached_input_tokens), any(output_tokens),"
        " any(reasoning_tokens), any(cost_usd), any(price_source), any(is_error), any(error_type), any(is_timeout),"
        " any(is_refusal), any(ttft_ms), any(latency_ms), any(input_text), any(output_text), any(content_captured)"
        f" FROM {ch_database}.llm_calls FINAL GROUP BY trace_id"
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            rows = {r[0]: r[1:] for r in ch_client.query(query).result_rows}
            with_text = sum(1 for r in rows.values() if r[15] or r[16])
            if len(rows) >= CALLS and with_text >= sum(1 for t in truths if not t["error_type"]):
                break
            if time.monotonic() > deadline:
                break
            time.sleep(1)
    finally:
        service.stop()

    book = PriceBook.load()
    problems: list[str] = []
    core_right = True
    # (case, sync/stream) -> observed "recorded?" values; one library must be consistent across its calls.
    seen: dict[tuple[str, bool], set[bool]] = {}
    landed = 0
    for truth in truths:
        row = rows.get(truth["trace_id"])
        where = f"call {truth['index']} ({'stream' if truth['stream'] else 'sync'}, {truth['error_type'] or 'ok'})"
        case = truth["error_type"] or ("api_refusal" if truth.get("refusal") else "ok")
        seen.setdefault((case, truth["stream"]), set())
        if row is None:
            problems.append(f"{where}: no row")
            continue
        landed += 1
        (count, model, inp, cached, out, reasoning, cost, source, is_error, error_type, is_timeout) = row[:11]
        is_refusal, ttft, latency, input_text, output_text, captured = row[11:]
        expect = {
            "rows": (count, 1),
            "model": (model, truth["model"]),
            "is_error": (bool(is_error), bool(truth["error_type"])),
            "error_type": (error_type, truth["error_type"]),
            "is_timeout": (bool(is_timeout), truth["error_type"] == "APITimeoutError"),
        }
        if not truth["error_type"]:
            path = 1 if truth["stream"] else 0
            api_refusal = bool(truth["refusal"])
            recorded = gives.refusal[path] or not api_refusal
            if api_refusal:
                seen[(case, truth["stream"])].add(output_text == truth["refusal"])
            for name, got in (("cached_tokens", cached), ("reasoning_tokens", reasoning)):
                if truth[name]:
                    seen.setdefault((name, truth["stream"]), set()).add(got == truth[name])
            # what the library reports: a count it does not record is 0, and the call billed accordingly
            reported = (
                truth["input_tokens"],
                truth["cached_tokens"] if gives.cached[path] else 0,
                truth["output_tokens"],
                truth["reasoning_tokens"] if gives.reasoning[path] else 0,
            )
            priced = book.cost(truth["model"], datetime.now(UTC).date(), *reported)[0]
            expect.update(
                tokens=((inp, cached, out, reasoning), reported),
                cost=(None if cost is None else Decimal(cost), priced),
                price_source=(source, "book"),
                # an API refusal whose text the library does not record is absent, so not counted
                is_refusal=(bool(is_refusal), (api_refusal and recorded) or truth["text"] in REFUSALS),
                content_captured=(bool(captured), True),
                output_text=(output_text, (truth["text"] or truth["refusal"]) if recorded else ""),
                prompt_in_input=(truth["prompt"] in input_text, True),
            )
            if truth["stream"]:
                seen[("ttft", True)] = seen.get(("ttft", True), set()) | {ttft is not None}
                want_ttft = ttft is not None and 0 < ttft <= latency if gives.ttft else ttft is None
                expect["ttft" if gives.ttft else "ttft_absent"] = (want_ttft, True)
        wrong = [name for name, (got, want) in expect.items() if got != want]
        core_right = core_right and not CORE.intersection(wrong)
        problems.extend(f"{where}: {name} is {expect[name][0]!r}, expected {expect[name][1]!r}" for name in wrong)
    # The run must exercise every case on both paths, or a capability would be claimed unseen.
    for case in ("ok", "api_refusal", "RateLimitError", "APITimeoutError"):
        for stream in (False, True):
            if (case, stream) not in seen:
                problems.append(f"no {'streamed' if stream else 'sync'} call with outcome {case}")
    for tokens in ("cached_tokens", "reasoning_tokens"):
        for stream in (False, True):
            if (tokens, stream) not in seen:
                problems.append(f"no {'streamed' if stream else 'sync'} call with {tokens}: not exercised")

    def both(case: str) -> tuple[bool, bool]:
        return (seen.get((case, False)) == {True}, seen.get((case, True)) == {True})

    observed = Gives(
        ttft=seen.get(("ttft", True)) == {True},
        cached=both("cached_tokens"),
        reasoning=both("reasoning_tokens"),
        refusal=both("api_refusal"),
    )
    row_text = table_row(library, landed, core_right, observed)
    record_row(library, row_text)
    assert not problems, f"{library}: {len(problems)} problems:\n" + "\n".join(problems[:40])
    assert observed == gives
    assert row_text in (REPO / "README.md").read_text().splitlines(), f"README's row for {library} is not {row_text}"


def test_readme_table_has_one_row_per_library_as_declared() -> None:
    """The README's table is GIVES rendered (the slow test above holds each row to its observed run)."""
    readme = (REPO / "README.md").read_text().splitlines()
    rows = [line for line in readme if line.startswith("| ") and any(f"| {n} |" in line for n, _ in GIVES.values())]
    assert rows == [table_row(library, CALLS, True, gives) for library, (_, gives) in GIVES.items()]
