"""The memory options reach the allocators they are meant for (cutover/memory.py), in a fresh process each:
chDB's engine and its jemalloc are set up once per process, when the library loads."""

import json
import os
import subprocess
import sys
from typing import Any

from processors.schema import FREQUENTLY_WRITTEN, OLD_PARTS_LIFETIME_S, WIDE_PART_BYTES, migrate

_PROBE = """
import json, sys
from cutover.store import open_client
from cutover.memory import configure_process_allocators
import pyarrow as pa
client = open_client(sys.argv[1])
stats = str(client.query("SELECT stats FROM system.jemalloc_stats").result_rows[0][0])
caches = dict(client.query(
    "SELECT name, value FROM system.server_settings WHERE name IN ('mark_cache_size', 'primary_index_cache_size', 'max_thread_pool_free_size', "
    "'threadpool_local_fs_reader_pool_size')"
).result_rows)
configure_process_allocators(0.05)
pa.array([str(i) for i in range(100_000)])
print(json.dumps({
    "decay": next(line.split()[1] for line in stats.splitlines() if "opt.dirty_decay_ms:" in line),
    "caches": caches,
    "arrow": pa.default_memory_pool().backend_name,
}))
"""


def _probe(tmp_path, **env: str) -> dict[str, Any]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("CUTOVER_", "JE_MALLOC_CONF"))}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, f"chdb://{tmp_path / 'chdb'}"],
        env={**environment, **env},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return seen


def test_defaults_reach_chdb_jemalloc_caches_and_arrow(tmp_path):
    seen = _probe(tmp_path)
    assert seen["decay"] == "0"  # chDB's built-in is 5000; MALLOC_CONF would not have reached it
    assert seen["caches"] == {
        "mark_cache_size": str(16 * 2**20),
        "primary_index_cache_size": str(8 * 2**20),
        "max_thread_pool_free_size": "16",
        "threadpool_local_fs_reader_pool_size": "16",
    }
    assert seen["arrow"] == "jemalloc"


def test_settings_and_an_explicit_je_malloc_conf_are_applied(tmp_path):
    seen = _probe(tmp_path, CUTOVER_CHDB_MALLOC_CONF="dirty_decay_ms:250", CUTOVER_CHDB_CACHE_MB="16")
    assert seen["decay"] == "250"
    assert seen["caches"]["mark_cache_size"] == str(8 * 2**20)
    explicit = _probe(tmp_path, CUTOVER_CHDB_MALLOC_CONF="dirty_decay_ms:250", JE_MALLOC_CONF="dirty_decay_ms:777")
    assert explicit["decay"] == "777"


def test_migrated_tables_write_compact_parts_and_drop_replaced_parts_within_a_minute(ch_client, ch_database):
    migrate(ch_client, ch_database)
    engines = dict(
        ch_client.query(
            "SELECT name, engine_full FROM system.tables WHERE database = %(db)s", parameters={"db": ch_database}
        ).result_rows
    )
    assert f"min_bytes_for_wide_part = {WIDE_PART_BYTES}" in engines["llm_calls"]
    for table in FREQUENTLY_WRITTEN:
        assert f"old_parts_lifetime = {OLD_PARTS_LIFETIME_S}" in engines[table], table
