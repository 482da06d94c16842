"""Helpers for tests that drive real subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys

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
