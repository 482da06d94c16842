"""`cutover demo` as a new user meets it: live numbers for gpt-5.4 and gpt-5.5 soon after the
dashboard URL (the delay is printed; the wait is generous for a busy machine), a screenshot in headless Chromium, a clean Ctrl-C, and a second run that reuses
the broker and the data."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from cutover.local_kafka import free_port, port_open
from tests.support import query_chdb_in_subprocess, screenshot

REPO = Path(__file__).resolve().parents[1]
SHOT = REPO / "artifacts" / "screenshots" / "demo-overview.png"


def start_demo(env: dict[str, str], *args: str) -> tuple[subprocess.Popen[str], str]:
    """Start `cutover demo` and return it with the dashboard URL it prints."""
    demo = subprocess.Popen(
        [sys.executable, "-m", "cutover.cli", "demo", *args],
        env=env, cwd=env["CUTOVER_HOME"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    output = demo.stdout
    assert output is not None  # stdout=PIPE
    selector = selectors.DefaultSelector()
    selector.register(output, selectors.EVENT_READ)
    seen, deadline = [], time.monotonic() + 240  # a first run fetches the broker's jars
    while time.monotonic() < deadline:
        if selector.select(timeout=1):
            line = output.readline()
            seen.append(line)
            if line.startswith("dashboard: "):
                return demo, line.split()[1]
        assert demo.poll() is None, "".join(seen) + output.read()
    demo.kill()
    raise AssertionError("no dashboard URL printed:\n" + "".join(seen))


def calls_per_model(url: str) -> dict[str, int]:
    """The Overview's `calls` tile per model, read from the rendered page (Streamlit's agent API)."""
    request = urllib.request.Request(
        f"{url}/_stcore/agent/interact", data=b"{}", headers={"content-type": "application/json"}
    )
    tree = json.loads(urllib.request.urlopen(request, timeout=60).read())["tree"]
    found: dict[str, int] = {}
    model = None

    def walk(node: object) -> None:
        nonlocal model
        if isinstance(node, dict):
            props = node.get("props", {})
            if node.get("type") == "subheader":
                model = props.get("body", "").removesuffix(" (B)")
            elif node.get("type") == "metric" and props.get("label") == "calls" and model:
                found[model] = int(props["value"].replace(",", ""))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(tree)
    return found


def stop(demo: subprocess.Popen[str]) -> str:
    demo.send_signal(signal.SIGINT)
    output, _ = demo.communicate(timeout=120)
    assert demo.returncode == 0, output
    return output


def test_demo_shows_both_models_live_stops_cleanly_and_reuses_its_state(tmp_path):
    ports = {name: free_port() for name in ("kafka", "controller", "simulator", "dashboard")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUTOVER_")}
    env.update(
        CUTOVER_HOME=str(tmp_path),
        CUTOVER_KAFKA_BOOTSTRAP=f"127.0.0.1:{ports['kafka']}",
        CUTOVER_KAFKA_CONTROLLER_PORT=str(ports["controller"]),
        CUTOVER_SIMULATOR_PORT=str(ports["simulator"]),
        CUTOVER_DASHBOARD_PORT=str(ports["dashboard"]),
        CUTOVER_DASHBOARD_AGENT_API="true",
    )
    demo, url = start_demo(env)
    try:
        printed = time.monotonic()
        seen: dict[str, int] = {}
        while not (seen.get("gpt-5.4", 0) > 0 and seen.get("gpt-5.5", 0) > 0):
            assert time.monotonic() - printed < 240, f"no live data for both models within 240 s: {seen}"
            assert demo.poll() is None, demo.stdout.read()
            time.sleep(2)
            seen = calls_per_model(url)
        live_after = time.monotonic() - printed
        print(f"both models live {live_after:.0f} s after the URL was printed: {seen}")
        assert screenshot(url, SHOT) > 0.01, "the screenshot's page area is blank"
    finally:
        output = stop(demo)
    assert "demo stopped" in output
    assert not any(port_open("127.0.0.1", port) for port in ports.values()), "a demo process is still listening"

    stored = query_chdb_in_subprocess(f"chdb://{tmp_path / 'chdb'}", "SELECT count() FROM cutover.llm_calls FINAL")
    assert int(stored[0][0]) >= sum(seen.values())
    # The demo runs the llm_judge against the simulator, its spend apart from the application's.
    judged = query_chdb_in_subprocess(
        f"chdb://{tmp_path / 'chdb'}",
        "SELECT (SELECT count() FROM cutover.judge_usage WHERE status = 'ok'), "
        "(SELECT count() FROM cutover.llm_calls FINAL WHERE model = 'gpt-4o-mini')",
    )
    print(f"judge requests during the demo: {judged[0][0]}")
    assert int(judged[0][0]) > 0 and int(judged[0][1]) == 0

    cluster = (tmp_path / "kafka" / "data" / "meta.properties").read_text()
    again, url = start_demo(env, "--seconds", "5")
    output = again.communicate(timeout=120)[0]
    assert again.returncode == 0, output
    assert (tmp_path / "kafka" / "data" / "meta.properties").read_text() == cluster, (
        "the broker's storage was formatted anew"
    )
    restored = query_chdb_in_subprocess(f"chdb://{tmp_path / 'chdb'}", "SELECT count() FROM cutover.llm_calls FINAL")
    assert int(restored[0][0]) >= int(stored[0][0])
