"""The simulator as an LLM judge: it answers the `llm_judge` prompt from its own record of planted errors.

Every answer into which the simulator planted a wrong fact is recorded (by a digest of its
text); a judge request quoting such an answer gets the verdict "unsupported" with the
sentence that carries the wrong value, any other answer "supported". So a test can run the
judge end to end and know each verdict exactly, without a real model.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import OrderedDict

from processors.hallucination.judge import PROMPT_VERSION
from simulator.workload import Corpus, Task

_ANSWER = re.compile(r"<answer>\n(.*)\n</answer>\s*$", re.S)
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.strip().encode(), digest_size=16).digest()


class PlantedRecord:
    """Which answer texts carry a planted wrong fact (the newest `capacity`), and from which task."""

    def __init__(self, capacity: int = 200_000) -> None:
        self.capacity = capacity
        self._tasks: OrderedDict[bytes, str] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, text: str, task_id: str) -> None:
        with self._lock:
            self._tasks[_digest(text)] = task_id
            self._tasks.move_to_end(_digest(text))
            while len(self._tasks) > self.capacity:
                self._tasks.popitem(last=False)

    def task_of(self, text: str) -> str | None:
        with self._lock:
            return self._tasks.get(_digest(text))


def is_judge_request(messages: list[tuple[str, str]]) -> bool:
    return any(role in ("system", "developer") and PROMPT_VERSION in text for role, text in messages)


def verdict(messages: list[tuple[str, str]], record: PlantedRecord, corpus: Corpus) -> str:
    """The judge's JSON reply to a judge request."""
    user = next((text for role, text in reversed(messages) if role == "user"), "")
    found = _ANSWER.search(user)
    answer = found.group(1) if found else ""
    task_id = record.task_of(answer)
    task = _task(corpus, task_id) if task_id else None
    if task is None:
        reply = {"verdict": "supported", "unsupported_claims": [], "reason": "Every claim is stated in the evidence."}
    else:
        planted = [wrong for wrong in task.wrong if wrong in answer]
        claims = [s for s in _SENTENCE.split(answer.strip()) if any(w in s for w in planted)] or [answer.strip()]
        reply = {
            "verdict": "unsupported",
            "unsupported_claims": claims,
            "reason": f"The evidence gives {task.fact}, not {', '.join(planted) or 'what the answer states'}.",
        }
    return json.dumps(reply)


def _task(corpus: Corpus, task_id: str) -> Task | None:
    return next((t for items in corpus.tasks.values() for t in items if t.id == task_id), None)
