"""Cost per call from a versioned, validated price book (`processors/prices.yaml`), with the
`genai-prices` database (`processors.price_fallback`) as the fallback for every model the book
does not price on a call's day.

The book wins wherever it has a row in force (the brief's prices, a team's negotiated rates);
each call records which source priced it (`price_source`: `book`, `genai-prices`, or `` when
unpriced). Exact arithmetic end to end, in integer units of the `cost_usd` column's last digit
(it is `Decimal(18, 12)`: 1e-12 USD), and a call of a model neither source knows, or without token counts, costs NULL, never $0:
an SRE summing spend must see that some calls are unpriced instead of silently under-counting.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import NamedTuple, cast

import pyarrow as pa
import pyarrow.compute as pc
import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from processors.columns import DECODED_STRUCT, INSERT_SCHEMA
from processors.distinct import distinct
from processors.price_fallback import FallbackPrices, PerCall, Rates, TieredRates

DEFAULT_PRICES_FILE = Path(__file__).with_name("prices.yaml")
_PER_TOKEN = Decimal(1_000_000)
# Model strings come from senders: a fleet of fine-tune ids (or a bug putting request ids in the
# model) must not grow the per-model caches without end; past this many entries they start over.
CACHED_RATES_MAX = 10_000
_EPOCH_DAY = date(1970, 1, 1)
_US_PER_DAY = 86_400_000_000
COST_TYPE: pa.Decimal128Type = INSERT_SCHEMA.field("cost_usd").type
START_TYPE: pa.DataType = DECODED_STRUCT.field("start_time").type
# Costs are summed as int64 counts of the column's last digit (1e-12 USD): tokens (< 10^8, see
# processors.decode) times a per-token rate stay far inside int64, and the sum is exact.
_UNITS = Decimal(10) ** COST_TYPE.scale
_UNITS_TYPE = pa.decimal128(19, 0)  # any int64
_SCALED_UNITS_TYPE = pa.decimal128(19, COST_TYPE.scale)
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
    # and each (model string, provider, UTC day) of a batch once. Reading a pydantic private
    # attribute costs ~2 us (its __getattr__), so `costs` reads the cache once per batch.
    _families_of: dict[str, str | None] = PrivateAttr(default_factory=dict)
    _rates_of: dict[tuple[str, date], Rates | None] = PrivateAttr(default_factory=dict)
    _call_rates: dict[tuple[str, str, date], TieredRates | PerCall | None] = PrivateAttr(default_factory=dict)
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
        return priced.costs[0].as_py(), priced.versions[0].as_py()

    def costs(
        self,
        models: pa.Array | Iterable[str],
        start_times_us: pa.Array | Iterable[int],
        input_tokens: pa.Array | Iterable[int | None],
        cached_input_tokens: pa.Array | Iterable[int | None],
        output_tokens: pa.Array | Iterable[int | None],
        reasoning_tokens: pa.Array | Iterable[int | None],
        providers: pa.Array | Iterable[str] | None = None,
    ) -> PricedBatch:
        """`cost` of a batch of calls, column-wise (start times in microseconds since the epoch, UTC).

        The hot-path form: rates are looked up once per distinct (model, provider, UTC day) of the
        batch, and Arrow computes the costs in integer units of `cost_usd`'s last digit: exact, as
        Decimal arithmetic was, without a Python step per call. A call without input or output
        token counts (None) is unpriced: we cannot know its cost.
        """
        models = _column(models, pa.string())
        starts = _column(start_times_us, START_TYPE)
        sent = pa.repeat("", len(models)) if providers is None else _column(providers, pa.string())
        groups, keys = distinct(models, sent, pc.cast(starts, pa.date32()))
        cache = self._call_rates
        if len(cache) > CACHED_RATES_MAX:
            cache.clear()
        # A rate row per price tier of each group: a call takes its group's first row, plus one per
        # tier threshold its input tokens pass.
        rate_rows: list[_RateRow] = []
        first_row: list[int] = []
        tiered: list[tuple[int, tuple[int, ...]]] = []
        per_call: dict[int, PerCall] = {}
        for group, key in enumerate(keys):
            model, provider, day = cast(tuple[str, str, date], key)
            try:
                rates = cache[model, provider, day]
            except KeyError:
                rates = cache[model, provider, day] = self._call_rates_of(model, provider, day)
            first_row.append(len(rate_rows))
            if rates is None:
                rate_rows.append(_UNPRICED)
            elif isinstance(rates, PerCall):
                per_call[group] = rates
                rate_rows.append(_UNPRICED._replace(label=rates.label, source=rates.source))
            else:
                if rates.thresholds:
                    tiered.append((group, rates.thresholds))
                rate_rows.extend(_RateRow.of(tier) for tier in rates.tiers)
        row = pc.take(pa.array(first_row, pa.int32()), groups)
        inp = _tokens(input_tokens)
        for group, thresholds in tiered:
            member = pc.equal(groups, group)
            for threshold in thresholds:
                row = pc.add(row, pc.cast(pc.and_kleene(member, pc.greater(inp, threshold)), pa.int32()))
        rates_of_call = pc.take(pa.array(rate_rows, _RATE_ROW), row).flatten()
        fixed, input_rate, cached_rate, output_rate, reasoning_extra, labels, sources = rates_of_call
        # Cached input is capped at input; billable output is at least the reasoning count.
        cached = pc.min_element_wise(pc.fill_null(_tokens(cached_input_tokens), 0), inp, skip_nulls=False)
        reasoning = pc.fill_null(_tokens(reasoning_tokens), 0)
        out = pc.max_element_wise(_tokens(output_tokens), reasoning, skip_nulls=False)
        units = fixed
        for tokens, rate in (
            (pc.subtract(inp, cached), input_rate),
            (cached, cached_rate),
            (out, output_rate),
            (reasoning, reasoning_extra),
        ):
            units = pc.add_checked(units, pc.multiply_checked(tokens, rate))
        costs = _costs_of(units)
        if per_call:
            costs = self._per_call_costs(costs, groups, per_call, starts, inp, cached, out, reasoning)
        unpriced = pc.is_null(costs)
        return PricedBatch(costs, pc.if_else(unpriced, self.version, labels), pc.if_else(unpriced, "", sources))

    @staticmethod
    def _per_call_costs(
        costs: pa.Array,
        groups: pa.Array,
        per_call: dict[int, PerCall],
        starts: pa.Array,
        *tokens: pa.Array,
    ) -> pa.Array:
        """`costs` with those of calls whose price varies within the day put in, priced one by one."""
        mask = pc.is_in(groups, pa.array(list(per_call), groups.type))
        at = pc.indices_nonzero(mask)
        found: list[int | None] = []
        for group, start, inp, cached, out, reasoning in zip(
            *(column.take(at).to_pylist() for column in (groups, pc.cast(starts, pa.int64()), *tokens)), strict=True
        ):
            if inp is None or out is None:
                found.append(None)
            else:
                when = datetime.fromtimestamp(start / 1_000_000, UTC)
                found.append(_units(per_call[group].cost(when, inp, cached, out, reasoning)))
        return pc.replace_with_mask(costs, mask, _costs_of(pa.array(found, pa.int64())))

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
    """Per call of a batch: USD cost (`COST_TYPE`, null when unpriced), price label, and source priced from."""

    costs: pa.Array
    versions: pa.Array
    sources: pa.Array


class _RateRow(NamedTuple):
    """One price tier in units of `cost_usd`'s last digit (None: priced otherwise, or not at all)."""

    fixed: int | None
    input: int | None
    cached_input: int | None
    output: int | None
    reasoning_extra: int | None
    label: str
    source: str

    @classmethod
    def of(cls, rates: Rates) -> _RateRow:
        return cls(
            _units(rates.fixed),
            _units(rates.input),
            _units(rates.cached_input),
            _units(rates.output),
            _units(rates.reasoning_extra),
            rates.label,
            rates.source,
        )


