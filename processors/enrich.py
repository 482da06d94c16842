"""Decoded call rows -> the `llm_calls` insert columns: cost, price version and refusal added.

Works column-wise on a whole batch: one transpose (`zip(*rows)`, in C), then one pass per
derived column. Pricing and refusal classification are the other engineer's modules
(`processors.pricing`, `processors.refusal`); this module only wires them in.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timezone
from decimal import Decimal

from processors.decode import DECODED_FIELDS
from processors.pricing import PriceBook

# Written columns of llm_calls; the rest (ingested_at, hallucination_sample_rate) take defaults.
CALL_COLUMNS = tuple(name for name in DECODED_FIELDS if name != "api_refusal") + (
    "cost_usd",
    "price_version",
    "is_refusal",
    "refusal_source",
    "hallucination_checked",
    "hallucination_flag",
    "version",
)
# The version of a freshly decoded call row; the hallucination worker re-inserts version + 1.
FIRST_VERSION = 1
_US_PER_DAY = 86_400_000_000

RefusalClassifier = Callable[[bool, str, str], str]


class Enricher:
    """Adds the derived columns to a batch of decoded rows."""

    def __init__(self, book: PriceBook, refusal_source: RefusalClassifier) -> None:
        self._book = book
        self._refusal_source = refusal_source
        self._days: dict[int, date] = {}

    def _day(self, start_us: int) -> date:
        index = start_us // _US_PER_DAY
        day = self._days.get(index)
        if day is None:
            day = self._days[index] = datetime.fromtimestamp(index * 86_400, tz=timezone.utc).date()
        return day

    def columns(self, rows: list[tuple]) -> dict[str, list]:
        """Insert columns (CALL_COLUMNS order) for `rows`; also counts unpriced calls."""
        decoded = dict(zip(DECODED_FIELDS, map(list, zip(*rows)))) if rows else {n: [] for n in DECODED_FIELDS}
        cost = self._book.cost
        day = self._day
        costs: list[Decimal | None] = []
        versions: list[str] = []
        for model, response_model, start, inp, cached, out, reasoning in zip(
            decoded["model"],
            decoded["response_model"],
            decoded["start_time"],
            decoded["input_tokens"],
            decoded["cached_input_tokens"],
            decoded["output_tokens"],
            decoded["reasoning_tokens"],
        ):
            # The response model is the snapshot that actually served (and billed) the call.
            usd, version = cost(response_model or model, day(start), inp, cached, out, reasoning)
            costs.append(usd)
            versions.append(version)
        classify = self._refusal_source
        sources = [
            classify(api, finish, text)
            for api, finish, text in zip(decoded["api_refusal"], decoded["finish_reason"], decoded["output_text"])
        ]
        n = len(rows)
        columns = {name: decoded[name] for name in DECODED_FIELDS if name != "api_refusal"}
        columns.update(
            cost_usd=costs,
            price_version=versions,
            is_refusal=[source != "" for source in sources],
            refusal_source=sources,
            hallucination_checked=[False] * n,
            hallucination_flag=[False] * n,
            version=[FIRST_VERSION] * n,
        )
        return columns


def row_dicts(columns: dict[str, list], indexes: list[int]) -> list[dict]:
    """Full llm_calls row dicts of the given batch positions (for the hallucination worker)."""
    return [{name: values[i] for name, values in columns.items()} for i in indexes]


