"""The Cutover readiness page on crafted shadow traffic: every projection and scorecard figure is
computed again from the raw rows in SQL and must be what the page shows, verdicts included."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from cutover import agreement
from dashboards import filters, scorecard
from dashboards.settings import DashboardSettings
from processors.histograms import recompute
from processors.schema import PAIRS, migrate
from tests.test_dashboard_pages import one, point_app_at, render

PRIMARY, CANDIDATE = "gpt-5.4", "gpt-5.5"
# task -> (pairs, latency factor, latency correlation of the two sides, primary refusal rate, candidate
# refusal rate, cost factor)
TASKS = {
    "extract": (3000, 0.95, 0.999, 0.02, 0.01, 1.2),  # faster, refuses less, a little dearer: ready
    "support": (1500, 1.0, 0.999, 0.01, 0.08, 1.2),  # refuses 7 points more often: regression
    "triage": (600, 1.10, 0.0, 0.0, 0.0, 1.2),  # p95 at the 10% limit, unrelated per request: hold, more pairs
    "legal": (40, 1.0, 0.999, 0.0, 0.0, 1.2),  # too few pairs: hold
}
LIVE_PER_PAIR = 9  # the primary serves 9 unmirrored calls for each mirrored one (a 10% shadow)
# Answers, captured for 3 pairs in 4: the candidate mostly paraphrases, 1 pair in 50 changes a number and
# 1 in 50 answers something else; uncaptured pairs can only be judged on their outcome.
ANSWER = "Revenue rose 12% in 2025 to 4.1 billion dollars, the company said in its annual report."
CANDIDATE_ANSWERS = [
    "Revenue rose 15% in 2025 to 4.1 billion dollars, the company said in its annual report.",
    "The weather in Paris stayed mild and sunny for the whole week.",
    *["The company said in its annual report that revenue rose 12% in 2025, reaching 4.1 billion dollars."] * 48,
]


def _u(salt: str) -> str:
    return f"(modulo(cityHash64(number, '{salt}'), 1000003) / 1000003.0)"


def craft(client, db: str, end: datetime, minutes: int = 50) -> None:
    """Pairs per TASKS over the `minutes` before `end`, plus the primary's unmirrored traffic."""
    migrate(client, db, retention_days=0)
    start = end - timedelta(minutes=minutes)
    columns = """(trace_id, span_id, start_time, service, environment, operation, model, response_model, provider, task,
                  latency_ms, input_tokens, output_tokens, cost_usd, is_error, is_refusal, client_timeout_s,
                  is_timeout, shadow_pair_id, shadow_role, hallucination_checked, hallucination_flag, ingested_at,
                  version, content_captured, output_text)"""
    for task, (pairs, factor, rho, p_refuse, s_refuse, cost_factor) in TASKS.items():
        z1 = f"sqrt(-2 * log(greatest({_u('a' + task)}, 1e-9))) * cos(2 * pi() * {_u('b' + task)})"
        z2 = f"sqrt(-2 * log(greatest({_u('c' + task)}, 1e-9))) * cos(2 * pi() * {_u('d' + task)})"
        client.command(
            f"""
            INSERT INTO {db}.llm_calls {columns}
            WITH side = 1 AS shadow,
                 exp(7 + 0.5 * {z1}) AS base,
                 toDateTime64(%(start)s, 6, 'UTC') + toIntervalMicrosecond(toUInt64(number / %(n)s * %(span_us)s)) AS t,
                 0.001 + 0.002 * {_u("cost" + task)} AS p_cost
            SELECT hex(cityHash64(number, %(task)s)), hex(cityHash64(number, side, %(task)s)), t,
                   ['web', 'mobile'][1 + modulo(number, 2)], 'production', 'chat',
                   if(shadow, %(cand)s, %(prim)s), if(shadow, %(cand)s, %(prim)s), 'openai', %(task)s,
                   if(shadow, %(factor)s * exp(7 + 0.5 * (%(rho)s * {z1} + sqrt(1 - %(rho)s * %(rho)s) * {z2})), base), 500, 200,
                   toDecimal128(if(shadow, p_cost * %(cost)s * (0.9 + 0.2 * {_u("c2" + task)}), p_cost), 9),
                   0,
                   {_u("r" + task)} < if(shadow, %(s_ref)s, %(p_ref)s),
                   30, 0, concat(%(task)s, '-', toString(number)), if(shadow, 'shadow', 'primary'),
                   1, {_u("f" + task)} < 0.02, now64(3, 'UTC'), 1, modulo(number, 4) != 3,
                   if(shadow, %(answers)s[1 + modulo(number, 50)], %(answer)s)
            FROM numbers(%(n)s) ARRAY JOIN [0, 1] AS side
            """,
            parameters={
                "start": start, "n": pairs, "span_us": minutes * 60_000_000, "task": task, "prim": PRIMARY,
                "cand": CANDIDATE, "factor": factor, "rho": rho, "p_ref": p_refuse, "s_ref": s_refuse,
                "cost": cost_factor, "answer": ANSWER, "answers": CANDIDATE_ANSWERS,
            },
        )  # fmt: skip
        client.command(
            f"""
            INSERT INTO {db}.llm_calls {columns}
            SELECT hex(cityHash64(number, 'live', %(task)s)), hex(cityHash64(number, 'live-span', %(task)s)),
                   toDateTime64(%(start)s, 6, 'UTC') + toIntervalMicrosecond(toUInt64(number / %(n)s * %(span_us)s)),
                   ['web', 'mobile'][1 + modulo(number, 2)], 'production', 'chat', %(prim)s, %(prim)s, 'openai', %(task)s,
                   exp(7 + 0.5 * sqrt(-2 * log(greatest({_u("la" + task)}, 1e-9))) * cos(2 * pi() * {_u("lb" + task)})),
                   500, 200, toDecimal128(0.001 + 0.002 * {_u("lc" + task)}, 9), {_u("le" + task)} < 0.01,
                   {_u("lr" + task)} < %(p_ref)s, 30, 0, '', '', 0, 0, now64(3, 'UTC'), 1, 0, ''
            FROM numbers(%(n)s)
            """,
            parameters={
                "start": start, "n": pairs * LIVE_PER_PAIR, "span_us": minutes * 60_000_000, "task": task,
                "prim": PRIMARY, "p_ref": p_refuse,
            },
        )  # fmt: skip
    # A later version (a hallucination verdict that clears a flag) of some candidate calls, then replays of the
    # first version of those and of some pairs: the page must read what FINAL reads.
    for table in ("llm_calls", PAIRS):  # as a busy store would hold them: not yet merged
        client.command(f"SYSTEM STOP MERGES {db}.{table}")
    revised = "task = 'extract' AND shadow_role = 'shadow' AND hallucination_flag = 1 AND cityHash64(span_id) % 2 = 0"
    client.command(
        f"""INSERT INTO {db}.llm_calls SELECT * REPLACE (2 AS version, 0 AS hallucination_flag)
            FROM (SELECT * FROM {db}.llm_calls WHERE {revised})"""  # REPLACE aliases would shadow WHERE columns
    )
    client.command(
        f"""INSERT INTO {db}.llm_calls SELECT * FROM {db}.llm_calls
            WHERE version = 1 AND shadow_pair_id != '' AND ({revised} OR cityHash64(shadow_pair_id) % 10 = 0)"""
    )
    recompute(client, db, [start + timedelta(minutes=i) for i in range(minutes + 1)])


