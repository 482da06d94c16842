"""`cutover demo`: the whole pipeline on this machine, as separate processes under one supervisor.

    local Kafka broker ─ simulator ─ load generator (gpt-5.4 primary, 10% shadow to gpt-5.5)
        ─▶ Kafka ─▶ processor + dashboard (one process on chDB; two on a ClickHouse server)

Ctrl-C (or SIGTERM) stops every process the demo started, the broker included if the demo
started it; broker data and the ClickHouse store stay for the next run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import NoReturn

from cutover.local_kafka import BrokerSettings, LocalBroker, port_open
from cutover.settings import load

STARTUP_TIMEOUT_S = 120.0


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path


@dataclass
class Supervisor:
    """Starts `cutover <command>` children, watches them, and stops them in reverse order."""

    logs: Path
    env: dict[str, str]
    children: list[Child] = field(default_factory=list)

    def spawn(self, name: str, *args: str) -> Child:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = self.logs / f"{name}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "cutover.cli", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,  # Ctrl-C reaches the supervisor only; it stops children in order
            )
        child = Child(name, process, log)
        self.children.append(child)
        return child

    def wait_until(self, ready: Callable[[], bool], what: str, timeout: float = STARTUP_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            self.check_alive()
            if time.monotonic() > deadline:
                raise DemoError(f"{what} was not ready in {timeout:.0f}s")
            time.sleep(0.25)

    def check_alive(self) -> None:
        for child in self.children:
            code = child.process.poll()
            if code is not None:
                tail = child.log.read_text(errors="replace")[-1500:]
                raise DemoError(f"{child.name} exited with code {code}; last lines of {child.log}:\n{tail}")

    def stop(self, timeout: float = 45.0) -> None:  # a stalled call finishes at its 30 s client timeout
        for child in reversed(self.children):
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
                try:
                    child.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    child.process.kill()
                    child.process.wait()
        self.children.clear()


class DemoError(RuntimeError):
    """A demo process failed to start or died; the message carries its log's tail."""


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            status: int = response.status  # urlopen is typed as returning Any
            return status == 200
    except OSError:
        return False


def _demo_judge(env: dict[str, str], simulator_url: str) -> dict[str, str]:
    """The llm_judge on, against the simulator's judge, with a small budget the demo reaches in minutes."""
    from processors.settings import ProcessorSettings

    if "CUTOVER_HALLUCINATION_CHECKS" in env:  # the user chose the checks
        return {}
    defaults = ProcessorSettings.model_fields["hallucination_checks"].default
    return {
        "CUTOVER_HALLUCINATION_CHECKS": f"{defaults},llm_judge",
        "CUTOVER_JUDGE_BASE_URL": env.get("CUTOVER_JUDGE_BASE_URL", simulator_url),
        "CUTOVER_JUDGE_API_KEY_ENV": "CUTOVER_DEMO_JUDGE_KEY",
        "CUTOVER_DEMO_JUDGE_KEY": "simulator",
        "CUTOVER_JUDGE_SAMPLE_RATE": env.get("CUTOVER_JUDGE_SAMPLE_RATE", "0.25"),
        "CUTOVER_JUDGE_DAILY_BUDGET_USD": env.get("CUTOVER_JUDGE_DAILY_BUDGET_USD", "0.1"),
    }


def run_demo(stop_after_s: float | None = None) -> None:
    """Run until Ctrl-C/SIGTERM (or `stop_after_s`, for tests); always clean up what was started."""
    from dashboards.settings import DashboardSettings
    from simulator.settings import SimulatorSettings

    broker_settings = load(BrokerSettings)
    simulator = load(SimulatorSettings)
    dashboard = load(DashboardSettings)
    broker = LocalBroker.from_settings(broker_settings)
    env = dict(os.environ, CUTOVER_HOME=str(broker_settings.home.resolve()))
    env.setdefault("CUTOVER_CAPTURE_CONTENT", "true")  # the demo shows hallucination checks, which need content
    env.update(_demo_judge(env, f"http://{simulator.simulator_host}:{simulator.simulator_port}/v1"))
    supervisor = Supervisor(logs=broker_settings.home.resolve() / "logs", env=env)

    def terminate(signum: int, frame: FrameType | None) -> NoReturn:  # SIGTERM behaves like Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    started_broker = False
    try:
        started_broker = broker.start()
        print(f"kafka {'started' if started_broker else 'already running'} on {broker.bootstrap}", flush=True)
        supervisor.spawn("simulator", "simulate")
        supervisor.wait_until(lambda: port_open(simulator.simulator_host, simulator.simulator_port), "the simulator")
        if not dashboard.uses_chdb:
            supervisor.spawn("processor", "process")
        # On chDB the dashboard process also runs the processor: one engine per data path.
        supervisor.spawn("dashboard", "dashboard")
        url = f"http://{dashboard.dashboard_host}:{dashboard.dashboard_port}"
        supervisor.wait_until(lambda: _http_ok(f"{url}/_stcore/health"), "the dashboard")
        supervisor.spawn(  # without --calls or --duration it runs until the demo stops it
            "loadgen",
            "loadgen",
            "--base-url", f"http://{simulator.simulator_host}:{simulator.simulator_port}/v1",
            # Calls take seconds (p95 ~12 s on coding), so reaching the rate needs many in flight.
            "--rate", "8",
            "--concurrency", "64",
            "--shadow", "0.1",
            "--model", "gpt-5.4",
            "--shadow-model", "gpt-5.5",
        )  # fmt: skip
        print(f"dashboard: {url}  (logs in {supervisor.logs}; Ctrl-C stops the demo)", flush=True)
        deadline = None if stop_after_s is None else time.monotonic() + stop_after_s
        while deadline is None or time.monotonic() < deadline:
            supervisor.check_alive()
            time.sleep(1)
    except KeyboardInterrupt:
        print("\nstopping the demo…", flush=True)
    finally:
        supervisor.stop()
        if started_broker:
            broker.stop()
        print("demo stopped; Kafka data and the ClickHouse store are kept for the next run", flush=True)
