"""Every dashboard page rendered by Streamlit's AppTest against a seeded chDB database; the
numbers on the page are checked against SQL over the raw rows."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df
from streamlit.testing.v1 import AppTest

from cutover import store
from cutover.agreement import DEFINITION, pair_agrees
from dashboards import context, filters
from dashboards.freshness import HINT, ago
from dashboards.settings import DashboardSettings
from tests.dashboard_seed import seed

APP = str(Path(__file__).resolve().parents[1] / "dashboards" / "app.py")
PAGES = ["overview", "latency", "cost", "quality", "shadow", "readiness", "alerts", "sql_explorer"]
OK = "(is_error = 0 OR is_timeout = 1)"  # the calls the latency histograms cover


def point_app_at(ch_client, ch_database, chdb_path, monkeypatch) -> None:
    dsn = f"chdb://{chdb_path}"
    monkeypatch.setitem(store._clients, dsn, ch_client)  # the app's client_for() gets the session's one engine
    monkeypatch.setattr(context, "_settings", DashboardSettings(clickhouse_url=dsn, clickhouse_database=ch_database))


@pytest.fixture
def seeded(ch_client, ch_database, chdb_path, monkeypatch):
    """6,000 calls over the last 6 hours, and the app pointed at them through the shared client.

    The page clock stands still half a minute after the newest call, so the sidebar and every
    query of a page see the same relative window even when a test runs across a minute boundary.
    """
    _, end = seed(ch_client, ch_database, calls=6000, hours=6)
    point_app_at(ch_client, ch_database, chdb_path, monkeypatch)
    monkeypatch.setattr(filters, "now", lambda: end + timedelta(seconds=30))
    return ch_client, ch_database


def render(page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def one(client, sql: str) -> tuple[Any, ...]:
    row: tuple[Any, ...] = client.query(sql).result_rows[0]
    return row


def default_window(at: AppTest, column: str = "start_time") -> str:
    """The range the sidebar shows by default, checked to be the last hour up to the current minute,
    as a SQL condition on `column`."""
    assert at.selectbox(key="range").value == "Last hour"
    found = re.match(r"(\S+ \S+) to (\S+ \S+) UTC", at.sidebar.caption[0].value)
    assert found, at.sidebar.caption[0].value
    start, end = (datetime.fromisoformat(x) for x in found.groups())
    assert end - start == timedelta(hours=1) and end - timedelta(minutes=1) < filters.now() <= end
    return f"{column} >= '{start}' AND {column} < '{end}'"


def number(text: str) -> float:
    value = float(re.sub(r"[^0-9.\-]", "", text))
    return value * 1000 if text.endswith(" s") else value


def newest_call_age(client, db: str) -> float:
    """Seconds since the newest stored call started, on ClickHouse's clock."""
    return float(
        one(client, f"SELECT dateDiff('millisecond', max(start_time), now64(3)) / 1000 FROM {db}.llm_calls")[0]
    )


def shown_age(text: str, before: float, after: float) -> bool:
    """Whether `text` names the newest call's age as it was at some moment of the render."""
    return any(ago(age) in text for age in (before, after, *range(int(before), int(after) + 1)))


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_and_says_the_data_is_live(seeded, page):
    client, db = seeded
    before = newest_call_age(client, db)
    at = render(page)
    after = newest_call_age(client, db)
    assert not at.error, [e.value for e in at.error]
    assert at.title[0].value
    live = [c.value for c in at.caption if "Live: newest call started" in c.value]
    assert live and shown_age(live[0], before, after), ([c.value for c in at.caption], before, after)
    assert not [w.value for w in at.warning if "new calls" in w.value]


def test_no_new_calls_is_a_plain_warning_on_every_page(ch_client, ch_database, chdb_path, monkeypatch):
    """The application stopped sending 7 minutes ago: every page says so, and what to check."""
    client, db = ch_client, ch_database
    seed(client, db, calls=600, hours=1, end=datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=7))
    point_app_at(client, db, chdb_path, monkeypatch)
    for page in PAGES:
        before = newest_call_age(client, db)
        at = render(page)
        after = newest_call_age(client, db)
        stale = [w.value for w in at.warning if w.value.startswith("No new calls for ")]
        assert stale and HINT in stale[0] and shown_age(stale[0].split(",")[0], before, after), (
            [w.value for w in at.warning],
            before,
            after,
        )

    # Old calls still arriving (a backlog, late hallucination verdicts) is not "live" either.
    client.command(
        f"""INSERT INTO {db}.llm_calls SELECT * REPLACE (version + 1 AS version, now64(3) AS ingested_at)
            FROM {db}.llm_calls FINAL ORDER BY start_time DESC LIMIT 1"""
    )
    before = newest_call_age(client, db)
    at = render("overview")
    after = newest_call_age(client, db)
    behind = [w.value for w in at.warning if "behind: rows are still being stored" in w.value]
    assert behind and shown_age(behind[0].split(":")[0], before, after), ([w.value for w in at.warning], before, after)


