"""Helpers for tests that drive real subprocesses."""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys
import time
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
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--virtual-time-budget=20000",
]  # fmt: skip


def inked_share(image_path: Path, left: int = 320) -> float:
    """Share of clearly non-white pixels right of Streamlit's sidebar (a loading skeleton is near-white grey)."""
    from PIL import Image

    image = Image.open(image_path).convert("L")
    histogram = image.crop((left, 0, *image.size)).histogram()
    return sum(histogram[:200]) / sum(histogram)


def screenshot(url: str, path: Path, height: int = 1800, attempts: int = 6, min_ink: float = 0.002) -> float:
    """A headless-Chromium screenshot of a Streamlit page; returns its inked share.

    Streamlit draws over a websocket after the page loads, which Chromium's virtual time does not
    wait for; on a busy machine the first capture can still be the loading skeleton (or a blank
    page while a slow script runs), so retry, waiting longer each time.
    """
    import shutil
    import tempfile

    from PIL import Image

    chromium = shutil.which("chromium")
    assert chromium, "headless Chromium is missing: run scripts/system-deps.sh"
    path.parent.mkdir(parents=True, exist_ok=True)
    ink = 0.0
    for attempt in range(attempts):
        time.sleep(5 * attempt)
        path.unlink(missing_ok=True)
        with tempfile.TemporaryDirectory() as profile:
            done = subprocess.run(
                [chromium, *CHROMIUM_FLAGS, f"--window-size=1400,{height}", f"--user-data-dir={profile}", f"--screenshot={path}", url],
                capture_output=True, text=True, timeout=180,
            )  # fmt: skip
        assert path.is_file(), done.stderr[-2000:]
        assert Image.open(path).size == (1400, height), done.stderr[-2000:]
        ink = inked_share(path)
        if ink >= min_ink:
            break
    return ink