@pytest.fixture
def crafted(ch_client, ch_database, chdb_path, monkeypatch):
    end = datetime.now(UTC).replace(tzinfo=None, second=0, microsecond=0)
    craft(ch_client, ch_database, end)
    point_app_at(ch_client, ch_database, chdb_path, monkeypatch)
    now = end + timedelta(seconds=30)
    monkeypatch.setattr(filters, "now", lambda: now)
    return ch_client, ch_database, now


def _window(at) -> tuple[datetime, datetime]:
    found = re.match(r"(\S+ \S+) to (\S+ \S+) UTC", at.sidebar.caption[0].value)
    assert found, at.sidebar.caption[0].value
    start, end = (datetime.fromisoformat(x) for x in found.groups())
    return start, end


def _pairs_sql(db: str, where: str) -> str:
    """One row per complete pair of the window: primary (p_) and candidate (s_) side by side."""
    side = ", ".join(
        f"anyIf({col}, shadow_role = '{role}') AS {prefix}_{col}"
        for role, prefix in (("primary", "p"), ("shadow", "s"))
        for col in ("latency_ms", "is_error", "is_refusal", "is_timeout", "hallucination_flag", "cost_usd")
    )
    return f"""SELECT any(task) AS task, {side} FROM {db}.llm_calls FINAL
               WHERE shadow_pair_id != '' AND {where} GROUP BY shadow_pair_id
               HAVING countIf(shadow_role = 'primary') = 1 AND countIf(shadow_role = 'shadow') = 1"""