def chart_data(chart) -> tuple[str, pd.DataFrame]:
    """(y-axis title, data) of an Altair chart on the page."""
    spec = json.loads(chart.proto.spec)
    return spec["encoding"]["y"]["title"], convert_arrow_bytes_to_pandas_df(chart.proto.datasets[0].data.data)


def naive(moment) -> pd.Timestamp:
    moment = pd.Timestamp(moment)
    return moment.tz_convert(None) if moment.tzinfo else moment


def test_overview_charts_equal_sql_over_raw_rows(seeded):
    """Calls per minute (zeros included, the minute in progress left out) and p95 per minute per model."""
    client, db = seeded
    at = render("overview")
    window = default_window(at)
    charts = dict(chart_data(c) for c in at.get("vega_lite_chart"))
    assert set(charts) == {"calls/min", "p95 latency (ms)"}

    counted = client.query(
        f"SELECT toStartOfMinute(start_time), model, count() FROM {db}.llm_calls FINAL WHERE {window} GROUP BY ALL"
    )
    per_minute = {(naive(t), model): n for t, model, n in counted.result_rows}
    calls = charts["calls/min"]
    in_progress = pd.Timestamp(filters.now().replace(second=0, microsecond=0))
    assert len(calls) == 59 * 3 and in_progress not in {naive(t) for t in calls["t"]}
    assert sum(calls["value"]) == sum(per_minute.values()) > 0
    for row in calls.itertuples():
        assert row.value == per_minute.get((naive(row.t), row.model), 0), row

    # Latency charts count a call in the minute it ended.
    exact = client.query(
        f"""SELECT toStartOfMinute(end_time), model, quantileExactLow(0.95)(latency_ms) FROM {db}.llm_calls FINAL
            WHERE {OK} AND {default_window(at, "end_time")} GROUP BY ALL"""
    )
    p95 = {(naive(row.t), row.model): row.value for row in charts["p95 latency (ms)"].itertuples()}
    assert len(p95) == len(exact.result_rows) > 100
    for t, model, value in exact.result_rows:
        assert p95[(naive(t), model)] == pytest.approx(value, rel=0.012), (t, model)

    # Six hours: 5-minute buckets, averaged per minute; a bucket cut by the range's start or still in progress is left out.
    at.selectbox(key="range").set_value("Last 6 hours").run()
    found = re.match(r"(\S+ \S+) to (\S+ \S+) UTC", at.sidebar.caption[0].value)
    assert found, at.sidebar.caption[0].value
    start, end = (pd.Timestamp(x) for x in found.groups())
    whole = pd.date_range(start.ceil("5min"), end, freq="5min")
    whole = [t for t in whole if t + timedelta(minutes=5) <= min(end, filters.now())]
    counted = client.query(
        f"""SELECT toStartOfInterval(start_time, INTERVAL 5 MINUTE), model, count() FROM {db}.llm_calls FINAL
            WHERE start_time >= '{start}' AND start_time < '{end}' GROUP BY ALL"""
    )
    per_bucket = {(naive(t), model): n / 5 for t, model, n in counted.result_rows}
    calls = dict(chart_data(c) for c in at.get("vega_lite_chart"))["calls/min"]
    assert sorted({naive(t) for t in calls["t"]}) == whole and len(calls) == len(whole) * 3
    for row in calls.itertuples():
        assert row.value == pytest.approx(per_bucket.get((naive(row.t), row.model), 0)), row


TILES = 13  # per model


def traffic_minutes(client, db: str, model: str, start: datetime, end: datetime) -> float:
    """The minutes of [start, end) with the model's traffic: from its first call there to the end (or now)."""
    first: datetime = one(
        client,
        f"SELECT min(start_time) FROM {db}.llm_calls WHERE model = '{model}' AND start_time >= '{start}' AND start_time < '{end}'",
    )[0].replace(tzinfo=None)
    return (min(end, filters.now()) - max(first, start)).total_seconds() / 60


