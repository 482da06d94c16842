"""genai-prices as the fallback under our own price book, and provider names normalised."""

from __future__ import annotations

import random
import time
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from genai_prices import Usage, calc_price

from processors.price_fallback import SOURCE, VERSION
from processors.pricing import PriceBook
from processors.providers import normalise
from processors.service import ProcessorService
from tests.processor_workload import Call, messages, produce
from tests.test_processor_service import run_until_consumed, settings_for

BOOK = PriceBook.load()
DAY = date(2026, 5, 1)
DAY_US = (DAY - date(1970, 1, 1)).days * 86_400_000_000

# (model as sent, provider as sent, genai-prices provider id that must price it)
FOREIGN = [
    ("claude-sonnet-4-5-20250929", "anthropic", "anthropic"),
    ("claude-3-5-haiku-20241022", "", "anthropic"),
    ("gemini-2.5-pro", "gcp.gemini", "google"),
    ("gemini-2.5-flash", "gcp.vertex_ai", "google"),
    ("anthropic.claude-3-5-sonnet-20240620-v1:0", "aws.bedrock", "aws"),
    ("us.anthropic.claude-3-7-sonnet-20250219-v1:0", "aws.bedrock", "aws"),
    ("mistral-large-latest", "mistral_ai", "mistral"),
    ("gpt-4o", "azure.ai.openai", "azure"),
    ("o3", "openai", "openai"),
    ("deepseek-chat", "deepseek", "deepseek"),
]
GENAI_PROVIDER = {"gcp.gemini": "google", "gcp.vertex_ai": "google", "aws.bedrock": "aws", "mistral_ai": "mistral"}


def one(model: str, provider: str, inp: int, cached: int, out: int, reasoning: int, book: PriceBook = BOOK):
    priced = book.costs([model], [DAY_US], [inp], [cached], [out], [reasoning], providers=[provider])
    return priced.costs[0].as_py(), priced.versions[0].as_py(), priced.sources[0].as_py()


@pytest.mark.parametrize(("model", "provider", "priced_by"), FOREIGN)
def test_fallback_prices_every_call_exactly_as_genai_prices_does(model, provider, priced_by):
    # Random counts on both sides of the 200k-token tier of Claude and Gemini, with cached and
    # reasoning tokens: the per-(model, day) rates must reproduce the library's own result exactly.
    rng = random.Random(model)
    provider_id = GENAI_PROVIDER.get(provider, provider) or None
    for _ in range(40):
        inp = rng.choice([rng.randint(1, 5_000), rng.randint(150_000, 400_000), 200_000, 200_001])
        cached = rng.randint(0, inp) if rng.random() < 0.5 else 0
        out = rng.randint(0, 8_000)
        reasoning = rng.randint(0, out)
        cost, label, source = one(model, provider, inp, cached, out, reasoning)
        truth = calc_price(
            Usage(input_tokens=inp, cache_read_tokens=cached, output_tokens=out, output_reasoning_tokens=reasoning),
            model,
            provider_id=provider_id,
            genai_request_timestamp=datetime(2026, 5, 1, tzinfo=UTC),  # DAY_US: off-peak for deepseek
        )
        assert cost == truth.total_price, (inp, cached, out, reasoning)
        assert cost > 0
        assert source == SOURCE
        assert label == f"{VERSION}/{priced_by}/{truth.model.id}"


def test_our_book_wins_where_both_know_a_model():
    # genai-prices lists gpt-5.4 at $2.50/M input; the brief (our book) says $3.
    cost, label, source = one("gpt-5.4", "openai", 1_000_000, 0, 0, 0)
    assert (cost, source) == (Decimal(3), "book")
    assert label == f"{BOOK.version}/gpt-5.4@2026-03-05"
    assert calc_price(Usage(input_tokens=1_000_000), "gpt-5.4").total_price != Decimal(3)


def test_a_day_before_the_books_first_row_falls_back_to_genai_prices():
    assert one("gpt-5.5", "openai", 1000, 0, 1000, 0)[2] == "book"
    early = BOOK.costs(["gpt-5.5"], [DAY_US - 30 * 86_400_000_000], [1000], [0], [1000], [0], providers=["openai"])
    assert early.sources.to_pylist() == [SOURCE] and early.costs[0].is_valid


def test_unknown_models_and_missing_token_counts_are_null_never_zero():
    assert one("mystery-model", "openai", 1000, 0, 1000, 0) == (None, BOOK.version, "")
    assert one("", "", 1000, 0, 1000, 0) == (None, BOOK.version, "")
    assert one("claude-sonnet-4-5", "anthropic", None, None, 10, 0) == (None, BOOK.version, "")
    assert one("gpt-5.5", "openai", 10, 0, None, None) == (None, BOOK.version, "")
    # cached and reasoning counts may be missing on their own: they are then zero
    assert one("gpt-5.5", "openai", 1_000_000, None, 0, None)[0] == Decimal(5)


