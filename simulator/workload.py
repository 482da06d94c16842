"""The workload corpus shared by the load generator (what to ask) and the simulator (how to answer)."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from typing import Annotated, Literal, TypeGuard, get_args

import yaml
from openai.types.chat import ChatCompletionMessageParam
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

TaskClass = Literal["coding", "knowledge", "rag", "simple"]
TASK_CLASSES: tuple[TaskClass, ...] = get_args(TaskClass)
CORPUS_FILE = Path(__file__).with_name("corpus.yaml")

Tokens = Annotated[int, Field(gt=0)]


class Task(BaseModel):
    """One corpus entry. `answer` is the correct reply; `wrong` holds the facts a hallucination plants."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    task: TaskClass = "simple"
    prompt: str = ""
    question: str = ""
    context: str = ""
    answer: str = ""
    reference: str = ""
    fact: str = ""
    wrong: tuple[str, ...] = ()
    sensitive: bool = False
    output_tokens: Tokens

    @model_validator(mode="after")
    def _consistent(self) -> Task:
        if self.task in ("knowledge", "rag"):
            if not (self.reference and self.fact and self.wrong):
                raise ValueError(f"{self.id}: {self.task} tasks need reference, fact and wrong")
            if self.fact not in self.reference:
                raise ValueError(f"{self.id}: fact {self.fact!r} is not in the reference answer")
            if any(self.fact in w for w in self.wrong):
                raise ValueError(
                    f"{self.id}: a wrong value contains the fact {self.fact!r}, so it cannot be told apart"
                )
        if self.task == "rag":
            if not (self.context and self.question):
                raise ValueError(f"{self.id}: rag tasks need context and question")
            if self.fact not in self.context:
                raise ValueError(f"{self.id}: fact {self.fact!r} is not in the context")
            planted = [w for w in self.wrong if w in self.context]
            if planted:
                raise ValueError(f"{self.id}: wrong values {planted} appear in the context")
        elif not self.prompt:
            raise ValueError(f"{self.id}: needs a prompt")
        if self.task in ("coding", "simple") and not self.answer:
            raise ValueError(f"{self.id}: needs an answer")
        return self

    @property
    def user_message(self) -> str:
        if self.task == "rag":
            return f"Context:\n{self.context}\n\nQuestion: {self.question}"
        return self.prompt

    @property
    def correct_answer(self) -> str:
        return self.reference or self.answer

    def hallucinated_answer(self, pick: int) -> str:
        """The reference answer with its fact replaced by one of the planted wrong values."""
        return self.reference.replace(self.fact, self.wrong[pick % len(self.wrong)])


class Corpus(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    system_prompts: dict[TaskClass, str]
    tasks: dict[TaskClass, tuple[Task, ...]]
    _by_message: dict[str, Task] = PrivateAttr(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _tag_classes(cls, raw: dict) -> dict:
        tasks = raw.get("tasks", {})
        raw["tasks"] = {name: [{**item, "task": name} for item in items] for name, items in tasks.items()}
        return raw

    @model_validator(mode="after")
    def _complete(self) -> Corpus:
        for name in TASK_CLASSES:
            if not self.tasks.get(name) or name not in self.system_prompts:
                raise ValueError(f"the corpus needs a system prompt and at least one task of class {name!r}")
        ids = [t.id for items in self.tasks.values() for t in items]
        if len(ids) != len(set(ids)):
            raise ValueError("task ids must be unique")
        self._by_message = {_digest(t.user_message): t for items in self.tasks.values() for t in items}
        return self

    def messages(self, task: Task) -> list[ChatCompletionMessageParam]:
        """The chat messages the load generator sends for a task (the simulator recognises them)."""
        return [
            {"role": "system", "content": self.system_prompts[task.task]},
            {"role": "user", "content": task.user_message},
        ]

    def lookup(self, user_message: str) -> Task | None:
        return self._by_message.get(_digest(user_message))


def _digest(text: str) -> str:
    return hashlib.blake2b(text.strip().encode(), digest_size=16).hexdigest()


@cache
def load_corpus(path: Path = CORPUS_FILE) -> Corpus:
    return Corpus.model_validate(yaml.safe_load(path.read_text()))


def _is_task_class(name: str) -> TypeGuard[TaskClass]:
    return name in TASK_CLASSES


def parse_mix(text: str) -> dict[TaskClass, float]:
    """`coding=0.3,knowledge=0.3,rag=0.3,simple=0.1` -> weights normalised to sum 1."""
    weights: dict[TaskClass, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or not _is_task_class(name):
            raise ValueError(f"expected task=weight with task in {', '.join(TASK_CLASSES)}, got {part!r}")
        try:
            weight = float(value)
        except ValueError:
            raise ValueError(f"weight of {name} is not a number: {value!r}") from None
        if weight < 0:
            raise ValueError(f"weight of {name} is negative")
        weights[name] = weights.get(name, 0.0) + weight
    total = sum(weights.values())
    if total <= 0:
        raise ValueError("the mix needs at least one positive weight")
    return {name: w / total for name, w in weights.items() if w > 0}