def test_overview_tiles_equal_sql_over_raw_rows(seeded):
    client, db = seeded
    at = render("overview")
    window = default_window(at)
    start, end = (
        datetime.fromisoformat(x) for x in re.match(r"(\S+ \S+) to (\S+ \S+) UTC", at.sidebar.caption[0].value).groups()
    )
    headers = [h.value for h in at.subheader]
    # A and B default to the two busiest models; tiles are read in page order, one container per model.
    assert sorted(headers) == ["gpt-5.4", "gpt-5.5 (B)", "gpt-x-preview"]
    metrics = [(m.label, m.value, m.delta) for m in at.metric]
    assert len(metrics) == TILES * len(headers)
    every = one(client, f"SELECT count() FROM {db}.llm_calls FINAL WHERE {window}")[0]
    per_call = {}
    for i, header in enumerate(headers):
        model = header.removesuffix(" (B)")
        tile = {label: value for label, value, _ in metrics[i * TILES : (i + 1) * TILES]}
        deltas = {label: delta for label, _, delta in metrics[i * TILES : (i + 1) * TILES]}
        calls, errors, refusals, checked, flagged, cost, unpriced, tokens = one(
            client,
            f"""SELECT count(), sum(is_error), sum(is_refusal), sum(hallucination_checked), sum(hallucination_flag),
                       toFloat64(sum(cost_usd)), countIf(cost_usd IS NULL), sum(input_tokens + output_tokens)
                FROM {db}.llm_calls FINAL WHERE model = '{model}' AND {window}""",
        )
        minutes = traffic_minutes(client, db, model, start, end)
        assert 59 < minutes < 60  # the seed's traffic fills the hour; the clock stands 30 s into the last minute
        assert tile["calls"] == f"{calls:,}"
        assert tile["calls/min"] == f"{calls / minutes:,.1f}"  # over the time with traffic, not the range
        assert tile["traffic share"] == f"{calls / every * 100:.1f}%"
        assert tile["error %"] == f"{errors / calls * 100:.2f}%"
        assert tile["refusal %"] == f"{refusals / calls * 100:.2f}%"
        assert tile["flagged %"] == f"{flagged / checked * 100:.2f}%"
        assert tile["unpriced calls"] == f"{unpriced:,}"
        assert tile["tokens/call"] == f"{tokens / calls:,.0f}"
        if cost is None:  # every call unpriced: unknown, never $0
            assert tile["cost/hour"] == tile["cost/call"] == "–"
        else:
            assert number(tile["cost/hour"]) == pytest.approx(cost / (minutes / 60), abs=0.01)
            assert number(tile["cost/call"]) == pytest.approx(cost / (calls - unpriced), abs=0.00005)
            per_call[model] = cost / (calls - unpriced)
        # B against A: per call only; rates and totals that follow traffic share are never differenced.
        assert not deltas["calls/min"] and not deltas["cost/hour"] and not deltas["traffic share"]
        if header.endswith("(B)"):
            assert number(deltas["cost/call"]) == pytest.approx(per_call["gpt-5.5"] - per_call["gpt-5.4"], abs=0.00001)
        for q in (0.5, 0.95, 0.99):
            exact = one(
                client,
                f"SELECT quantileExactLow({q})(latency_ms) FROM {db}.llm_calls FINAL WHERE model = '{model}' AND {OK}"
                f" AND {default_window(at, 'end_time')}",
            )[0]
            shown = number(tile[f"p{int(q * 100)} latency"])
            assert shown == pytest.approx(exact, rel=0.012), (model, q)  # 0.54% bucket error + display rounding


def test_too_few_calls_to_compare_is_marked_and_shows_no_deltas(seeded, monkeypatch):
    monkeypatch.setattr(
        context, "_settings", context.settings().model_copy(update={"dashboard_compare_min_calls": 10_000})
    )
    at = render("overview")
    marked = [w.value for w in at.warning if w.value.startswith("Too few calls to compare with gpt-5.4")]
    assert len(marked) == 1 and "CUTOVER_DASHBOARD_COMPARE_MIN_CALLS" in marked[0]
    assert not any(m.delta for m in at.metric)