def test_projection_and_scorecard_equal_sql_over_raw_rows(crafted):
    client, db, now = crafted
    at = render("readiness")
    assert not at.error, [e.value for e in at.error]
    start, end = _window(at)
    where = f"start_time >= '{start}' AND start_time < '{end}'"
    projected, card = at.table[0].value, at.table[1].value

    # --- projection: per task, from the raw rows ---
    first = one(client, f"SELECT min(start_time) FROM {db}.llm_calls WHERE model = '{PRIMARY}' AND {where}")[0]
    minutes = (min(end, now) - max(first.replace(tzinfo=None), start)).total_seconds() / 60
    truth = client.query(
        f"""SELECT task, count(), toFloat64(sum(cost_usd)), sum(is_refusal) / count() FROM {db}.llm_calls FINAL
            WHERE model = '{PRIMARY}' AND shadow_role != 'shadow' AND {where} GROUP BY task"""
    ).result_rows
    paired = {
        task: rest
        for task, *rest in client.query(
            f"""SELECT task, count(), avg(toFloat64(s_cost_usd) - toFloat64(p_cost_usd)),
                       quantileExactInclusive(0.95)(s_latency_ms), quantileExactInclusive(0.99)(s_latency_ms),
                       countIf(s_is_timeout = 1 OR s_latency_ms > 30000) / count(),
                       (sum(s_is_refusal) - sum(p_is_refusal)) / count()
                FROM ({_pairs_sql(db, where)}) GROUP BY task"""
        ).result_rows
    }
    shown = projected.set_index("task")
    assert set(shown.index) == set(TASKS)
    total_spend = 0.0
    for task, calls, spend, refusal in truth:
        row = shown.loc[task]
        per_day = 1440 / minutes
        assert row["calls/day"] == pytest.approx(calls * per_day, rel=1e-9)
        assert row["spend/day today"] == pytest.approx(spend * per_day, rel=1e-9)
        pairs, delta, p95, p99, over, refusal_change = paired[task]
        assert row["pairs"] == pairs == TASKS[task][0]
        if pairs < 200:
            assert pd_isna(row["spend/day"]) and row["projected"] == "no: fewer than 200 pairs"
            total_spend += spend * per_day
            continue
        assert row["projected"] == "yes"
        assert row["cost Δ/call"] == pytest.approx(delta, rel=1e-9)
        assert row["spend/day"] == pytest.approx(spend * per_day + calls * per_day * delta, rel=1e-9)
        assert row["p95 (ms)"] == pytest.approx(p95, rel=1e-9) and row["p99 (ms)"] == pytest.approx(p99, rel=1e-9)
        assert row["over timeout"] == pytest.approx(over) and row["timeout (s)"] == 30
        assert row["refusal"] == pytest.approx(refusal + refusal_change, rel=1e-9)
        total_spend += row["spend/day"]
    sentence = at.info[0].value
    assert sentence.startswith(f"If {CANDIDATE} took 100% of {PRIMARY}'s traffic"), sentence
    assert f"spend would be ${total_spend:,.2f}/day (${total_spend * 30:,.2f}/month" in sentence, sentence
    assert "1 task(s) not projected (too few pairs), kept at today's spend: legal." in sentence

    # --- scorecard: verdicts and figures ---
    verdicts = dict(zip(card["task"], card["verdict"], strict=True))
    assert verdicts == {"extract": "ready", "support": "regression", "triage": "hold", "legal": "hold"}, card
    why = dict(zip(card["task"], card["why"], strict=True))
    assert why["legal"] == f"{200 - TASKS['legal'][0]} more pairs (fewer than 200)"
    # 600 pairs settle neither a p95 at its limit nor a 0.5-point error limit (0 of 600 still allows 0.64%).
    assert re.fullmatch(r"≈[\d,]+ more pairs to settle p95 latency, error rate, .*", why["triage"]), why["triage"]
    assert card.set_index("task").loc["triage", "p95 latency"].startswith("? ")
    assert why["support"].startswith("refusal rate +") and why["support"].endswith("(limit ≤ +1.00 pts)")
    figures = {
        task: rest
        for task, *rest in client.query(
            f"""SELECT task, count(), sum(p_is_refusal), sum(s_is_refusal),
                       quantileExactInclusive(0.95)(s_latency_ms) / quantileExactInclusive(0.95)(p_latency_ms) - 1,
                       avg(toFloat64(s_cost_usd)) / avg(toFloat64(p_cost_usd)) - 1,
                       (sum(s_hallucination_flag) - sum(p_hallucination_flag)) / count()
                FROM ({_pairs_sql(db, where)}) GROUP BY task"""
        ).result_rows
    }
    agreements = agreement_by(client, db, where, "task")
    assert 0.9 < agreements["extract"][0] < 0.98 and agreements["extract"][1] > 2000  # text judged, and it tells
    on_text = sum(t for _, t in agreements.values())
    judged = sum(TASKS[task][0] for task in TASKS)
    told = [c.value for c in at.caption if c.value.startswith("Agreement is the Shadow page's")]
    assert f"here {on_text:,} pairs on both answers' text and {judged - on_text:,} on the outcome alone" in told[0]
    for row in card.itertuples(index=False):
        n, p_ref, s_ref, p95_ratio, cost_ratio, flag_change = figures[row.task]
        agreed, _ = agreements[row.task]
        cells = dict(zip(card.columns, row, strict=True))
        assert cells["pairs"] == n
        assert cells["p95 latency"].split(" [")[0].endswith(f"{p95_ratio:+.1%}"), cells["p95 latency"]
        assert cells["cost per call"].split(" [")[0].endswith(f"{cost_ratio:+.1%}"), cells["cost per call"]
        assert cells["hallucination-flag rate"].split(" [")[0].endswith(f"{flag_change * 100:+.2f} pts")
        assert cells["agreement"].split(" [")[0].endswith(f" {agreed:.1%}"), cells["agreement"]
        # The refusal difference and its Newcomb interval, from two Wilson intervals computed here.
        low, high = newcomb(s_ref, n, p_ref, n)
        expected = f"{(s_ref - p_ref) / n * 100:+.2f} pts [{low * 100:+.2f} to {high * 100:+.2f} pts]"
        assert cells["refusal rate"].endswith(expected), (cells["refusal rate"], expected)
        assert cells["refusal rate"][0] == (
            "✗" if row.task == "support" else "✓" if n >= 200 else cells["refusal rate"][0]
        )


