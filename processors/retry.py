"""The one retry policy (exponential backoff until halted) and the one stop-with-a-deadline of a worker thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from tenacity import RetryCallState, Retrying, retry_if_exception, wait_exponential


def backoff(
    max_backoff_s: float,
    *,
    halted: Callable[[], bool],
    sleep: Callable[[float], object],
    on_failure: Callable[[BaseException | None], None],
    retryable: Callable[[BaseException], bool] = lambda _: True,
) -> Retrying:
    """Retry while `retryable(error)`, waiting 0.2, 0.4, ... up to `max_backoff_s` s, until `halted()`; reraises."""

    def pause(seconds: float) -> None:
        sleep(seconds)

    def before_sleep(state: RetryCallState) -> None:
        on_failure(state.outcome.exception() if state.outcome is not None else None)

    return Retrying(
        wait=wait_exponential(multiplier=0.2, max=max_backoff_s),
        retry=retry_if_exception(retryable),
        stop=lambda _: halted(),
        sleep=pause,
        before_sleep=before_sleep,
        reraise=True,
    )


def stop_within(threads: list[threading.Thread], timeout: float, give_up: threading.Event, grace: float = 5.0) -> bool:
    """Join `threads` within `timeout` s; past it, set `give_up` (their retries end) and allow `grace` s more.

    The caller has already asked them to stop. Returns True when every thread ended.
    """
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            give_up.set()
            thread.join(grace)
    return not any(thread.is_alive() for thread in threads)