def test_timeout_advisor_counts_equal_sql_over_raw_rows(seeded):
    client, db = seeded
    at = render("latency")
    window = default_window(at, "end_time")  # latency figures count a call when it ended
    assert len(at.get("vega_lite_chart")) >= 3  # distribution, CDF, percentiles over time
    advice = at.table[0].value  # a static table: readable in a screenshot
    assert len(advice) == 12  # 3 models x 4 tasks
    for row in advice.itertuples():
        calls, cut = one(
            client,
            f"""SELECT count(), countIf(latency_ms > {row[3] * 1000}) FROM {db}.llm_calls FINAL
                WHERE model = '{row.model}' AND task = '{row.task}' AND {OK} AND {window}""",
        )
        assert row.calls == calls
        assert row[5] == cut  # "calls it would cut"
        assert cut <= calls * (1 - 0.995) + 1e-9


def test_cost_quality_shadow_and_alerts_equal_sql(seeded):
    client, db = seeded
    cost_page = render("cost")
    window = default_window(cost_page)
    spend, unpriced = one(
        client, f"SELECT toFloat64(sum(cost_usd)), countIf(cost_usd IS NULL) FROM {db}.llm_calls FINAL WHERE {window}"
    )
    cost = {m.label: m.value for m in cost_page.metric}
    assert number(cost["spend in range"]) == pytest.approx(spend, abs=0.01)
    assert cost["unpriced calls"] == f"{unpriced:,}" and unpriced > 0

    quality = render("quality").metric
    refusal_rates = [m.value for m in quality if m.label == "refusal rate"]
    expected = client.query(
        f"SELECT model, sum(is_refusal) / count() FROM {db}.llm_calls FINAL WHERE {window} GROUP BY model ORDER BY model"
    ).result_rows
    assert sorted(refusal_rates) == sorted(f"{rate * 100:.2f}%" for _, rate in expected)

    shadow = render("shadow")
    outcomes = client.query(
        f"""SELECT anyIf(multiIf(is_error = 1, 'error', is_refusal = 1, 'refusal', 'answer'), shadow_role = 'primary') AS po,
                   anyIf(multiIf(is_error = 1, 'error', is_refusal = 1, 'refusal', 'answer'), shadow_role = 'shadow') AS so,
                   anyIf(content_captured, shadow_role = 'primary') AND anyIf(content_captured, shadow_role = 'shadow'),
                   anyIf(output_text, shadow_role = 'primary') AS pt, anyIf(output_text, shadow_role = 'shadow') AS st
            FROM {db}.llm_calls FINAL WHERE shadow_pair_id != '' AND {window} GROUP BY shadow_pair_id
            HAVING countIf(shadow_role = 'primary') = 1 AND countIf(shadow_role = 'shadow') = 1"""
    ).result_rows
    pairs = len(outcomes)
    agreed = sum(
        pair_agrees(po, so, pt if captured else None, st if captured else None).agree
        for po, so, captured, pt, st in outcomes
    )
    assert pairs >= 20  # enough for the p95 delta's bootstrap
    shown = {m.label: m.value for m in shadow.metric}
    assert shown["agreement"] == f"{agreed / pairs * 100:.1f}%"
    assert any(DEFINITION in caption.value for caption in shadow.caption)  # the definition, in one sentence
    verdict = shadow.success[0].value
    assert verdict.startswith("gpt-5.5 ") and verdict.endswith(f"on {pairs:,} pairs."), verdict

    alerts_page = render("alerts")
    expected = [
        row[0]
        for row in client.query(
            f"SELECT kind FROM {db}.alerts FINAL WHERE {default_window(alerts_page, 'alert_time')} ORDER BY alert_time DESC"
        ).result_rows
    ]
    assert (
        list(alerts_page.dataframe[0].value["kind"]) == expected == ["refusal_rate"]
    )  # the budget alert is older than the hour


def test_sql_explorer_refuses_writes_and_runs_examples(seeded):
    client, db = seeded
    before = one(client, f"SELECT count() FROM {db}.llm_calls")[0]
    at = render("sql_explorer")
    at.text_area(key="sql").set_value(f"DROP TABLE {db}.llm_calls")
    at.button(key="run_sql").click().run()
    assert at.error and "read-only" in at.error[0].value and "Nothing was changed" in at.error[0].value
    assert one(client, f"SELECT count() FROM {db}.llm_calls")[0] == before

    at.text_area(key="sql").set_value(
        f"SELECT model, count() AS calls FROM {db}.llm_calls GROUP BY model ORDER BY model"
    )
    at.button(key="run_sql").click().run()
    assert not at.error
    assert list(at.dataframe[0].value["calls"]) == [
        r[1]
        for r in client.query(f"SELECT model, count() FROM {db}.llm_calls GROUP BY model ORDER BY model").result_rows
    ]

    at.button(key="example_0").click().run()
    assert f"{db}.latency_histograms" in at.text_area(key="sql").value  # docs/sql.md, on the configured database
    at.button(key="run_sql").click().run()
    assert not at.error, [e.value for e in at.error]
    assert len(at.dataframe[0].value) == 3  # p50/p95/p99 per model


