from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from processors.alerts import AlertEvaluator, two_proportion_z
from processors.histograms import recompute
from processors.schema import migrate
from processors.settings import ProcessorSettings


def twenty_past_last_hour(now: datetime) -> datetime:
    """40 to 100 minutes ago, at 20 past the hour.

    Recent on purpose: the tables' retention TTL drops old rows. The tests place calls up to seven
    minutes before NOW, evaluate up to 90 s after it, and expect one budget day, one month and one
    hourly repeat slot (only the repeat test steps an hour on). At 20 past, none straddles a
    boundary by chance: run at midnight, they failed.
    """
    return (now - timedelta(hours=1)).replace(minute=20, second=30, microsecond=0)


NOW = twenty_past_last_hour(datetime.now(UTC))
COLUMNS = ["trace_id", "span_id", "start_time", "model", "latency_ms", "cost_usd", "is_error", "is_refusal", "version"]


def settings(**overrides) -> ProcessorSettings:
    base = dict(
        budget_usd=Decimal(100),
        budget_period="month",
        model_timeouts="gpt-5.4=30,gpt-5.5=45",
        alert_min_calls=100,
        alert_window_minutes=15,
    )
    return ProcessorSettings(**{**base, **overrides})


class Calls:
    def __init__(self, client, database: str) -> None:
        self.client, self.database, self.count = client, database, 0

    def add(
        self,
        model: str,
        n: int,
        *,
        cost: Decimal | None = Decimal(0),
        latency_ms=lambda i: 1000.0,
        errors: int = 0,
        refusals: int = 0,
        minutes_ago: float = 5,
    ) -> None:
        rows = []
        for i in range(n):
            self.count += 1
            start = NOW - timedelta(minutes=minutes_ago, seconds=i % 50)
            rows.append(
                [
                    f"t{self.count}",
                    f"s{self.count}",
                    start,
                    model,
                    latency_ms(i),
                    cost,
                    int(i < errors),
                    int(errors <= i < errors + refusals),
                    1,
                ]
            )
        self.client.insert(f"{self.database}.llm_calls", rows, column_names=COLUMNS)
        # The minutes the calls ended in: the histograms' key.
        recompute(
            self.client, self.database, [(row[2] + timedelta(milliseconds=row[4])).replace(tzinfo=None) for row in rows]
        )


@pytest.fixture
def calls(ch_client, ch_database) -> Calls:
    migrate(ch_client, ch_database)
    return Calls(ch_client, ch_database)


def alerts_table(client: Client, database: str) -> Sequence[Sequence[Any]]:
    return client.query(
        f"SELECT kind, severity, model, period, threshold, value FROM {database}.alerts FINAL ORDER BY kind, model, threshold"
    ).result_rows


def test_budget_burn_crosses_each_threshold_once(ch_client, ch_database, calls, caplog):
    caplog.set_level(logging.WARNING, logger="cutover.alerts")
    evaluator = AlertEvaluator(ch_client, ch_database, settings())
    calls.add("gpt-5.5", 40, cost=Decimal("1.5"))  # $60 of $100
    calls.add("mystery-model", 3, cost=None)
    first = evaluator.run_once(NOW)
    assert [(a.kind, a.threshold, a.severity) for a in first] == [("budget_burn", 0.5, "info")]
    assert "$60.00 of $100.00" in first[0].message and "3 unpriced" in first[0].message
    assert evaluator.run_once(NOW + timedelta(seconds=30)) == []  # still 60%: nothing new
    calls.add("gpt-5.5", 20, cost=Decimal("1.5"))  # $90: crosses 75% and 90% at once
    second = evaluator.run_once(NOW + timedelta(seconds=60))
    assert sorted((a.threshold, a.severity) for a in second) == [(0.75, "warning"), (0.9, "critical")]
    # a restarted processor (a fresh evaluator) does not re-record or re-log a crossing
    assert AlertEvaluator(ch_client, ch_database, settings()).run_once(NOW + timedelta(seconds=90)) == []
    period = NOW.strftime("%Y-%m")
    assert [(k, m, p, t) for k, _, m, p, t, _ in alerts_table(ch_client, ch_database)] == [
        ("budget_burn", "", period, 0.5),
        ("budget_burn", "", period, 0.75),
        ("budget_burn", "", period, 0.9),
    ]
    logged = [r.getMessage() for r in caplog.records if "budget_burn" in r.getMessage()]
    assert len(logged) == 3


def test_daily_budget_counts_only_today_and_zero_budget_is_off(ch_client, ch_database, calls):
    calls.add("gpt-5.5", 10, cost=Decimal("10"), minutes_ago=60 * 24 * 2)  # two days ago: not today
    calls.add("gpt-5.5", 10, cost=Decimal("0.6"))
    daily = AlertEvaluator(ch_client, ch_database, settings(budget_usd=Decimal(10), budget_period="day"))
    assert [(a.threshold, a.period) for a in daily.run_once(NOW)] == [(0.5, NOW.strftime("%Y-%m-%d"))]
    assert AlertEvaluator(ch_client, ch_database, settings(budget_usd=Decimal(0))).run_once(NOW) == []


