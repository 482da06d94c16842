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
    return json.loads(done.stdout.strip().splitlines()[-1])


def settings_classes() -> set[type[BaseSettings]]:
    """Every settings class of the project: each component keeps its slice in a `*settings` module."""
    for package in ("cutover", "collectors", "processors", "dashboards", "simulator"):
        for info in pkgutil.walk_packages([str(REPO / package)], prefix=f"{package}."):
            if info.name.rsplit(".", 1)[-1].endswith("settings") or info.name.endswith(".local_kafka"):
                importlib.import_module(info.name)
    found, queue = set(), [CutoverSettings]
    while queue:
        cls = queue.pop()
        found.add(cls)
        queue.extend(cls.__subclasses__())
    return found


def settings_variables() -> set[str]:
    return {f"CUTOVER_{name.upper()}" for cls in settings_classes() for name in cls.model_fields}
