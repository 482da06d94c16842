"""Prices of the models our own book does not list, from the `genai-prices` package.

genai-prices (Pydantic's price database: every major provider, historic prices, tiers, cache
and reasoning rates) prices one call in ~200 us, far too slow for the processor's hot path. Its
rates are affine in each token count within one price tier, so for each (model, provider, UTC
day) we ask the library for the per-token rates once -- by differences of its own results, so
its rules for cached input, reasoning output and fixed per-request fees hold exactly as it
defines them -- and `processors.pricing` prices the batch column-wise from them. Tiered models
(the price of all tokens changes above an input threshold, e.g. Gemini and Claude over 200k
tokens) get one rate set per tier.
A model whose price depends on the time of day (off-peak discounts) is priced call by call.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import NamedTuple

import genai_prices
from genai_prices.data_snapshot import get_snapshot
from genai_prices.types import ModelInfo, ModelPrice, Provider, TieredPrices, TimeOfDateConstraint, Usage

SOURCE = "genai-prices"
VERSION = f"{SOURCE}-{genai_prices.__version__}"

# Our (semconv) provider names -> genai-prices provider ids; anything else is passed as sent.
_PROVIDER_IDS = {
    "openai": "openai",
    "azure.ai.openai": "azure",
    "azure.ai.inference": "azure",
    "aws.bedrock": "aws",
    "anthropic": "anthropic",
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google",
    "mistral_ai": "mistral",
    "x_ai": "x-ai",
}


class Rates(NamedTuple):
    """USD per call and per token within one price tier; reasoning is what it costs above output."""

    fixed: Decimal
    input: Decimal
    cached_input: Decimal
    output: Decimal
    reasoning_extra: Decimal
    label: str
    source: str


class TieredRates(NamedTuple):
    """Rates per input-token tier: tier i applies when input tokens exceed thresholds[i-1]."""

    thresholds: tuple[int, ...]
    tiers: tuple[Rates, ...]


@dataclass(frozen=True, slots=True)
class PerCall:
    """A price that varies within a day: priced by the library for each call."""

    model: ModelInfo
    provider: Provider
    label: str
    source: str = SOURCE

    def cost(self, start: datetime, inp: int, cached: int, out: int, reasoning: int) -> Decimal:
        usage = Usage(input_tokens=inp, cache_read_tokens=cached, output_tokens=out, output_reasoning_tokens=reasoning)
        return self.model.calc_price(usage, self.provider, genai_request_timestamp=start).total_price


class FallbackPrices:
    """genai-prices rates per (model, provider, day); None for a model the database lacks."""

    def rates(self, model: str, provider: str, day: date) -> TieredRates | PerCall | None:
        found = self._find(model, provider)
        if found is None:
            return None
        provider_info, info = found
        label = f"{VERSION}/{provider_info.id}/{info.id}"
        if not isinstance(info.prices, ModelPrice) and any(
            isinstance(conditional.constraint, TimeOfDateConstraint) for conditional in info.prices
        ):
            return PerCall(info, provider_info, label)
        noon = datetime.combine(day, time(12), tzinfo=UTC)
        price = info.get_prices(noon)
        thresholds = sorted(
            {tier.start for value in vars(price).values() if isinstance(value, TieredPrices) for tier in value.tiers}
        )
        # A representative input count inside each tier (the library's tiers start strictly above `start`).
        samples = [1, *(start + 2 for start in thresholds)]
        return TieredRates(
            tuple(thresholds), tuple(_affine_rates(info, provider_info, noon, n, label) for n in samples)
        )

    @staticmethod
    def _find(model: str, provider: str) -> tuple[Provider, ModelInfo] | None:
        snapshot = get_snapshot()
        name = model.strip()
        if not name:
            return None
        provider_id = _PROVIDER_IDS.get(provider, provider) or None
        # The provider a span names first (Bedrock and Azure price differently), then any provider
        # whose models match the name: an unknown or proxy provider still bills as the model's maker.
        for candidate in (provider_id, None) if provider_id else (None,):
            try:
                return snapshot.find_provider_model(name, None, candidate, None)
            except LookupError:
                continue
        return None


def _affine_rates(info: ModelInfo, provider: Provider, at: datetime, n: int, label: str) -> Rates:
    def price(inp: int, cached: int = 0, out: int = 0, reasoning: int = 0) -> Decimal:
        usage = Usage(input_tokens=inp, cache_read_tokens=cached, output_tokens=out, output_reasoning_tokens=reasoning)
        return info.calc_price(usage, provider, genai_request_timestamp=at).total_price

    # Differences of one token at input count n keep every rate exact (no division).
    base = price(n)
    input_rate = base - price(n - 1)
    return Rates(
        fixed=base - n * input_rate,
        input=input_rate,
        cached_input=input_rate + price(n, cached=1) - base,
        output=price(n, out=1) - base,
        reasoning_extra=price(n, out=1, reasoning=1) - price(n, out=1),
        label=label,
        source=SOURCE,
    )