def test_the_fallback_can_be_turned_off():
    book = PriceBook.load(fallback=False)
    assert one("claude-sonnet-4-5", "anthropic", 1000, 0, 1000, 0, book) == (None, book.version, "")
    assert one("gpt-5.5", "openai", 1_000_000, 0, 0, 0, book)[0] == Decimal(5)


@pytest.mark.parametrize(
    ("sent", "model", "expected"),
    [
        ("openai", "gpt-5.5", "openai"),
        ("az.ai.openai", "gpt-4o", "azure.ai.openai"),
        ("Azure", "my-deployment", "azure.ai.openai"),
        ("AWS Bedrock", "anthropic.claude-3-5-sonnet-20240620-v1:0", "aws.bedrock"),
        ("", "us.anthropic.claude-3-7-sonnet-20250219-v1:0", "aws.bedrock"),
        ("", "amazon.nova-pro-v1:0", "aws.bedrock"),
        ("", "claude-sonnet-4-5", "anthropic"),
        ("google", "gemini-2.5-pro", "gcp.gemini"),
        ("vertexai", "gemini-2.5-pro", "gcp.vertex_ai"),
        ("", "gemini-2.5-flash", "gcp.gemini"),
        ("mistralai", "mistral-large-latest", "mistral_ai"),
        ("", "codestral-latest", "mistral_ai"),
        ("", "gpt-4o-mini", "openai"),
        ("", "o3-mini", "openai"),
        ("xai", "grok-4", "x_ai"),
        ("", "deepseek-chat", "deepseek"),
        ("my-gateway", "gpt-5.5", "my-gateway"),
        ("", "mystery-model", ""),
    ],
)
def test_provider_names_are_normalised_to_semconv(sent, model, expected):
    assert normalise(sent, model) == expected


def test_claude_gemini_and_bedrock_calls_land_priced_from_the_fallback(kafka_bootstrap, topic, ch_client, ch_database):
    now = time.time_ns() - 120 * 10**9
    spec = [
        ("claude-sonnet-4-5-20250929", "anthropic", "anthropic", "anthropic"),
        ("gemini-2.5-pro", "", "gcp.gemini", "google"),
        ("anthropic.claude-3-5-sonnet-20240620-v1:0", "aws.bedrock", "aws.bedrock", "aws"),
        ("gpt-5.4", "openai", "openai", None),
        ("mystery-model", "openai", "openai", None),
    ]
    calls = [
        Call(
            trace_id=bytes([i + 1]) * 16,
            span_id=bytes([i + 1]) * 8,
            model=model,
            provider=sent,
            start_ns=now + i * 10**6,
            latency_ns=800_000_000,
            ttft_s=None,
            input_tokens=250_000 if i == 1 else 12_000,  # the Gemini call crosses its 200k tier
            cached_tokens=2_000,
            output_tokens=900,
            reasoning_tokens=300,
        )
        for i, (model, sent, _, _) in enumerate(spec)
    ]
    items = list(messages(calls, per_message=5))
    produce(kafka_bootstrap, topic, items)
    service = ProcessorService(settings_for(kafka_bootstrap, topic, ch_database, f"g_{topic}"), client=ch_client)
    run_until_consumed([service], len(items))
    rows = {
        r[0]: r[1:]
        for r in ch_client.query(
            f"SELECT model, provider, cost_usd, price_version, price_source FROM {ch_database}.llm_calls FINAL"
        ).result_rows
    }
    assert set(rows) == {s[0] for s in spec}
    when = datetime.fromtimestamp(now / 1e9, UTC)
    for call, (model, _, provider, genai_id) in zip(calls, spec, strict=True):
        stored_provider, cost, version, source = rows[model]
        assert stored_provider == provider, model
        if genai_id is not None:
            usage = Usage(input_tokens=call.input_tokens, cache_read_tokens=2_000, output_tokens=900)
            usage.output_reasoning_tokens = 300
            truth = calc_price(usage, model, provider_id=genai_id, genai_request_timestamp=when)
            assert (Decimal(cost), source) == (truth.total_price, SOURCE), model
            assert version.startswith(f"{VERSION}/{genai_id}/"), version
    assert rows["gpt-5.4"][3] == "book"
    assert rows["gpt-5.4"][1] == Decimal("0.0441")  # 10k x $3 + 2k cached x $0.30 + 900 x $15, per 1M
    assert rows["mystery-model"][1:] == (None, BOOK.version, "")
