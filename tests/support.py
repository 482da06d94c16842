"""Helpers for tests that drive real subprocesses."""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

from pydantic_settings import BaseSettings

from cutover.settings import CutoverSettings

REPO = Path(__file__).resolve().parents[1]

_QUERY = """
import json, sys
from cutover.store import open_client
client = open_client(sys.argv[1])
result = client.query(sys.argv[2])
print(json.dumps([list(map(str, row)) for row in result.result_rows]))
"""


def query_chdb_in_subprocess(dsn: str, sql: str) -> list[list[str]]:
    """Run SQL on a chDB path this test process must not open itself (one engine per process)."""
    done = subprocess.run([sys.executable, "-c", _QUERY, dsn, sql], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise AssertionError(f"query failed: {done.stderr[-2000:]}")
    rows: list[list[str]] = json.loads(done.stdout.strip().splitlines()[-1])
    return rows


def settings_classes() -> set[type[BaseSettings]]:
    """Every settings class of the project: each component keeps its slice in a `*settings` module."""
    for package in ("cutover", "collectors", "processors", "dashboards", "simulator"):
        for info in pkgutil.walk_packages([str(REPO / package)], prefix=f"{package}."):
            if info.name.rsplit(".", 1)[-1].endswith("settings") or info.name.endswith(".local_kafka"):
                importlib.import_module(info.name)
    found: set[type[BaseSettings]] = set()
    queue: list[type[BaseSettings]] = [CutoverSettings]
    while queue:
        cls = queue.pop()
        found.add(cls)
        queue.extend(cls.__subclasses__())
    return found


def settings_variables() -> set[str]:
    return {f"CUTOVER_{name.upper()}" for cls in settings_classes() for name in cls.model_fields}


CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip
# Streamlit marks its root with the script's run state and the websocket's state; a page is drawn when the script
# has finished over a live connection, no placeholder skeleton is left, the main block holds an element and every
# chart has drawn its canvas or svg (vega-embed fills its container after the data arrives).
_DRAWN = """() => {
    const app = document.querySelector('[data-testid="stApp"]');
    return app !== null
        && app.dataset.testScriptState === 'notRunning'
        && app.dataset.testConnectionState === 'CONNECTED'
        && document.querySelector('[data-testid="stStatusWidget"], [data-testid^="stSkeleton"], [data-testid="stAppSkeleton"]') === null
        && document.querySelector('[data-testid="stMainBlockContainer"] [data-testid="stVerticalBlock"] > *') !== null
        && [...document.querySelectorAll('.vega-embed')].every((chart) => chart.querySelector('canvas, svg') !== null);
}"""


def inked_share(image_path: Path, left: int = 320) -> float:
    """Share of clearly non-white pixels right of Streamlit's sidebar (a loading skeleton is near-white grey)."""
    from PIL import Image

    image = Image.open(image_path).convert("L")
    histogram = image.crop((left, 0, *image.size)).histogram()
    return sum(histogram[:200]) / sum(histogram)


def screenshot(url: str, path: Path, height: int = 1800, timeout_s: float = 180) -> float:
    """A screenshot of a Streamlit page in the system's headless Chromium once the page is drawn; returns its inked share.

    Streamlit draws over a websocket after the page loads, which neither the load event nor Chromium's
    virtual time waits for; Playwright polls the page until Streamlit reports it is idle with content.
    """
    import shutil

    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    assert chromium, "headless Chromium is missing: run scripts/system-deps.sh"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    timeout_ms = timeout_s * 1000
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS, timeout=timeout_ms)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": height})
            page.set_default_timeout(timeout_ms)
            page.goto(url)
            try:
                page.wait_for_function(_DRAWN, polling=250)
            except PlaywrightError as error:
                page.screenshot(path=path, full_page=True)  # what the page showed instead, for the failure's reader
                state = page.evaluate(
                    "() => { const app = document.querySelector('[data-testid=\"stApp\"]');"
                    " return app ? JSON.stringify(app.dataset) : 'no stApp'; }"
                )
                raise AssertionError(f"{url} was not drawn within {timeout_s:.0f} s ({state}); see {path}") from error
            page.screenshot(path=path, full_page=True)
        finally:
            browser.close()
    return inked_share(path)