def agreement_by(client, db: str, where: str, by: str) -> dict[str, tuple[float, int]]:
    """Per value of `by`: the share of its newest 5,000 pairs that agree by cutover.agreement (on both answers'
    text where both were captured), and how many were judged on text; from the raw rows."""
    rows = client.query(
        f"""SELECT any({by}), max(start_time) AS seen,
                  multiIf(anyIf(is_error, shadow_role = 'primary') = 1, 'error',
                          anyIf(is_refusal, shadow_role = 'primary') = 1, 'refusal', 'answer'),
                  multiIf(anyIf(is_error, shadow_role = 'shadow') = 1, 'error',
                          anyIf(is_refusal, shadow_role = 'shadow') = 1, 'refusal', 'answer'),
                  anyIf(if(content_captured = 1, output_text, ''), shadow_role = 'primary'),
                  anyIf(if(content_captured = 1, output_text, ''), shadow_role = 'shadow')
            FROM {db}.llm_calls FINAL WHERE shadow_pair_id != '' AND {where} GROUP BY shadow_pair_id
            HAVING countIf(shadow_role = 'primary') = 1 AND countIf(shadow_role = 'shadow') = 1
            ORDER BY seen DESC"""
    ).result_rows
    judged: dict[str, list[tuple[bool, bool]]] = {}
    for group, _, outcome_p, outcome_s, text_p, text_s in rows:
        mine = judged.setdefault(group, [])
        if len(mine) < 5000:
            verdict = agreement.pair_agrees(outcome_p, outcome_s, text_p or None, text_s or None)
            mine.append((verdict.agree, outcome_p == outcome_s == "answer" and bool(text_p and text_s)))
    return {g: (sum(a for a, _ in v) / len(v), sum(t for _, t in v)) for g, v in judged.items()}