def test_p99_above_the_model_timeout(ch_client, ch_database, calls):
    # gpt-5.5 (a dated snapshot: takes its family's 45 s): 2% of calls take 50 s, so p99 = 50 s
    calls.add("gpt-5.5-2026-04-23", 500, latency_ms=lambda i: 50_000.0 if i % 50 == 0 else 3_000.0)
    calls.add("gpt-5.4", 500, latency_ms=lambda i: 20_000.0 if i % 50 == 0 else 2_000.0)  # p99 20 s < 30 s
    calls.add("gpt-4o-mini", 50, latency_ms=lambda i: 120_000.0)  # too few calls to judge
    evaluator = AlertEvaluator(ch_client, ch_database, settings())
    alerts = evaluator.run_once(NOW)
    assert [(a.kind, a.model, a.threshold) for a in alerts] == [("p99_over_timeout", "gpt-5.5-2026-04-23", 45_000)]
    assert alerts[0].value == pytest.approx(50_000, rel=0.006)
    assert evaluator.run_once(NOW + timedelta(minutes=1)) == []
    # the condition persists into the next repeat slot: recorded once more
    again = evaluator.run_once(NOW + timedelta(minutes=61))
    assert [a.model for a in again] == []  # ...unless the window has moved past the slow calls
    calls.add("gpt-5.5-2026-04-23", 500, latency_ms=lambda i: 50_000.0 if i % 50 == 0 else 3_000.0, minutes_ago=-60)
    later = evaluator.run_once(NOW + timedelta(minutes=61))
    assert [(a.kind, a.model) for a in later] == [("p99_over_timeout", "gpt-5.5-2026-04-23")]
    assert later[0].period != alerts[0].period


def test_calls_cut_at_the_timeout_put_p99_at_the_timeout_and_that_alerts(ch_client, ch_database, calls):
    # 2% of gpt-5.4 calls time out and are recorded at the 30 s cut; the rest take 2 s
    calls.add("gpt-5.4", 500, latency_ms=lambda i: 30_000.0 if i % 50 == 0 else 2_000.0)
    # 0.8% time out: p99 stays below the timeout
    calls.add("gpt-5.5", 500, latency_ms=lambda i: 45_000.0 if i < 4 else 3_000.0)
    alerts = AlertEvaluator(ch_client, ch_database, settings()).run_once(NOW)
    assert [(a.model, a.threshold) for a in alerts] == [("gpt-5.4", 30_000)]
    assert "over 1% of calls are cut" in alerts[0].message


def test_refusal_rate_significantly_above_the_other_model(ch_client, ch_database, calls):
    calls.add("gpt-5.5", 400, refusals=40, errors=4)  # refusal 40/396 = 10.1%, errors 1%
    calls.add("gpt-5.4", 400, refusals=8, errors=4)  # refusal 2%, errors 1%
    alerts = AlertEvaluator(ch_client, ch_database, settings()).run_once(NOW)
    assert [(a.kind, a.model) for a in alerts] == [("refusal_rate", "gpt-5.5")]
    assert "10.1%" in alerts[0].message and "gpt-5.4" in alerts[0].message


def test_small_samples_and_small_gaps_do_not_alert(ch_client, ch_database, calls):
    calls.add("gpt-5.5", 60, refusals=30)  # 50% vs 0%, but only 60 calls
    calls.add("gpt-5.4", 60)
    assert AlertEvaluator(ch_client, ch_database, settings()).run_once(NOW) == []
    calls.add("gpt-5.5", 20_000, refusals=300, minutes_ago=6)  # 1.5%+ vs 1.0%: significant, but < 2 points
    calls.add("gpt-5.4", 20_000, refusals=200, minutes_ago=6)
    assert AlertEvaluator(ch_client, ch_database, settings()).run_once(NOW) == []
    assert AlertEvaluator(ch_client, ch_database, settings(alert_rate_min_diff=0.001)).run_once(NOW)


def test_error_rate_and_the_z_test():
    assert two_proportion_z(30, 300, 3, 300) > 4
    assert two_proportion_z(3, 300, 30, 300) < -4
    assert two_proportion_z(0, 0, 5, 100) == 0.0 and two_proportion_z(0, 100, 0, 100) == 0.0
    rng = random.Random(1)
    # two models with the same 5% error rate: the 3-sigma test stays quiet in 200 trials out of 200 or so
    quiet = sum(
        two_proportion_z(
            sum(rng.random() < 0.05 for _ in range(500)), 500, sum(rng.random() < 0.05 for _ in range(500)), 500
        )
        < 3
        for _ in range(200)
    )
    assert quiet >= 198


def test_error_rate_alert(ch_client, ch_database, calls):
    calls.add("gpt-5.5", 300, errors=45)  # 15%
    calls.add("gpt-5.4", 300, errors=6)  # 2%
    alerts = AlertEvaluator(ch_client, ch_database, settings()).run_once(NOW)
    assert [(a.kind, a.model, a.severity) for a in alerts] == [("error_rate", "gpt-5.5", "warning")]
    assert alerts_table(ch_client, ch_database)[0][:3] == ("error_rate", "warning", "gpt-5.5")