def test_a_and_b_follow_the_busiest_models_until_picked(ch_client, ch_database, chdb_path, monkeypatch):
    """A cutover starts with one model: B fills in by itself when the second one shows up, and a pick sticks."""
    client, db = ch_client, ch_database
    seed(client, db, calls=600, hours=1)
    point_app_at(client, db, chdb_path, monkeypatch)
    client.command(f"CREATE TABLE {db}.later AS {db}.llm_calls")
    client.command(f"INSERT INTO {db}.later SELECT * FROM {db}.llm_calls WHERE model != 'gpt-5.4'")
    client.command(f"ALTER TABLE {db}.llm_calls DELETE WHERE model != 'gpt-5.4' SETTINGS mutations_sync = 1")
    at = render("overview")
    assert (at.selectbox(key="model_a").value, at.selectbox(key="model_b").value) == ("gpt-5.4", None)
    assert [h.value for h in at.subheader] == ["gpt-5.4"]

    client.command(f"INSERT INTO {db}.llm_calls SELECT * FROM {db}.later")
    # The sidebar's choices are cached for a minute: the Overview, seeing models it does not list, redraws the page.
    at.run()
    assert any("gpt-5.5" in o for o in at.selectbox(key="model_a").options)
    assert (at.selectbox(key="model_a").value, at.selectbox(key="model_b").value) == ("gpt-5.4", "gpt-5.5")
    assert sorted(h.value for h in at.subheader) == ["gpt-5.4", "gpt-5.5 (B)", "gpt-x-preview"]
    at.selectbox(key="model_b").set_value("gpt-x-preview").run()
    assert sorted(h.value for h in at.subheader) == ["gpt-5.4", "gpt-5.5", "gpt-x-preview (B)"]


@pytest.mark.parametrize("page", PAGES)
def test_empty_and_missing_store_say_what_to_do(ch_client, ch_database, chdb_path, monkeypatch, page):
    point_app_at(ch_client, ch_database, chdb_path, monkeypatch)
    missing = render(page)  # the database does not exist yet
    if page != "sql_explorer":  # the explorer needs no table to show its editor
        assert any("start `cutover process`" in w.value for w in missing.warning), [w.value for w in missing.warning]

    from processors.schema import migrate

    migrate(ch_client, ch_database)
    empty = render(page)
    assert not empty.error, [e.value for e in empty.error]
    assert any(w.value.startswith("No calls stored yet") and HINT in w.value for w in empty.warning), [
        w.value for w in empty.warning
    ]
    assert any("no services, tasks or models to pick" in i.value for i in empty.sidebar.info), [
        i.value for i in empty.sidebar.info
    ]
    if page in ("overview", "latency", "cost", "quality", "shadow", "readiness"):
        assert any("Is the processor (`cutover process`" in i.value for i in empty.info), [i.value for i in empty.info]


def test_a_shared_link_opens_a_past_window_and_its_numbers(seeded):
    """ "What happened at 14:00?": a link with from/to opens that window, and the tiles count only its calls."""
    client, db = seeded
    last = one(client, f"SELECT max(start_time) FROM {db}.llm_calls")[0].replace(tzinfo=None)
    start = last.replace(second=0, microsecond=0) - timedelta(hours=3)
    end = start + timedelta(hours=1)
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["from"] = start.isoformat()
    at.query_params["to"] = end.isoformat()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="range").value == "Custom"
    tiles = {m.label: m.value for m in at.metric[:TILES]}  # the first container: model A
    model = at.subheader[0].value
    calls = one(
        client,
        f"SELECT count() FROM {db}.llm_calls FINAL WHERE model = '{model}' AND start_time >= '{start}' AND start_time < '{end}'",
    )[0]
    assert 0 < calls < one(client, f"SELECT count() FROM {db}.llm_calls WHERE model = '{model}'")[0]
    assert tiles["calls"] == f"{calls:,}"
    assert tiles["calls/min"] == f"{calls / traffic_minutes(client, db, model, start, end):,.1f}"
