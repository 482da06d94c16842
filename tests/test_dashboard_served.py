"""`cutover dashboard` served for real: each page loaded in headless Chromium (screenshots under
artifacts/screenshots/) and read back through Streamlit's agent API to prove the charts have data."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from cutover.local_kafka import free_port
from tests.support import screenshot

REPO = Path(__file__).resolve().parents[1]
SHOTS = REPO / "artifacts" / "screenshots"
# url path -> the least number of charts with their own data the page must show (layered and
# concatenated charts carry their data in their parts, which the agent API does not count)
PAGES = {"": 2, "latency": 5, "cost": 4, "quality": 2, "shadow": 2, "readiness": 2, "alerts": 0, "sql": 0}
# The Latency page is shot taller: its timeout advisor table, the number an SRE pastes into an incident, is at the bottom.
HEIGHT = {"latency": 2600, "readiness": 3600}
# The readiness page is opened on six hours: at the seed's rate the last hour holds fewer pairs per task than
# CUTOVER_DASHBOARD_SCORECARD_MIN_PAIRS, and the shot should show projected tasks and real verdicts.
QUERY = {"readiness": "range=Last+6+hours"}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A seeded chDB path served by `cutover dashboard` in a subprocess of its own."""
    home = tmp_path_factory.mktemp("dashboard")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUTOVER_")}
    port = free_port()
    env.update(
        CUTOVER_HOME=str(home),
        CUTOVER_CLICKHOUSE_URL=f"chdb://{home / 'chdb'}",
        CUTOVER_DASHBOARD_PORT=str(port),
        CUTOVER_DASHBOARD_AGENT_API="true",
        CUTOVER_BUDGET_USD="500",
    )
    seeded = subprocess.run(
        [sys.executable, "-m", "tests.dashboard_seed", env["CUTOVER_CLICKHOUSE_URL"], "cutover", "20000", "6"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert seeded.returncode == 0, seeded.stderr[-2000:]
    log = open(home / "dashboard.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "cutover.cli", "dashboard", "--no-processor"], cwd=REPO, env=env, stdout=log, stderr=log
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240
    while True:
        try:
            if urllib.request.urlopen(f"{base}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            pass
        assert server.poll() is None and time.monotonic() < deadline, (home / "dashboard.log").read_text()[-3000:]
        time.sleep(0.5)
    yield base
    server.terminate()
    server.wait(timeout=30)
    log.close()


def agent(base: str, page: str) -> dict:
    import json
    from urllib.parse import parse_qs

    request = urllib.request.Request(
        f"{base}/_stcore/agent/interact",
        data=json.dumps({"page": page, "query_params": parse_qs(QUERY.get(page, ""))}).encode(),
        headers={"content-type": "application/json"},
    )
    answer: dict[Any, Any] = json.loads(urllib.request.urlopen(request, timeout=120).read())
    return answer


def nodes(tree: object, kind: str) -> list[dict]:
    found = []
    if isinstance(tree, dict):
        if tree.get("type") == kind:
            found.append(tree)
        for value in tree.values():
            found += nodes(value, kind)
    elif isinstance(tree, list):
        for value in tree:
            found += nodes(value, kind)
    return found


@pytest.mark.parametrize("page", list(PAGES))
def test_page_is_served_with_non_empty_charts_and_a_screenshot(served, page):
    snapshot = agent(served, page)
    assert snapshot["page"]["url_path"] == page
    assert not nodes(snapshot["tree"], "exception"), nodes(snapshot["tree"], "exception")
    charts = nodes(snapshot["tree"], "altair_chart") + nodes(snapshot["tree"], "vega_lite_chart")
    with_data = [c for c in charts if c.get("data", {}).get("row_count", 0) > 0]
    assert len(with_data) >= PAGES[page], f"{page}: {len(with_data)} of {len(charts)} charts have data"
    if page == "":  # the Overview
        assert len(nodes(snapshot["tree"], "metric")) >= 39  # 13 tiles x 3 models
    if page == "latency":  # the advisor is a static table (a dataframe's canvas is blank in a screenshot)
        assert not nodes(snapshot["tree"], "dataframe"), nodes(snapshot["tree"], "dataframe")
        assert nodes(snapshot["tree"], "table"), sorted({n.get("type") for n in nodes_any(snapshot["tree"])})

    if page == "readiness":  # the projection's sentence, its table and the scorecard's table
        texts = [
            str(n) for n in nodes_any(snapshot["tree"]) if "If gpt-5.5 took 100% of gpt-5.4" in str(n.get("body", ""))
        ]
        assert texts, "no projection sentence"
        assert len(nodes(snapshot["tree"], "table")) >= 2, sorted({n.get("type") for n in nodes_any(snapshot["tree"])})

    shot = SHOTS / f"{page or 'overview'}.png"
    least = 0.01 if PAGES[page] else 0.002
    url = f"{served}/{page}" + (f"?{QUERY[page]}" if page in QUERY else "")
    ink = screenshot(url, shot, height=HEIGHT.get(page, 1800))
    assert ink > least, f"the page area is blank ({ink:.2%} non-white pixels)"


def nodes_any(tree: object) -> list[dict]:
    return [n for n in (tree if isinstance(tree, list) else [tree]) if isinstance(n, dict)] + [
        found
        for value in (tree.values() if isinstance(tree, dict) else tree if isinstance(tree, list) else [])
        for found in nodes_any(value)
    ]


def test_the_overview_answers_at_its_name(served):
    """`/overview` opens the Overview (its tiles), not Streamlit's "Page not found" dialog over it."""
    snapshot = agent(served, "overview")
    assert not nodes(snapshot["tree"], "exception")
    assert "page_not_found" not in json_text(snapshot) and "Page not found" not in json_text(snapshot)
    assert len(nodes(snapshot["tree"], "metric")) >= 39, snapshot["page"]


def json_text(value: object) -> str:
    import json

    return json.dumps(value)