def pd_isna(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(centre - half, 0.0), min(centre + half, 1.0)


def newcomb(k_b: int, n_b: int, k_a: int, n_a: int) -> tuple[float, float]:
    (lb, ub), (la, ua) = wilson(k_b, n_b), wilson(k_a, n_a)
    pb, pa = k_b / n_b, k_a / n_a
    return pb - pa - math.hypot(pb - lb, ua - pa), pb - pa + math.hypot(ub - pb, pa - la)


def test_share_service_scorecard_advisor_and_rollout_equal_sql(crafted):
    client, db, now = crafted
    at = render("readiness")
    start, end = _window(at)
    where = f"start_time >= '{start}' AND start_time < '{end}'"

    # Half the traffic: the projected spend moves by half the paired delta.
    full = at.table[0].value.set_index("task")
    at.slider(key="readiness_share").set_value(50).run()
    half = at.table[0].value.set_index("task")
    for task in ("extract", "support", "triage"):
        today, calls, delta = (full.loc[task, c] for c in ("spend/day today", "calls/day", "cost Δ/call"))
        assert half.loc[task, "spend/day"] == pytest.approx(today + 0.5 * calls * delta, rel=1e-9)
    assert "If gpt-5.5 took 50% of gpt-5.4's traffic" in at.info[0].value

    # Per service: one row per service, its pairs counted in SQL, every service holding the support regression.
    at.radio(key="readiness_by").set_value("service").run()
    card = at.table[1].value
    counted = {
        service: (n, change)
        for service, n, change in client.query(
            f"""SELECT service, count(), (sum(s_is_refusal) - sum(p_is_refusal)) / count() FROM (
                  SELECT any(service) AS service, {_pairs_sql(db, where).split("SELECT any(task) AS task, ")[1]}
                ) GROUP BY service"""
        ).result_rows
    }
    assert set(card["service"]) == set(counted) == {"web", "mobile"}
    agreements = agreement_by(client, db, where, "service")
    for row in card.itertuples(index=False):
        n, change = counted[row.service]
        assert row.pairs == n
        agreed = agreements[row.service][0]
        assert row[list(card.columns).index("agreement")].split(" [")[0].endswith(f" {agreed:.1%}")
        # Support's +7 points diluted by extract's -1 point: about +1.5 points, not yet settled against +1.
        assert row[list(card.columns).index("refusal rate")].startswith(f"? {change * 100:+.2f} pts")
        assert row.verdict == "hold" and "refusal rate" in row.why

    # Timeout advisor for one task: what the recommended timeout would have cut in the last day, from raw rows.
    at.selectbox(key="readiness_task").set_value("extract").run()
    cuts = at.table[2].value
    assert len(cuts) == 4  # 2 models x last day, last week
    last = min(end, now).replace(second=0, microsecond=0)
    for row in cuts.itertuples(index=False):
        calls, cut = one(
            client,
            f"""SELECT count(), countIf(latency_ms > {row[2] * 1000}) FROM {db}.llm_calls FINAL
                WHERE model = '{row.model}' AND task = 'extract' AND is_error = 0
                  AND end_time >= '{last - timedelta(days=1 if row.window == "last day" else 7)}'
                  AND end_time < '{last}'""",
        )
        assert (row.calls, row[4]) == (calls, cut), row
        assert cut <= calls * (1 - 0.995) + 1

    # Rollout tracker: the candidate's shadow copies are 10% of the calls served in each whole minute.
    charts = [c for c in at.get("vega_lite_chart") if '"share of served calls"' in c.proto.spec]
    from tests.test_dashboard_pages import chart_data

    shares = chart_data(charts[0])[1]
    served = dict(
        client.query(
            f"""SELECT toStartOfMinute(start_time), count() FROM {db}.llm_calls FINAL
                WHERE shadow_role != 'shadow' AND {where} GROUP BY ALL"""
        ).result_rows
    )
    shadow = shares[shares["role"] == "shadow"]
    assert len(shadow) > 40
    for row in shadow.itertuples():
        minute = row.t.tz_convert(None) if row.t.tzinfo else row.t
        assert row.share == pytest.approx(row.calls / served[minute.to_pydatetime()], rel=1e-9)


def _pairs_frame(n: int, cost_factor: float, checked: int) -> pd.DataFrame:
    rng = np.random.default_rng(11)
    latency = rng.lognormal(7, 0.5, n)
    cost = rng.uniform(0.001, 0.003, n)
    frame = {"task": ["x"] * n, "service": ["web"] * n, "last_seen": pd.Timestamp("2026-11-30")}
    for side, lat, price in (("primary", latency, cost), ("shadow", latency * 0.9, cost * cost_factor)):
        frame |= {
            f"{side}_latency_ms": lat, f"{side}_error": 0, f"{side}_timeout": 0, f"{side}_refusal": 0,
            f"{side}_checked": checked, f"{side}_flag": 0, f"{side}_cost_usd": price,
        }  # fmt: skip
    return pd.DataFrame(frame | {"agree": True, "on_text": False})


def test_a_metric_with_nothing_to_measure_is_named_not_held_and_cost_can_regress():
    settings = DashboardSettings(
        dashboard_scorecard_max_error_increase=0.01, dashboard_scorecard_max_timeout_increase=0.01
    )
    ready = scorecard.score("x", _pairs_frame(3000, 1.1, checked=0), settings)
    assert (ready.verdict, ready.reason) == (
        "ready",
        "every metric within its limit (not measured: hallucination-flag rate)",
    )
    dearer = scorecard.score("x", _pairs_frame(3000, 2.0, checked=1), settings)
    assert dearer.verdict == "regression" and dearer.reason == "cost per call +100.0% (limit ≤ +60%)"
