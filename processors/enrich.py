"""Decoded call rows -> the `llm_calls` insert columns: cost, price version and refusal added.

Works column-wise on a whole batch: one transpose (`zip(*rows)`, in C), then one pass per
derived column. Pricing and refusal classification live in their own modules
(`processors.pricing`, `processors.refusal`); this module only wires them in.
"""

from __future__ import annotations

from collections.abc import Callable

from processors.columns import CALL_COLUMNS, DECODED_FIELDS
from processors.pricing import PriceBook
from processors.providers import normalise as normalise_provider

# The version of a freshly decoded call row; the hallucination worker re-inserts version + 1.
FIRST_VERSION = 1
# The price label of a call whose span reported no token count: unpriced (NULL), never $0.
NO_TOKENS = "unpriced: no token counts"

# (api refusal flag, finish reason, output text) -> (refusal source, "" when not refused;
# refusal kind, "", "full" or "partial"). Only called for calls with one of the three (an API
# flag, a finish reason of `content_filter`, or output text): a call with none of them has
# nothing that could be a refusal.
RefusalClassifier = Callable[[bool, str, str], tuple[str, str]]


class Enricher:
    """Adds the derived columns to a batch of decoded rows."""

    def __init__(self, book: PriceBook, refusal: RefusalClassifier) -> None:
        self._book = book
        self._refusal = refusal

    def columns(self, rows: list[tuple]) -> dict[str, list]:
        """Insert columns (CALL_COLUMNS order) for `rows`."""
        decoded = (
            dict(zip(DECODED_FIELDS, map(list, zip(*rows, strict=True)), strict=True))
            if rows
            else {n: [] for n in DECODED_FIELDS}
        )
        # The response model is the snapshot that actually served (and billed) the call.
        billed = [
            response or model for model, response in zip(decoded["model"], decoded["response_model"], strict=True)
        ]
        providers = decoded["provider"] = [
            normalise_provider(provider, model) for provider, model in zip(decoded["provider"], billed, strict=True)
        ]
        priced = self._book.costs(
            billed,
            decoded["start_time"],
            decoded["input_tokens"],
            decoded["cached_input_tokens"],
            decoded["output_tokens"],
            decoded["reasoning_tokens"],
            providers=providers,
        )
        if not all(decoded["tokens_reported"]):
            for i, reported in enumerate(decoded["tokens_reported"]):
                if not reported:
                    priced.costs[i] = None
                    priced.versions[i] = NO_TOKENS
                    priced.sources[i] = ""
        classify = self._refusal
        verdicts = [
            classify(api, finish, text) if api or text or finish == "content_filter" else ("", "")
            for api, finish, text in zip(
                decoded["api_refusal"], decoded["finish_reason"], decoded["output_text"], strict=True
            )
        ]
        sources = [source for source, _ in verdicts]
        n = len(rows)
        del decoded["api_refusal"]
        decoded.update(
            cost_usd=priced.costs,
            price_version=priced.versions,
            is_refusal=[source != "" for source in sources],
            refusal_source=sources,
            hallucination_checked=[False] * n,
            hallucination_flag=[False] * n,
            version=[FIRST_VERSION] * n,
            refusal_kind=[kind for _, kind in verdicts],
            price_source=priced.sources,
        )
        return {name: decoded[name] for name in CALL_COLUMNS}


def row_dicts(columns: dict[str, list], indexes: list[int]) -> list[dict]:
    """Full llm_calls row dicts of the given batch positions (for the hallucination worker)."""
    picked = [[values[i] for i in indexes] for values in columns.values()]
    return [dict(zip(columns, row, strict=True)) for row in zip(*picked, strict=True)]