def _units(usd: Decimal) -> int:
    """`usd` in units of `cost_usd`'s last digit. A value finer than that digit can only come from a
    float artefact of a price database (genai-prices has 1.8000000000000002E-7 USD per token): it
    is rounded to the digit, where an exact value would not fit the column and fail the whole
    batch's insert."""
    return int((usd * _UNITS).to_integral_value(ROUND_HALF_EVEN))


_UNPRICED = _RateRow(None, None, None, None, None, "", "")
_RATE_ROW = pa.struct([(name, pa.string() if name in ("label", "source") else pa.int64()) for name in _RateRow._fields])


def _costs_of(units: pa.Array) -> pa.Array:
    """int64 units of `cost_usd`'s last digit as the column's type: int64 -> Decimal(19, 0) keeps the
    integer, viewed at the column's scale it is the cost in USD, and the checked cast to the
    column's own type refuses a cost that does not fit."""
    return pc.cast(pc.cast(units, _UNITS_TYPE).view(_SCALED_UNITS_TYPE), COST_TYPE)


def _column(values: pa.Array | Iterable[object], type: pa.DataType) -> pa.Array:
    return values if isinstance(values, pa.Array) else pa.array(values, type)


def _tokens(values: pa.Array | Iterable[int | None]) -> pa.Array:
    return pc.cast(_column(values, pa.int64()), pa.int64())
