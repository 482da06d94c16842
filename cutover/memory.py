"""Native memory of a long-running process that embeds chDB: each allocator told to give freed pages back.

Four allocators hold a processor's memory, and each keeps what it freed unless told otherwise
(bench/memory.py prints them side by side):

- chDB's engine has its own jemalloc, linked into `_chdb.abi3.so` with the `je_` prefix, so it
  reads `JE_MALLOC_CONF`, never `MALLOC_CONF`, and only once: when the library loads (its
  static constructors allocate). Its built-in `dirty_decay_ms:5000` kept ~100-300 MB of freed
  insert and merge buffers resident next to ~50 MB allocated.
- chDB's caches (marks, primary index, skip-index marks, query conditions, compiled
  expressions) default to 5 GB caps sized for a server; they fill with the data read, so over a
  long retention they grow with the stream. `chdb_engine_options` caps them, and the threads
  its pools may keep;
  chDB takes server settings as `?name=value` in its connection string (read at engine start).
- glibc malloc (Python's large objects, kafka-python's fetch buffers) raises its mmap threshold
  after each large free (up to 32 MB), so later large buffers come from its heaps, which then
  stay fragmented; a fixed threshold keeps large buffers in mmap (returned on free), and
  `malloc_trim` returns the free pages inside the heaps.
- Arrow's default pool (mimalloc) reserved a 1 GB arena and kept ~45-60 MB of it resident for
  ~25 MB of peak use; its jemalloc pool with decay 0 returns pages on free.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
import threading
import time

log = logging.getLogger("cutover.memory")

JEMALLOC_ENV = "JE_MALLOC_CONF"  # chDB's jemalloc is built with the `je_` prefix
# Large allocations (>= this) go to mmap and back to the system on free; glibc's default moves
# this threshold up to 32 MB after large frees, after which such buffers fragment its heaps.
_MMAP_THRESHOLD = 256 * 1024
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

_lock = threading.Lock()
_configured = False


def chdb_engine_options(cache_mb: int, pool_threads: int) -> dict[str, int]:
    """chDB server settings: its caches capped at `cache_mb` in all (half for marks, a quarter for
    primary indexes, the rest for skip-index marks, query conditions and compiled expressions),
    and `pool_threads` threads at most in each of its pools that grow under load and keep their
    threads: the global pool's idle threads (default 1,000), the file reader, mark loading,
    prefetch, writer and I/O pools (50-100 each) and part loading/cleaning (32-128): a pool whose
    tasks queue up grows to its size and keeps the threads. (A burst of ~100 threads created at
    once, 36 -> 161, still happens with these caps in bench/memory.py: its pool is not found yet.)"""
    total = cache_mb * 2**20
    pools = (
        "max_thread_pool_free_size",
        "threadpool_local_fs_reader_pool_size",
        "load_marks_threadpool_pool_size",
        "prefetch_threadpool_pool_size",
        "threadpool_writer_pool_size",
        "max_io_thread_pool_size",
        "max_active_parts_loading_thread_pool_size",
        "max_outdated_parts_loading_thread_pool_size",
        "max_parts_cleaning_thread_pool_size",
    )
    return {
        **dict.fromkeys(pools, pool_threads),
        "mark_cache_size": total // 2,
        "primary_index_cache_size": total // 4,
        "index_mark_cache_size": total // 16,
        "query_condition_cache_size": total // 16,
        "compiled_expression_cache_size": total // 16,
        "vector_similarity_index_cache_size": total // 16,
    }


def configure_chdb_allocator(malloc_conf: str) -> None:
    """Hand chDB's jemalloc its options; a no-op once chDB is loaded (it read them then).

    An explicit `JE_MALLOC_CONF` in the environment wins."""
    if not malloc_conf or JEMALLOC_ENV in os.environ:
        return
    if "chdb" in sys.modules:
        log.warning(
            "chDB was loaded before its allocator options could be set; %s=%s not applied", JEMALLOC_ENV, malloc_conf
        )
        return
    os.environ[JEMALLOC_ENV] = malloc_conf


def configure_process_allocators(trim_interval_s: float) -> None:
    """glibc malloc: a fixed mmap threshold and, every `trim_interval_s` (0 = never), its free
    pages returned; Arrow: its jemalloc pool with freed pages returned at once. Idempotent."""
    global _configured
    with _lock:
        if _configured:
            return
        _configured = True
        libc = _libc()
        if libc is not None:
            libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
            libc.mallopt(_M_TRIM_THRESHOLD, 4 * _MMAP_THRESHOLD)
        _arrow_pool()
        if libc is not None and trim_interval_s > 0:
            threading.Thread(
                target=_trim_forever, args=(libc, trim_interval_s), name="cutover-malloc-trim", daemon=True
            ).start()


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018 -- glibc only (not musl)
    except (OSError, AttributeError):
        return None
    return libc


def _arrow_pool() -> None:
    import pyarrow as pa

    try:
        pool = pa.jemalloc_memory_pool()
        pa.jemalloc_set_decay_ms(0)
    except NotImplementedError:  # a pyarrow built without jemalloc: its default pool stays
        return
    pa.set_memory_pool(pool)


def _trim_forever(libc: ctypes.CDLL, interval_s: float) -> None:
    # ctypes releases the GIL for the call: a trim (a few ms) does not stop Python threads.
    while True:
        time.sleep(interval_s)
        libc.malloc_trim(0)
