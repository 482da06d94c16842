"""The enriched insert table of a mixed batch, checked call by call against independent truths.

Enrichment prices and classifies column-wise, grouping a batch's calls by (model, provider,
day) and tier; every call of one batch must come out exactly as it would on its own: the
book's price rows by hand, genai-prices' own result for the fallback, the refusal classifier
per call, and NULL cost for a call without token counts.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from genai_prices import Usage, calc_price

from processors.columns import DECODED_FIELDS, FIELD, INSERT_SCHEMA
from processors.decode import decode
from processors.enrich import FIRST_VERSION, NO_TOKENS, Enricher
from processors.price_fallback import SOURCE, PerCall
from processors.pricing import BOOK_SOURCE, PriceBook
from processors.providers import normalise
from processors.refusal import refusal
from tests.processor_workload import Call, request_bytes

BOOK = PriceBook.load()
# Two UTC days, the second after the book's gpt-5.5 row starts; 23:59 and 00:01 straddle midnight.
STARTS = [datetime(2026, 5, 1, 23, 59, tzinfo=UTC), datetime(2026, 5, 2, 0, 1, tzinfo=UTC)]
# (model, provider as sent, input, cached, output, reasoning)
SPECS = [
    ("gpt-5.4", "openai", 12_000, 2_000, 900, 300),
    ("gpt-5.5-2026-04-23", "", 1_000, 400, 500, 200),
    ("gpt-5.5", "az.ai.openai", 5_000, 0, 2_000, 0),
    ("gpt-4o-mini", "openai", 1_000_000, 1_000_000, 0, 0),
    ("mystery-model", "openai", 1_000, 0, 1_000, 0),  # priced by neither source
    ("claude-sonnet-4-5-20250929", "anthropic", 12_000, 2_000, 900, 300),
    ("gemini-2.5-pro", "gcp.gemini", 250_000, 10_000, 900, 300),  # above its 200k tier
    ("gemini-2.5-pro", "google", 12_000, 0, 900, 0),  # the same model below it, in the same batch
    ("deepseek-chat", "deepseek", 3_000, 1_000, 700, 0),  # priced per call (off-peak hours)
]
TEXTS = [
    "",
    "Paris is the capital of France.",
    "I'm sorry, but I can't help with that request.",
    "I can't write that for you, but here's a general overview of how such systems work.",
]
GENAI_PROVIDER = {"gcp.gemini": "google", "google": "google"}


def mixed_rows() -> list[tuple[object, ...]]:
    calls = []
    for i, (model, provider, inp, cached, out, reasoning) in enumerate(SPECS * 2):
        call = Call(
            trace_id=bytes([i + 1]) * 16,
            span_id=bytes([i + 1]) * 8,
            model=model,
            provider=provider,
            start_ns=int(STARTS[i % 2].timestamp()) * 10**9 + i,
            latency_ns=800_000_000,
            ttft_s=None,
            input_tokens=inp,
            cached_tokens=cached,
            output_tokens=out,
            reasoning_tokens=reasoning,
            output_text=TEXTS[i % len(TEXTS)],
        )
        call.api_refusal = i == 3
        call.finish_reason = "content_filter" if i == 4 else "stop"
        calls.append(call)
    rows = [list(row) for row in decode(request_bytes(calls)).rows]
    rows[5][FIELD["response_model"]] = ""  # billed as the request model
    # A span with no token count at all: unpriced whatever its model.
    no_tokens = rows[0].copy()
    no_tokens[FIELD["span_id"]] = "f" * 16
    no_tokens[FIELD["tokens_reported"]] = False
    for name in ("input_tokens", "cached_input_tokens", "output_tokens", "reasoning_tokens"):
        no_tokens[FIELD[name]] = 0
    return [tuple(row) for row in [*rows, no_tokens]]


def expected_cost(model: str, provider: str, when: datetime, tokens: tuple[int, int, int, int]) -> Decimal | None:
    inp, cached, out, reasoning = tokens
    family = BOOK.family(model)
    price = BOOK.price(family, when.date()) if family else None
    if price is not None:
        per_m: Decimal = (inp - cached) * price.input + cached * price.cached_input + out * price.output
        return per_m / 1_000_000
    if model == "mystery-model":
        return None
    usage = Usage(input_tokens=inp, cache_read_tokens=cached, output_tokens=out, output_reasoning_tokens=reasoning)
    truth: Decimal = calc_price(
        usage, model, provider_id=GENAI_PROVIDER.get(provider, provider), genai_request_timestamp=when
    ).total_price
    return truth


def test_a_mixed_batch_is_enriched_call_by_call_exactly():
    rows = mixed_rows()
    table = Enricher(BOOK, refusal).table(rows)
    assert table.schema.equals(INSERT_SCHEMA)
    assert table.num_rows == len(rows)
    alone = [Enricher(BOOK, refusal).table([row]).to_pylist()[0] for row in rows]
    sources = set()
    for decoded, enriched, single in zip(rows, table.to_pylist(), alone, strict=True):
        assert enriched == single  # a call comes out of a batch as it would on its own
        row = dict(zip(DECODED_FIELDS, decoded, strict=True))
        for name in set(row) & set(enriched) - {"provider", "start_time", "end_time"}:
            assert enriched[name] == row[name], name
        for name in ("start_time", "end_time"):
            assert enriched[name] == datetime.fromtimestamp(row[name] / 1e6, UTC), name
        billed = row["response_model"] or row["model"]
        provider = normalise(row["provider"], billed)
        assert enriched["provider"] == provider
        source, kind = refusal(row["api_refusal"], row["finish_reason"], row["output_text"])
        assert (enriched["refusal_source"], enriched["refusal_kind"], enriched["is_refusal"]) == (
            source,
            kind,
            source != "",
        )
        assert (enriched["hallucination_checked"], enriched["hallucination_flag"], enriched["version"]) == (
            False,
            False,
            FIRST_VERSION,
        )
        if not row["tokens_reported"]:
            assert (enriched["cost_usd"], enriched["price_version"], enriched["price_source"]) == (None, NO_TOKENS, "")
            continue
        tokens = (row["input_tokens"], row["cached_input_tokens"], row["output_tokens"], row["reasoning_tokens"])
        cost = expected_cost(billed, row["provider"], enriched["start_time"], tokens)
        assert enriched["cost_usd"] == cost, billed
        if cost is None:
            assert (enriched["price_version"], enriched["price_source"]) == (BOOK.version, "")
        else:
            assert enriched["price_source"] in (BOOK_SOURCE, SOURCE)
            assert enriched["price_version"].startswith(
                BOOK.version if enriched["price_source"] == BOOK_SOURCE else SOURCE
            )
        sources.add(enriched["price_source"])
    assert sources == {BOOK_SOURCE, SOURCE, ""}


def test_a_rate_finer_than_the_cost_column_is_rounded_to_it_not_a_failed_batch():
    # genai-prices holds this input rate as 1.8000000000000002E-7 USD per token (a float artefact
    # of $0.18 per 1M); its exact product does not fit Decimal(18, 12) and used to fail the insert.
    model, provider = "Qwen/Qwen3-VL-8B-Instruct", "huggingface_together"
    day_us = (date(2026, 5, 1) - date(1970, 1, 1)).days * 86_400_000_000
    priced = BOOK.costs([model], [day_us], [1_000], [0], [1_000], [0], providers=[provider])
    assert priced.sources.to_pylist() == [SOURCE]
    assert priced.costs.to_pylist() == [Decimal("0.00086")]  # 1k x $0.18 + 1k x $0.68, per 1M


def test_a_per_call_price_finer_than_the_cost_column_is_rounded_to_it_too(monkeypatch):
    # Calls priced one by one (deepseek's off-peak hours) take the same rounding as rate rows.
    monkeypatch.setattr(PerCall, "cost", lambda *_: Decimal("0.0012340000000000002"))
    day_us = (date(2026, 5, 1) - date(1970, 1, 1)).days * 86_400_000_000
    priced = PriceBook.load().costs(["deepseek-chat"], [day_us], [1_000], [0], [1_000], [0], providers=["deepseek"])
    assert priced.sources.to_pylist() == [SOURCE]
    assert priced.costs.to_pylist() == [Decimal("0.001234")]
