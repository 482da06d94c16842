"""Shadow mirroring: replay a sampled fraction of primary model calls to a candidate model.

    mirror = ShadowMirror("gpt-5.5", fraction=0.1)
    reply = mirror.call(client.chat.completions.create, model="gpt-5.4", messages=messages)
    reply = await mirror.acall(async_client.chat.completions.create, model="gpt-5.4", messages=messages)
    ...
    mirror.close()   # or `await mirror.aclose()` with async clients

The primary call runs in the caller's thread exactly as without the mirror; its result and
exceptions are returned untouched. The sampling decision and a free slot are taken *before*
the primary call so that the primary span carries the pair id; the replay is queued after it
on a bounded thread pool and never blocks the caller: with every slot taken the mirror is
dropped and counted instead. Both spans carry `cutover.shadow.pair_id` (the same id) and
`cutover.shadow.role` (`primary` / `shadow`), plus whatever `call_labels` the caller had set,
because the replay runs in a copy of the caller's context.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from collectors.labels import call_labels

log = logging.getLogger(__name__)
R = TypeVar("R")


async def _no_close() -> None:
    return None


@dataclass(frozen=True, slots=True)
class ShadowStats:
    sampled: int  # primary calls the sampler picked
    mirrored: int  # shadow calls started (each exports one span)
    dropped: int  # sampled but no free slot: not mirrored, primary unlabelled
    completed: int  # shadow calls that returned
    failed: int  # shadow calls that raised (error spans, counted here too)


class ShadowMirror:
    def __init__(
        self,
        candidate_model: str,
        fraction: float,
        *,
        max_workers: int = 4,
        max_queue: int = 64,
        seed: int | None = None,
    ) -> None:
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"shadow fraction must be within [0, 1], got {fraction}")
        if max_workers < 1 or max_queue < 0:
            raise ValueError("max_workers must be >= 1 and max_queue >= 0")
        self.candidate_model = candidate_model
        self.fraction = fraction
        self._random = random.Random(seed).random
        self._slots = threading.BoundedSemaphore(max_workers + max_queue)
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="cutover-shadow")
        self._lock = threading.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._counts = {"sampled": 0, "mirrored": 0, "dropped": 0, "completed": 0, "failed": 0}

    @property
    def stats(self) -> ShadowStats:
        with self._lock:
            return ShadowStats(**self._counts)

    def call(
        self,
        create: Callable[..., R],
        /,
        *,
        mirror: bool | None = None,
        shadow_create: Callable[..., Any] | None = None,
        **kwargs: Any,
    ) -> R:
        """`create(**kwargs)`, mirrored with `model=candidate` when sampled (or when `mirror` says so).

        `shadow_create` replays on another client (another endpoint or provider); default `create`.
        """
        pair_id = self._reserve(mirror)
        if pair_id is None:
            return create(**kwargs)
        try:
            with call_labels(shadow_pair_id=pair_id, shadow_role="primary"):
                return create(**kwargs)
        finally:
            self._submit(shadow_create or create, pair_id, kwargs)

    async def acall(
        self,
        create: Callable[..., Awaitable[R]],
        /,
        *,
        mirror: bool | None = None,
        shadow_create: Callable[..., Awaitable[Any]] | None = None,
        **kwargs: Any,
    ) -> R:
        """`call` for async clients (`AsyncOpenAI`): the replay is a task on the running loop."""
        pair_id = self._reserve(mirror)
        if pair_id is None:
            return await create(**kwargs)
        try:
            with call_labels(shadow_pair_id=pair_id, shadow_role="primary"):
                return await create(**kwargs)
        finally:
            # A task copies the current context when created: the caller's labels, not the primary's.
            task = asyncio.get_running_loop().create_task(
                self._areplay(shadow_create or create, pair_id, {**kwargs, "model": self.candidate_model})
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            self._count("mirrored")

    async def aclose(self) -> None:
        """Wait for the async shadows in flight (then close the thread pool as `close` does)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self.close()

    def wrap(self, create: Callable[..., R]) -> Callable[..., R]:
        """`create` with mirroring: a drop-in for `client.chat.completions.create` and the like."""
        return partial(self.call, create)

    def close(self, wait: bool = True) -> None:
        """Stop taking shadows (later ones count as dropped); with `wait`, return once the queued and running ones are done."""
        self._pool.shutdown(wait=wait)

    def __enter__(self) -> ShadowMirror:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _reserve(self, mirror: bool | None) -> str | None:
        """Sample the call and take a shadow slot for it: its pair id, or None (not mirrored)."""
        if not (self._random() < self.fraction if mirror is None else mirror):
            return None
        self._count("sampled")
        if not self._slots.acquire(blocking=False):
            self._count("dropped")
            return None
        return uuid.uuid4().hex

    def _submit(self, create: Callable[..., Any], pair_id: str, kwargs: dict[str, Any]) -> None:
        context = contextvars.copy_context()
        try:
            self._pool.submit(context.run, self._replay, create, pair_id, {**kwargs, "model": self.candidate_model})
        except RuntimeError:  # closed meanwhile
            self._slots.release()
            self._count("dropped")
            return
        self._count("mirrored")

    def _replay(self, create: Callable[..., Any], pair_id: str, kwargs: dict[str, Any]) -> None:
        try:
            with call_labels(shadow_pair_id=pair_id, shadow_role="shadow"):
                reply = create(**kwargs)
                if isinstance(reply, Iterator):  # a stream: read it to the end so the span records usage and ends
                    for _ in reply:
                        pass
                    getattr(reply, "close", lambda: None)()
            self._count("completed")
        except Exception as error:  # the shadow's failure is data (its span has error.type), never the caller's
            log.debug("shadow call %s failed: %r", pair_id, error)
            self._count("failed")
        finally:
            self._slots.release()

    async def _areplay(self, create: Callable[..., Awaitable[Any]], pair_id: str, kwargs: dict[str, Any]) -> None:
        try:
            with call_labels(shadow_pair_id=pair_id, shadow_role="shadow"):
                reply = await create(**kwargs)
                if isinstance(reply, AsyncIterator):
                    async for _ in reply:
                        pass
                    await getattr(reply, "close", _no_close)()
            self._count("completed")
        except Exception as error:
            log.debug("shadow call %s failed: %r", pair_id, error)
            self._count("failed")
        finally:
            self._slots.release()

    def _count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1
