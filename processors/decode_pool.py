"""Decoding of polled Kafka records, in this process or in a small pool of worker processes.

The processor's one process owns the chDB path (one engine per path), so the second core
can only help from other processes: workers decode the OTLP bytes and enrich the calls
(`processors.enrich`: cost, refusal) and send back one Arrow table per chunk, while the main
process fetches, writes and recomputes histograms. Arrow, not Python rows: unpickling decoded
rows cost the main process ~1.5 us per call and enriching them ~3 us more (bench/processor.py,
a third of what the worker saved); an Arrow table pickles as its buffers (~0.4 us per call).

The seam with the service is `Decoder.outcomes(records)`: (record, outcome) pairs in the
records' order, `outcome.get()` returning the `Decoded` or raising what `decode` raised,
so the service's error handling (DLQ reason, counts, offsets) is the same either way. A
worker's `Decoded` carries its calls as `table` (a slice of its chunk's table), not `rows`.
With workers, chunks stay in flight across calls: a call submits its records and returns
the outcomes of the chunks already decoded (earlier calls' first), so the workers decode
ahead while the processor polls, inserts and commits; collecting each poll's chunks before
returning had left the worker idle during every write (1 worker on 2 cores was slower than
none). The service takes a record's offset only with its outcome, so nothing in flight is
committed; `drain()` hands over the rest at a stop, `drop()` forgets it at a rebalance.
Records are sent in chunks (a worker round trip costs ~100 us; a chunk amortises it over
many small messages), at most `IN_FLIGHT_PER_WORKER x workers` chunks in flight (a call
waits for the oldest beyond that), so memory stays bounded however far Kafka is ahead.
Workers are spawned, not forked: forking a process that runs chDB's threads could copy a
lock held mid-operation.
"""

from __future__ import annotations

import ctypes
import gc
import multiprocessing
import signal
import sys
import types
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import pyarrow as pa

from processors.decode import Decoded, decode
from processors.enrich import Enricher
from processors.pricing import PriceBook
from processors.refusal import refusal

# A chunk closes at this many payload bytes or records, whichever comes first.
CHUNK_BYTES = 1 << 20
CHUNK_RECORDS = 256
# Chunks sent ahead per worker: enough for the workers to keep decoding while the main
# process writes a batch (~0.5 s for 50k calls), few enough to bound memory (~1 MB each).
IN_FLIGHT_PER_WORKER = 8
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


class Record(Protocol):
    """The fields of a kafka-python `ConsumerRecord` that decoding reads."""

    @property
    def value(self) -> bytes | None: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...


class Outcome(Protocol):
    def get(self) -> Decoded: ...


class _Inline:
    """Decodes when asked, in this process (exactly the single-process path)."""

    __slots__ = ("record",)

    def __init__(self, record: Record) -> None:
        self.record = record

    def get(self) -> Decoded:
        record = self.record
        return decode(record.value, record.partition, record.offset)


class _Done:
    __slots__ = ("decoded", "error")

    def __init__(self, decoded: Decoded | None, error: BaseException | None) -> None:
        self.decoded = decoded
        self.error = error

    def get(self) -> Decoded:
        if self.error is not None:
            raise self.error
        assert self.decoded is not None
        return self.decoded


_enricher: Enricher | None = None  # a worker's own, made by `_start_worker`


def _start_worker(prices_file: Path | None, price_fallback: bool, gc_threshold: tuple[int, int, int]) -> None:
    """Worker start: load the price book, collect garbage as the processor does, and die with the processor.

    A SIGKILLed processor must not leave its workers blocked on a queue forever. Workers are
    spawned by the processor's consuming thread (in `Decoder()`), and PR_SET_PDEATHSIG turns
    that thread's death into a SIGKILL for them (Linux; elsewhere workers exit on their own
    only at a clean shutdown). The default young generation (700 objects) collected every few
    hundred decoded calls: with the processor's, a worker decodes and enriches ~10% faster.
    """
    global _enricher
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))
    except (OSError, AttributeError):
        pass
    _enricher = Enricher(PriceBook.load(prices_file, fallback=price_fallback), refusal)
    gc.freeze()
    gc.set_threshold(*gc_threshold)


@contextmanager
def _main_not_rerun() -> Iterator[None]:
    """Processes spawned meanwhile do not run this process's `__main__` first.

    A spawned child re-runs its parent's main module (by file or module name) before anything
    else; when that is not our CLI but a script someone else runs in this process (Streamlit
    runs the dashboard app as `__main__`; so do the dashboard tests' AppTests under pytest),
    every worker would run the app and die on its store. Workers need nothing from it.
    """
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


class _ChunkResult(NamedTuple):
    """Per record: its `Decoded` without rows and how many it had (or what decoding raised); all rows enriched."""

    outcomes: list[tuple[Decoded | None, int, BaseException | None]]
    table: pa.Table | None


