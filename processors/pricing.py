"""Cost per call from a versioned, validated price book (`processors/prices.yaml`), with the
`genai-prices` database (`processors.price_fallback`) as the fallback for every model the book
does not price on a call's day.

The book wins wherever it has a row in force (the brief's prices, a team's negotiated rates);
each call records which source priced it (`price_source`: `book`, `genai-prices`, or `` when
unpriced). Exact decimal arithmetic end to end (the `cost_usd` column is `Decimal(18, 12)`),
and a call of a model neither source knows, or without token counts, costs NULL, never $0:
an SRE summing spend must see that some calls are unpriced instead of silently under-counting.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import NamedTuple

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from processors.price_fallback import FallbackPrices, PerCall, Rates, TieredRates

DEFAULT_PRICES_FILE = Path(__file__).with_name("prices.yaml")
_PER_TOKEN = Decimal(1_000_000)
# Model strings come from senders: a fleet of fine-tune ids (or a bug putting request ids in the
# model) must not grow the per-model caches without end; past this many entries they start over.
CACHED_RATES_MAX = 10_000
_EPOCH_DAY = date(1970, 1, 1)
_US_PER_DAY = 86_400_000_000
BOOK_SOURCE = "book"
_ZERO = Decimal(0)
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
    # and each (model string, provider, UTC day number) of a batch once. Reading a pydantic private
    # attribute costs ~2 us (its __getattr__), so `costs` reads the cache once per batch.
    _families_of: dict[str, str | None] = PrivateAttr(default_factory=dict)
    _rates_of: dict[tuple[str, date], Rates | None] = PrivateAttr(default_factory=dict)
    _call_rates: dict[tuple[str, str, int], TieredRates | PerCall | None] = PrivateAttr(default_factory=dict)
    _fallback: FallbackPrices | None = PrivateAttr(default=None)

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
    def load(cls, path: Path | None = None, *, fallback: bool = True) -> PriceBook:
        """Read and validate a price file (default: the packaged `prices.yaml`).

        With `fallback`, models the book does not price are priced from genai-prices.
        """
        source = Path(path) if path else DEFAULT_PRICES_FILE
        with source.open(encoding="utf-8") as handle:
            book = cls.model_validate(yaml.safe_load(handle))
        book._fallback = FallbackPrices() if fallback else None
        return book

    def family(self, model: str) -> str | None:
        """The family a request or response model bills as, or None when the book lacks it."""
        try:
            return self._families_of[model]
        except KeyError:
            if len(self._families_of) > CACHED_RATES_MAX:
                self._families_of.clear()
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
        input_tokens: int | None,
        cached_input_tokens: int | None,
        output_tokens: int | None,
        reasoning_tokens: int | None,
        provider: str = "",
    ) -> tuple[Decimal | None, str]:
        """(USD cost, price label) of one call; (None, book version) when it cannot be priced.

        Input tokens include cached ones; output tokens include reasoning ones. Counts that
        break those conventions are read the only consistent way: cached is capped at input,
        and billable output is at least the reasoning count.
        """
        start_us = (day - _EPOCH_DAY).days * _US_PER_DAY
        priced = self.costs(
            [model],
            [start_us],
            [input_tokens],
            [cached_input_tokens],
            [output_tokens],
            [reasoning_tokens],
            providers=[provider],
        )
        return priced.costs[0], priced.versions[0]

    def costs(
        self,
        models: Iterable[str],
        start_times_us: Iterable[int],
        input_tokens: Iterable[int | None],
        cached_input_tokens: Iterable[int | None],
        output_tokens: Iterable[int | None],
        reasoning_tokens: Iterable[int | None],
        providers: Iterable[str] | None = None,
    ) -> PricedBatch:
        """`cost` of a batch of calls, column-wise (start times in microseconds since the epoch, UTC).

        The hot-path form: one pass, rates looked up per (model, provider, UTC day) in a plain dict.
        A call without input or output token counts (None) is unpriced: we cannot know its cost.
        """
        cache = self._call_rates
        if len(cache) > CACHED_RATES_MAX:
            cache.clear()
        version = self.version
        batch = PricedBatch([], [], [])
        add_cost = batch.costs.append
        add_label = batch.versions.append
        add_source = batch.sources.append
        models = list(models)
        for model, provider, start, inp, cached, out, reasoning in zip(
            models,
            [""] * len(models) if providers is None else providers,
            start_times_us,
            input_tokens,
            cached_input_tokens,
            output_tokens,
            reasoning_tokens,
            strict=True,
        ):
            key = (model, provider, start // _US_PER_DAY)
            try:
                rates = cache[key]
            except KeyError:
                rates = cache[key] = self._call_rates_of(model, provider, _EPOCH_DAY + timedelta(days=key[2]))
            if rates is None or inp is None or out is None:
                add_cost(None)
                add_label(version)
                add_source("")
                continue
            if cached is None:
                cached = 0
            if reasoning is None:
                reasoning = 0
            if cached > inp:
                cached = inp
            if reasoning > out:
                out = reasoning
            if rates.__class__ is PerCall:
                per_call: PerCall = rates
                add_cost(per_call.cost(datetime.fromtimestamp(start / 1_000_000, UTC), inp, cached, out, reasoning))
                add_label(per_call.label)
                add_source(per_call.source)
                continue
            thresholds, tiers = rates  # type: ignore[misc]
            fixed, input_rate, cached_rate, output_rate, reasoning_extra, label, source = (
                tiers[bisect_left(thresholds, inp)] if thresholds else tiers[0]
            )
            cost = (inp - cached) * input_rate + cached * cached_rate + out * output_rate
            # Zero for our book and most of genai-prices: skip two Decimal operations per call.
            if reasoning_extra:
                cost += reasoning * reasoning_extra
            if fixed:
                cost += fixed
            add_cost(cost)
            add_label(label)
            add_source(source)
        return batch

    def _call_rates_of(self, model: str, provider: str, day: date) -> TieredRates | PerCall | None:
        book = self._model_rates(model, day)
        if book is not None:
            return TieredRates((), (book,))
        if self._fallback is None:
            return None
        return self._fallback.rates(model, provider, day)

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
        return Rates(
            fixed=_ZERO,
            input=row.input / _PER_TOKEN,
            cached_input=row.cached_input / _PER_TOKEN,
            output=row.output / _PER_TOKEN,
            # the book bills reasoning as output tokens, which already include it
            reasoning_extra=_ZERO,
            label=f"{self.version}/{family}@{row.effective_from.isoformat()}",
            source=BOOK_SOURCE,
        )


class PricedBatch(NamedTuple):
    """Per call of a batch: USD cost (None when unpriced), price label, and source priced from."""

    costs: list[Decimal | None]
    versions: list[str]
    sources: list[str]
