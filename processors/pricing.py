"""Cost per call from a versioned, validated price book (`processors/prices.yaml`).

Exact decimal arithmetic end to end (the `cost_usd` column is `Decimal(18, 12)`), and a
call of a model the book does not know costs NULL, never $0: an SRE summing spend must
see that some calls are unpriced instead of silently under-counting.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

DEFAULT_PRICES_FILE = Path(__file__).with_name("prices.yaml")
_PER_TOKEN = Decimal(1_000_000)
_EPOCH_DAY = date(1970, 1, 1)
_US_PER_DAY = 86_400_000_000
# USD per input, cached input and output token, and the price label billed.
Rates = tuple[Decimal, Decimal, Decimal, str]
# Dated snapshots (`gpt-5.5-2026-04-23`, `gpt-4o-mini-2024-07-18`) bill as their family.
_SNAPSHOT = re.compile(r"^(?P<family>.+?)-\d{4}-\d{2}-\d{2}$")


def _decimal(value: object) -> object:
    # YAML reads 0.075 as a float; going through its shortest repr keeps the written digits.
    return Decimal(repr(value)) if isinstance(value, float) else value


class Price(BaseModel):
    """USD per 1M tokens, in force from `effective_from` (a UTC day) until the next row."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    effective_from: date
    input: Decimal = Field(ge=0)
    cached_input: Decimal = Field(ge=0)
    output: Decimal = Field(ge=0)

    _coerce = field_validator("input", "cached_input", "output", mode="before")(_decimal)

    @model_validator(mode="after")
    def _cached_not_above_input(self) -> Price:
        if self.cached_input > self.input:
            raise ValueError(f"cached_input {self.cached_input} is above input {self.input}")
        return self


class PriceBook(BaseModel):
    """The price file: a `version` and, per model family, its price rows by date."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str = Field(min_length=1)
    families: dict[str, list[Price]] = Field(min_length=1)

    # The processor prices every call on the hot path: resolve each model and (family, day) once,
    # and each (model string, UTC day number) of a batch once. Reading a pydantic private
    # attribute costs ~2 us (its __getattr__), so `costs` reads the cache once per batch.
    _families_of: dict[str, str | None] = PrivateAttr(default_factory=dict)
    _rates_of: dict[tuple[str, date], Rates | None] = PrivateAttr(default_factory=dict)
    _call_rates: dict[tuple[str, int], Rates | None] = PrivateAttr(default_factory=dict)

    @field_validator("families")
    @classmethod
    def _rows_by_date(cls, families: dict[str, list[Price]]) -> dict[str, list[Price]]:
        checked: dict[str, list[Price]] = {}
        for name, rows in families.items():
            if not rows:
                raise ValueError(f"family {name!r} has no price rows")
            days = [row.effective_from for row in rows]
            if len(set(days)) != len(days):
                raise ValueError(f"family {name!r} has two rows for the same effective_from")
            checked[name.strip().lower()] = sorted(rows, key=lambda row: row.effective_from)
        return checked

    @classmethod
    def load(cls, path: Path | None = None) -> PriceBook:
        """Read and validate a price file (default: the packaged `prices.yaml`)."""
        source = Path(path) if path else DEFAULT_PRICES_FILE
        with source.open(encoding="utf-8") as handle:
            return cls.model_validate(yaml.safe_load(handle))

    def family(self, model: str) -> str | None:
        """The family a request or response model bills as, or None when the book lacks it."""
        try:
            return self._families_of[model]
        except KeyError:
            family = self._families_of[model] = self._resolve_family(model)
            return family

    def price(self, family: str, day: date) -> Price | None:
        """The price row of `family` in force on `day`, or None before its first row."""
        rows = self.families[family]
        index = bisect_right([row.effective_from for row in rows], day)
        return rows[index - 1] if index else None

    def cost(
        self,
        model: str,
        day: date,
        input_tokens: int,
        cached_input_tokens: int,
        output_tokens: int,
        reasoning_tokens: int,
    ) -> tuple[Decimal | None, str]:
        """(USD cost, price version) of one call; (None, book version) when it cannot be priced.

        Input tokens include cached ones; output tokens include reasoning ones. Counts that
        break those conventions are read the only consistent way: cached is capped at input,
        and billable output is at least the reasoning count.
        """
        start_us = (day - _EPOCH_DAY).days * _US_PER_DAY
        costs, labels = self.costs(
            [model], [start_us], [input_tokens], [cached_input_tokens], [output_tokens], [reasoning_tokens]
        )
        return costs[0], labels[0]

    def costs(
        self,
        models: Iterable[str],
        start_times_us: Iterable[int],
        input_tokens: Iterable[int],
        cached_input_tokens: Iterable[int],
        output_tokens: Iterable[int],
        reasoning_tokens: Iterable[int],
    ) -> tuple[list[Decimal | None], list[str]]:
        """`cost` of a batch of calls, column-wise (start times in microseconds since the epoch, UTC).

        The hot-path form: one pass, rates looked up per (model string, UTC day) in a plain dict.
        """
        cache = self._call_rates
        version = self.version
        costs: list[Decimal | None] = []
        labels: list[str] = []
        add_cost = costs.append
        add_label = labels.append
        for model, start, inp, cached, out, reasoning in zip(
            models, start_times_us, input_tokens, cached_input_tokens, output_tokens, reasoning_tokens, strict=True
        ):
            key = (model, start // _US_PER_DAY)
            try:
                rates = cache[key]
            except KeyError:
                rates = cache[key] = self._model_rates(model, _EPOCH_DAY + timedelta(days=key[1]))
            if rates is None:
                add_cost(None)
                add_label(version)
                continue
            input_rate, cached_rate, output_rate, label = rates
            if cached > inp:
                cached = inp
            if reasoning > out:
                out = reasoning
            add_cost((inp - cached) * input_rate + cached * cached_rate + out * output_rate)
            add_label(label)
        return costs, labels

    def _model_rates(self, model: str, day: date) -> Rates | None:
        family = self.family(model)
        if family is None:
            return None
        key = (family, day)
        try:
            return self._rates_of[key]
        except KeyError:
            rates = self._rates_of[key] = self._resolve_rates(family, day)
            return rates

    def _resolve_family(self, model: str) -> str | None:
        name = model.strip().lower().removeprefix("openai/")
        if name in self.families:
            return name
        snapshot = _SNAPSHOT.match(name)
        if snapshot and snapshot["family"] in self.families:
            return snapshot["family"]
        return None

    def _resolve_rates(self, family: str, day: date) -> Rates | None:
        row = self.price(family, day)
        if row is None:
            return None
        label = f"{self.version}/{family}@{row.effective_from.isoformat()}"
        return row.input / _PER_TOKEN, row.cached_input / _PER_TOKEN, row.output / _PER_TOKEN, label