def _decode_chunk(chunk: list[tuple[bytes | None, int, int]]) -> _ChunkResult:
    """Worker side: decode each message, returning what it raised instead of failing the chunk; enrich all rows."""
    outcomes: list[tuple[Decoded | None, int, BaseException | None]] = []
    rows: list[tuple[Any, ...]] = []
    for value, partition, offset in chunk:
        try:
            decoded = decode(value, partition, offset)
        except Exception as error:
            outcomes.append((None, 0, error))
            continue
        rows.extend(decoded.rows)
        outcomes.append((decoded, len(decoded.rows), None))
        decoded.rows = []
    if not rows:
        return _ChunkResult(outcomes, None)
    assert _enricher is not None, "a decode worker starts with _start_worker"
    return _ChunkResult(outcomes, _enricher.table(rows))


class Decoder:
    """Decodes records in order; with `workers` > 0 in that many worker processes, ahead of the caller.

    Inline (0 workers) each outcome decodes when the caller asks for it. With workers, chunks
    stay in flight across calls: `outcomes(records)` submits the new records and returns only
    what is already decoded, so the workers go on decoding while the caller fetches, writes
    and commits; `drain()` waits for the rest, `drop()` forgets it (a rebalance).
    """

    def __init__(self, workers: int = 0, prices_file: Path | None = None, price_fallback: bool = True) -> None:
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._pending: deque[tuple[Sequence[Record], Future[_ChunkResult]]] = deque()
        self._limit = IN_FLIGHT_PER_WORKER * workers
        # Bumped by `drop()`: an iterator of an earlier generation yields nothing more.
        self._generation = 0
        if workers > 0:
            self._pool = ProcessPoolExecutor(
                workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker,
                initargs=(prices_file, price_fallback, gc.get_threshold()),
            )
            # Spawn the workers now (each imports protobuf and pyarrow, ~0.5 s of CPU), without
            # waiting: they start while the processor joins its group; the first chunk waits if need be.
            # Each submit spawns one (none is idle yet), so these are every worker the pool will have.
            with _main_not_rerun():
                for _ in range(workers):
                    self._pool.submit(_decode_chunk, [])

    @property
    def pending(self) -> int:
        """Chunks submitted whose outcomes have not been returned yet."""
        return len(self._pending)

    @property
    def ready(self) -> bool:
        """Whether the oldest chunk in flight is decoded (its outcomes can be taken without waiting)."""
        return bool(self._pending) and self._pending[0][1].done()

    @property
    def full(self) -> bool:
        """Whether the in-flight limit is reached: the caller should take outcomes before fetching more."""
        return len(self._pending) >= self._limit > 0

    def outcomes(self, records: Sequence[Record]) -> Iterator[tuple[Record, Outcome]]:
        """(record, outcome) in order: with workers, of every chunk already decoded, earlier calls' first.

        Waits only while the in-flight limit is reached. Abandoning the iterator leaves the
        rest of `records` unsubmitted: only do so before `drop()`.
        """
        if self._pool is None:
            for record in records:
                yield record, _Inline(record)
            return
        generation = self._generation
        for chunk in _chunks(records):
            while len(self._pending) >= self._limit:
                yield from self._take_oldest(generation)
                if generation != self._generation:
                    return
            self._pending.append((chunk, self._submit(chunk)))
        while self._pending and self._pending[0][1].done() and generation == self._generation:
            yield from self._take_oldest(generation)

    def drain(self) -> Iterator[tuple[Record, Outcome]]:
        """(record, outcome) of every chunk in flight, in order, waiting for each (a stop)."""
        generation = self._generation
        while self._pending and generation == self._generation:
            yield from self._take_oldest(generation)

    def drop(self) -> None:
        """Forget the chunks in flight: the caller reads their records again (a rebalance)."""
        self._generation += 1
        for _, future in self._pending:
            future.cancel()
        self._pending.clear()

    def _submit(self, chunk: Sequence[Record]) -> Future[_ChunkResult]:
        assert self._pool is not None
        return self._pool.submit(_decode_chunk, [(r.value, r.partition, r.offset) for r in chunk])

    def _take_oldest(self, generation: int) -> Iterator[tuple[Record, Outcome]]:
        chunk, future = self._pending.popleft()
        outcomes, table = future.result()
        at = 0
        for record, (decoded, rows, error) in zip(chunk, outcomes, strict=True):
            if decoded is not None and rows:
                assert table is not None
                decoded.table = table.slice(at, rows)
                at += rows
            if generation != self._generation:
                return
            yield record, _Done(decoded, error)

    def close(self) -> None:
        self.drop()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _chunks(records: Iterable[Record]) -> Iterator[list[Record]]:
    chunk: list[Record] = []
    size = 0
    for record in records:
        chunk.append(record)
        size += len(record.value or b"")
        if size >= CHUNK_BYTES or len(chunk) >= CHUNK_RECORDS:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk
