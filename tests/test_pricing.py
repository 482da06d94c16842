from __future__ import annotations

import random
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from processors.pricing import CACHED_RATES_MAX, PriceBook
from processors.schema import migrate

BOOK = PriceBook.load()
DAY = date(2026, 5, 1)


@pytest.mark.parametrize(
    ("model", "family"),
    [
        ("gpt-5.5", "gpt-5.5"),
        ("gpt-5.5-2026-04-23", "gpt-5.5"),
        ("gpt-5.5-pro", "gpt-5.5-pro"),
        ("gpt-5.5-pro-2026-04-23", "gpt-5.5-pro"),
        ("gpt-5.4", "gpt-5.4"),
        ("GPT-5.4-2026-03-05", "gpt-5.4"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("gpt-4o", None),
        ("gpt-5.5-turbo", None),
        ("gpt-5", None),
        ("", None),
    ],
)
def test_family_resolves_dated_snapshots_but_not_lookalikes(model, family):
    assert BOOK.family(model) == family


def test_brief_prices_and_cached_rates():
    per_m = {name: BOOK.price(name, DAY) for name in BOOK.families}
    assert (per_m["gpt-5.4"].input, per_m["gpt-5.4"].output) == (Decimal(3), Decimal(15))
    assert (per_m["gpt-5.5"].input, per_m["gpt-5.5"].output) == (Decimal(5), Decimal(30))
    assert (per_m["gpt-5.5-pro"].input, per_m["gpt-5.5-pro"].output) == (Decimal(30), Decimal(180))
    mini = per_m["gpt-4o-mini"]
    assert (mini.input, mini.cached_input, mini.output) == (Decimal("0.15"), Decimal("0.075"), Decimal("0.60"))
    for name in ("gpt-5.4", "gpt-5.5", "gpt-5.5-pro"):
        assert per_m[name].cached_input == per_m[name].input / 10


def test_cost_bills_cached_at_cached_rate_and_reasoning_once():
    # 1000 input of which 400 cached, 500 output of which 200 reasoning, on gpt-5.5:
    # 600 * $5/M + 400 * $0.5/M + 500 * $30/M = 0.003 + 0.0002 + 0.015
    cost, version = BOOK.cost("gpt-5.5-2026-04-23", DAY, 1000, 400, 500, 200)
    assert cost == Decimal("0.0182")
    assert version == f"{BOOK.version}/gpt-5.5@2026-04-23"
    mini, _ = BOOK.cost("gpt-4o-mini", DAY, 1_000_000, 1_000_000, 0, 0)
    assert mini == Decimal("0.075")


def test_inconsistent_counts_are_read_the_only_consistent_way():
    # cached above input is capped at input; reasoning above output still bills as output
    assert BOOK.cost("gpt-5.4", DAY, 100, 300, 0, 0)[0] == BOOK.cost("gpt-5.4", DAY, 100, 100, 0, 0)[0]
    assert BOOK.cost("gpt-5.4", DAY, 0, 0, 10, 50)[0] == Decimal(50) * 15 / 1_000_000


def test_unknown_model_and_days_before_a_price_are_unpriced_not_zero():
    book_only = PriceBook.load(fallback=False)
    assert BOOK.cost("claude-9", DAY, 1000, 0, 1000, 0) == (None, BOOK.version)
    assert book_only.cost("gpt-5.5", date(2026, 4, 22), 1000, 0, 1000, 0) == (None, BOOK.version)
    assert book_only.cost("gpt-5.5", date(2026, 4, 23), 1000, 0, 1000, 0)[0] == Decimal("0.035")
    assert book_only.cost("claude-sonnet-4-5", DAY, 1000, 0, 1000, 0) == (None, BOOK.version)


def test_per_model_caches_stay_bounded_under_endless_model_names():
    book = PriceBook.load(fallback=False)
    start_us = int(datetime(2026, 5, 1, tzinfo=UTC).timestamp() * 1_000_000)
    for batch in range(25):  # 25,000 distinct model strings, as a fleet of fine-tune ids would send
        models = [f"ft:gpt-5.5:acme:{batch}-{n}" for n in range(1_000)] + ["gpt-5.5"]
        priced = book.costs(models, [start_us] * 1_001, [1000] * 1_001, [0] * 1_001, [1000] * 1_001, [0] * 1_001)
        assert priced.costs[-1].as_py() == Decimal("0.035")
        assert len(book._call_rates) <= CACHED_RATES_MAX + 1_001
        assert len(book._families_of) <= CACHED_RATES_MAX + 1_001


def test_a_price_change_applies_from_its_date_on(tmp_path: Path):
    path = tmp_path / "prices.yaml"
    path.write_text(
        """
version: "v2"
families:
  gpt-5.5:
    - {effective_from: 2026-06-01, input: 4, cached_input: 0.4, output: 24}
    - {effective_from: 2026-04-23, input: 5, cached_input: 0.5, output: 30}
"""
    )
    book = PriceBook.load(path)
    assert book.cost("gpt-5.5", date(2026, 5, 31), 0, 0, 1_000_000, 0) == (Decimal(30), "v2/gpt-5.5@2026-04-23")
    assert book.cost("gpt-5.5", date(2026, 6, 1), 0, 0, 1_000_000, 0) == (Decimal(24), "v2/gpt-5.5@2026-06-01")


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ("families: {gpt-5.5: [{effective_from: 2026-04-23, input: 5, cached_input: 0.5, output: 30}]}", "version"),
        ('version: "x"\nfamilies: {gpt-5.5: []}', "no price rows"),
        (
            'version: "x"\nfamilies: {gpt-5.5: [{effective_from: 2026-04-23, input: -5, cached_input: 0, output: 30}]}',
            "greater than or equal",
        ),
        (
            'version: "x"\nfamilies: {gpt-5.5: [{effective_from: 2026-04-23, input: 5, cached_input: 6, output: 30}]}',
            "above input",
        ),
        (
            'version: "x"\nfamilies: {gpt-5.5: [{effective_from: 2026-04-23, input: 5, cached_input: 0.5, output: 30},'
            " {effective_from: 2026-04-23, input: 6, cached_input: 0.6, output: 30}]}",
            "same effective_from",
        ),
        (
            'version: "x"\nfamilies: {gpt-5.5: [{effective_from: 2026-04-23, input: 5, cached_input: 0.5, outptu: 30}]}',
            "outptu",
        ),
    ],
)
def test_invalid_price_files_are_rejected_with_the_reason(tmp_path: Path, body, complaint):
    path = tmp_path / "prices.yaml"
    path.write_text(body)
    with pytest.raises(ValidationError, match=complaint):
        PriceBook.load(path)


def test_costs_sum_exactly_in_clickhouse(ch_client, ch_database):
    migrate(ch_client, ch_database)
    rng = random.Random(7)
    models = ["gpt-5.4", "gpt-5.5-2026-04-23", "gpt-5.5-pro", "gpt-4o-mini", "mystery-model"]
    rows, expected, unpriced = [], Decimal(0), 0
    for index in range(5_000):
        model = rng.choice(models)
        tokens_in = rng.randint(1, 200_000)
        cached = rng.randint(0, tokens_in)
        tokens_out = rng.randint(0, 30_000)
        reasoning = rng.randint(0, tokens_out)
        cost, version = BOOK.cost(model, DAY, tokens_in, cached, tokens_out, reasoning)
        if cost is None:
            unpriced += 1
        else:
            expected += cost
        # stored at a recent time: older rows fall to the tables' retention TTL
        rows.append([f"s{index}", datetime.now(UTC), model, cost, version, index])
    ch_client.insert(
        f"{ch_database}.llm_calls",
        rows,
        column_names=["span_id", "start_time", "model", "cost_usd", "price_version", "version"],
    )
    total, nulls = ch_client.query(
        f"SELECT sum(cost_usd), countIf(cost_usd IS NULL) FROM {ch_database}.llm_calls FINAL"
    ).result_rows[0]
    assert unpriced > 0
    assert nulls == unpriced
    assert abs(Decimal(total) - expected) < Decimal("1e-9")
    assert Decimal(total) == expected
