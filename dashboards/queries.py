"""Every SQL statement of the dashboard, parameterized; the only module that talks to ClickHouse.

Values are always bound by clickhouse-connect (`parameters=`); the database name is the one
identifier spliced in, and `CutoverSettings` validates it as an identifier. Call-level
numbers read `llm_calls FINAL` (replays and hallucination verdicts collapse onto one row);
latency panels read the merged per-minute histograms, never raw-row `quantile()`. Pair queries
read `shadow_pair_calls FINAL`, the pairs' rows of `llm_calls` kept apart (processors/schema.py).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from clickhouse_connect.driver.client import Client

from cutover.store import open_client

SQL_DOC = Path(__file__).resolve().parents[1] / "docs" / "sql.md"
# Partitions are days and a call's versions share its start_time, so FINAL never needs to merge across partitions.
_FINAL = {"do_not_merge_across_partitions_select_final": 1}


@dataclass(frozen=True)
class Filters:
    """What the sidebar selects. Times are naive UTC, whole minutes; empty tuples mean "all"."""

    start: datetime
    end: datetime
    services: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()
    models: tuple[str, ...] = ()

    @property
    def minutes(self) -> float:
        return max((self.end - self.start).total_seconds() / 60, 1.0)

    @property
    def grain_minutes(self) -> int:
        """A time bucket that gives a readable number of points for the range."""
        for limit, grain in ((120, 1), (720, 5), (2880, 15), (11520, 60)):
            if self.minutes <= limit:
                return grain
        return 360

    def params(self, **extra: Any) -> dict[str, Any]:
        return {
            "start": self.start,
            "end": self.end,
            "services": list(self.services),
            "tasks": list(self.tasks),
            "models": list(self.models),
            **extra,
        }


def _where(time_column: str = "start_time", services: bool = True, models: bool = True) -> str:
    """The sidebar's filters as a WHERE clause over bound parameters."""
    clauses = [f"{time_column} >= %(start)s", f"{time_column} < %(end)s", "(empty(%(tasks)s) OR has(%(tasks)s, task))"]
    if services:
        clauses.append("(empty(%(services)s) OR has(%(services)s, service))")
    if models:
        clauses.append("(empty(%(models)s) OR has(%(models)s, model))")
    return " AND ".join(clauses)


def _df(
    client: Client, sql: str, parameters: dict[str, Any], settings: dict[str, Any] | None = None, arrow: bool = False
) -> pd.DataFrame:
    """The result as a DataFrame. `arrow`: fetched as Arrow (ClickHouse writes it natively), about twice as fast
    for tens of thousands of rows (bench/pair_queries.py); strings come back as objects, times as naive UTC."""
    if arrow:
        frame = client.query_arrow(sql, parameters=parameters, settings=settings or _FINAL).to_pandas()
        for name in frame.columns:
            if isinstance(frame[name].dtype, pd.CategoricalDtype):  # LowCardinality
                frame[name] = frame[name].astype(object)
            elif isinstance(frame[name].dtype, pd.DatetimeTZDtype):
                frame[name] = frame[name].dt.tz_convert(None)
    else:
        frame = client.query_df(sql, parameters=parameters, settings=settings or _FINAL)
    if frame.columns.empty:  # chDB sends no header with an empty result: ask ClickHouse for its columns
        described = client.query(f"DESCRIBE ({sql})", parameters=parameters)
        frame = pd.DataFrame(columns=[row[0] for row in described.result_rows])
    return frame


# --- filters ----------------------------------------------------------------------------------


def dimensions(client: Client, db: str, start: datetime, end: datetime) -> pd.DataFrame:
    """Every (model, service, task) seen in the range with its call count, busiest first."""
    return _df(
        client,
        f"""
        SELECT model, service, task, count() AS calls
        FROM {db}.llm_calls
        WHERE start_time >= %(start)s AND start_time < %(end)s
        GROUP BY model, service, task
        ORDER BY calls DESC
        """,
        {"start": start, "end": end},
    )


# --- freshness --------------------------------------------------------------------------------


def freshness(client: Client, db: str) -> pd.DataFrame:
    """One row: stored calls, the newest call's start_time and ingested_at, and ClickHouse's clock now.

    `count()` and `max(start_time)` come from part metadata (start_time is in the partition key).
    `ingested_at` is in no index: it is read over the newest day of calls only, which also covers
    late arrivals (replays, hallucination verdicts) of that day. Ages are taken on ClickHouse's
    clock, the clock that stamps `ingested_at`. Empty table: calls 0 and NULL times.
    """
    return _df(
        client,
        f"""
        WITH (SELECT (count(), max(start_time)) FROM {db}.llm_calls) AS stored
        SELECT stored.1 AS calls,
               if(stored.1 = 0, NULL, stored.2) AS newest_start,
               (SELECT maxOrNull(ingested_at) FROM {db}.llm_calls
                WHERE start_time >= stored.2 - toIntervalSecond(%(lookback_s)s)) AS newest_ingested,
               now64(3, 'UTC') AS now
        """,
        {"lookback_s": 86_400},
    )


# --- overview ---------------------------------------------------------------------------------


def model_summary(client: Client, db: str, f: Filters) -> pd.DataFrame:
    """Per model: calls, errors, refusals, hallucination checks/flags, priced cost and tokens."""
    return _df(
        client,
        f"""
        SELECT model,
               count() AS calls,
               sum(is_error) AS errors,
               sum(is_timeout) AS timeouts,
               sum(is_refusal) AS refusals,
               sum(hallucination_checked) AS checked,
               sum(hallucination_flag) AS flagged,
               toFloat64(sumIf(cost_usd, cost_usd IS NOT NULL)) AS spend_usd,
               countIf(cost_usd IS NULL) AS unpriced,
               sum(input_tokens) AS input_tokens,
               sum(output_tokens) AS output_tokens,
               min(start_time) AS first_call,
               countIf(shadow_role = 'shadow') AS shadow_calls
        FROM {db}.llm_calls FINAL
        WHERE {_where()}
        GROUP BY model
        ORDER BY calls DESC
        """,
        f.params(),
    )


# --- latency (histograms) ---------------------------------------------------------------------


def merged_buckets(client: Client, db: str, f: Filters, metric: str, by: tuple[str, ...] = ("model",)) -> pd.DataFrame:
    """Histogram rows merged over the range per `by` columns: count, zero_count, buckets (dict)."""
    allowed = {"model", "task", "service", "operation"}
    if not set(by) <= allowed:
        raise ValueError(f"cannot group histograms by {by}")
    keys = ", ".join(by)
    return _df(
        client,
        f"""
        SELECT {keys}, sum(count) AS count, sum(zero_count) AS zero_count, sumMap(buckets) AS buckets
        FROM {db}.latency_histograms FINAL
        WHERE metric = %(metric)s AND {_where("minute")}
        GROUP BY {keys}
        ORDER BY {keys}
        """,
        f.params(metric=metric),
    )


def buckets_over_time(client: Client, db: str, f: Filters, metric: str, grain_minutes: int) -> pd.DataFrame:
    """Histogram rows merged per (time bucket of `grain_minutes`, model)."""
    return _df(
        client,
        f"""
        SELECT toStartOfInterval(minute, toIntervalMinute(%(grain)s)) AS t, model,
               sum(count) AS count, sum(zero_count) AS zero_count, sumMap(buckets) AS buckets
        FROM {db}.latency_histograms FINAL
        WHERE metric = %(metric)s AND {_where("minute")}
        GROUP BY t, model
        ORDER BY t, model
        """,
        f.params(metric=metric, grain=grain_minutes),
    )


def timeouts_in_force(client: Client, db: str, f: Filters) -> pd.DataFrame:
    """Per model and task: the client timeout most calls ran with, and how many calls it cut."""
    return _df(
        client,
        f"""
        SELECT model, task, anyHeavyIf(client_timeout_s, client_timeout_s IS NOT NULL) AS timeout_s,
               sum(is_timeout) AS timed_out, count() AS calls
        FROM {db}.llm_calls FINAL
        WHERE {_where()}
        GROUP BY model, task
        """,
        f.params(),
    )


# --- cost and tokens --------------------------------------------------------------------------


def cost_and_tokens(client: Client, db: str, f: Filters) -> pd.DataFrame:
    """Per model and task: priced cost, unpriced calls and tokens per call (OpenAI's conventions)."""
    return _df(
        client,
        f"""
        SELECT model, task,
               count() AS calls,
               countIf(cost_usd IS NULL) AS unpriced,
               toFloat64(sumIf(cost_usd, cost_usd IS NOT NULL)) AS spend_usd,
               sum(input_tokens) AS input_tokens,
               sum(cached_input_tokens) AS cached_input_tokens,
               sum(output_tokens) AS output_tokens,
               sum(reasoning_tokens) AS reasoning_tokens
        FROM {db}.llm_calls FINAL
        WHERE {_where()}
        GROUP BY model, task
        ORDER BY model, task
        """,
        f.params(),
    )


def spend_by_hour(client: Client, db: str, start: datetime, end: datetime) -> pd.DataFrame:
    """Priced spend of every call (no sidebar filters: a budget is the whole account's) per hour."""
    return _df(
        client,
        f"""
        SELECT toStartOfHour(start_time) AS hour, toFloat64(sumIf(cost_usd, cost_usd IS NOT NULL)) AS spend_usd,
               countIf(cost_usd IS NULL) AS unpriced
        FROM {db}.llm_calls FINAL
        WHERE start_time >= %(start)s AND start_time < %(end)s
        GROUP BY hour
        ORDER BY hour
        """,
        {"start": start, "end": end},
    )


# --- quality ----------------------------------------------------------------------------------


def quality_over_time(client: Client, db: str, f: Filters, grain_minutes: int) -> pd.DataFrame:
    """Per (time bucket, model): calls, refusals, hallucination checks and flags."""
    return _df(
        client,
        f"""
        SELECT toStartOfInterval(start_time, toIntervalMinute(%(grain)s)) AS t, model,
               count() AS calls, sum(is_refusal) AS refusals,
               sum(hallucination_checked) AS checked, sum(hallucination_flag) AS flagged
        FROM {db}.llm_calls FINAL
        WHERE {_where()}
        GROUP BY t, model
        ORDER BY t, model
        """,
        f.params(grain=grain_minutes),
    )


def flagged_calls(client: Client, db: str, f: Filters, limit: int) -> pd.DataFrame:
    """The newest flagged checks with their reason, and the call's content when it was captured."""
    return _df(
        client,
        f"""
        SELECT h.start_time AS start_time, h.model AS model, h.task AS task, h.check_name AS check_name,
               h.score AS score, h.reason AS reason, h.trace_id AS trace_id, h.span_id AS span_id,
               c.service AS service, c.content_captured AS content_captured,
               c.input_text AS input_text, c.output_text AS output_text
        FROM (
            SELECT * FROM {db}.hallucination_flags FINAL
            WHERE flagged = 1 AND {_where(services=False)}
            ORDER BY start_time DESC
            LIMIT %(limit)s
        ) AS h
        LEFT JOIN (
            SELECT span_id, service, content_captured, input_text, output_text
            FROM {db}.llm_calls FINAL
            WHERE hallucination_flag = 1 AND {_where()}
        ) AS c ON c.span_id = h.span_id
        WHERE empty(%(services)s) OR has(%(services)s, c.service)
        ORDER BY start_time DESC
        """,
        f.params(limit=limit),
    )


# --- shadow comparison ------------------------------------------------------------------------


def shadow_pairs(client: Client, db: str, f: Filters, limit: int) -> pd.DataFrame:
    """The newest complete primary/shadow pairs, one row each, both sides' outcome side by side."""
    side = """
        anyIf(model, shadow_role = '{r}') AS {r}_model,
        anyIf(latency_ms, shadow_role = '{r}') AS {r}_latency_ms,
        anyIf(input_tokens + output_tokens, shadow_role = '{r}') AS {r}_tokens,
        toNullable(toFloat64(anyIf(cost_usd, shadow_role = '{r}'))) AS {r}_cost_usd,
        anyIf(multiIf(is_error = 1, 'error', is_refusal = 1, 'refusal', 'answer'), shadow_role = '{r}') AS {r}_outcome,
        anyIf(content_captured, shadow_role = '{r}') AS {r}_captured,
        anyIf(cityHash64(lower(trimBoth(output_text))), shadow_role = '{r}') AS {r}_text_hash"""
    return _df(
        client,
        f"""
        SELECT shadow_pair_id, max(start_time) AS last_seen,
               {side.format(r="primary")},
               {side.format(r="shadow")}
        FROM {db}.shadow_pair_calls FINAL
        WHERE {_where(models=False)}
        GROUP BY shadow_pair_id
        HAVING countIf(shadow_role = 'primary') = 1 AND countIf(shadow_role = 'shadow') = 1
        ORDER BY last_seen DESC
        LIMIT %(limit)s
        """,
        f.params(limit=limit),
        arrow=True,
    )


# --- alerts -----------------------------------------------------------------------------------


def alerts(client: Client, db: str, f: Filters, limit: int = 500) -> pd.DataFrame:
    """Alerts raised in the range, newest first."""
    return _df(
        client,
        f"""
        SELECT alert_time, severity, kind, model, period, threshold, value, message
        FROM {db}.alerts FINAL
        WHERE alert_time >= %(start)s AND alert_time < %(end)s
          AND (empty(%(models)s) OR has(%(models)s, model) OR model = '')
        ORDER BY alert_time DESC
        LIMIT %(limit)s
        """,
        f.params(limit=limit),
    )


# --- readiness: scorecard, projection, rollout tracker (issue 12) -----------------------------


def readiness_pairs(client: Client, db: str, f: Filters, limit: int) -> pd.DataFrame:
    """The newest complete primary/shadow pairs with everything the scorecard and projection compare:
    per side latency, error, timeout, refusal, hallucination check and flag, cost, and whether the
    answer's text was captured (for `pair_texts`)."""
    side = """
        anyIf(model, shadow_role = '{r}') AS {r}_model,
        anyIf(latency_ms, shadow_role = '{r}') AS {r}_latency_ms,
        anyIf(is_error, shadow_role = '{r}') AS {r}_error,
        anyIf(is_timeout, shadow_role = '{r}') AS {r}_timeout,
        anyIf(is_refusal, shadow_role = '{r}') AS {r}_refusal,
        anyIf(hallucination_checked, shadow_role = '{r}') AS {r}_checked,
        anyIf(hallucination_flag, shadow_role = '{r}') AS {r}_flag,
        toNullable(toFloat64(anyIf(cost_usd, shadow_role = '{r}'))) AS {r}_cost_usd,
        anyIf(content_captured, shadow_role = '{r}') AS {r}_captured"""
    return _df(
        client,
        f"""
        SELECT shadow_pair_id, max(start_time) AS last_seen,
               anyIf(task, shadow_role = 'primary') AS pair_task,
               anyIf(service, shadow_role = 'primary') AS pair_service,
               {side.format(r="primary")},
               {side.format(r="shadow")}
        FROM {db}.shadow_pair_calls FINAL
        WHERE {_where(models=False)}
        GROUP BY shadow_pair_id
        HAVING countIf(shadow_role = 'primary') = 1 AND countIf(shadow_role = 'shadow') = 1
        ORDER BY last_seen DESC
        LIMIT %(limit)s
        """,
        f.params(limit=limit),
        arrow=True,
    ).rename(columns={"pair_task": "task", "pair_service": "service"})  # aliases may not shadow filtered columns


def pair_texts(client: Client, db: str, f: Filters, pair_ids: list[str], max_chars: int = 4000) -> pd.DataFrame:
    """Both answers (first `max_chars` characters) of the given pairs (`readiness_pairs` ids of the range).

    PREWHERE before FINAL is exact here (every version of a call has the same pair id); ClickHouse does not
    move a condition there by itself under FINAL."""
    if not pair_ids:
        return pd.DataFrame(columns=["shadow_pair_id", "primary_text", "shadow_text"])
    # The ids go in as one JSON string rather than a tuple literal: parsing tens of thousands of literals cost
    # more than the query itself (bench/pair_queries.py); a constant array is still looked up as a set.
    ids = json.dumps(pair_ids)
    return _df(
        client,
        f"""
        SELECT shadow_pair_id,
               anyIf(substring(output_text, 1, %(chars)s), shadow_role = 'primary') AS primary_text,
               anyIf(substring(output_text, 1, %(chars)s), shadow_role = 'shadow') AS shadow_text
        FROM {db}.shadow_pair_calls FINAL
        PREWHERE shadow_pair_id IN JSONExtract(%(ids)s, 'Array(String)')
        WHERE {_where(models=False)}
        GROUP BY shadow_pair_id
        """,
        f.params(ids=ids, chars=max_chars),
        # Tens of thousands of ids outgrow the default 256 KiB limit on a query's size.
        {**_FINAL, "max_query_size": 65_536 + 2 * len(ids)},
    )


def serving_volume(client: Client, db: str, f: Filters) -> pd.DataFrame:
    """Per model, task and service: the calls it served (shadow copies left out), their first start,
    priced spend, errors, refusals and the client timeout most of them ran with."""
    return _df(
        client,
        f"""
        SELECT model, task, service,
               count() AS calls,
               min(start_time) AS first_call,
               countIf(cost_usd IS NOT NULL) AS priced,
               toFloat64(sumIf(cost_usd, cost_usd IS NOT NULL)) AS spend_usd,
               sum(is_error) AS errors,
               sum(is_timeout) AS timeouts,
               sum(is_refusal) AS refusals,
               anyHeavyIf(client_timeout_s, client_timeout_s IS NOT NULL) AS timeout_s
        FROM {db}.llm_calls FINAL
        WHERE shadow_role != 'shadow' AND {_where()}
        GROUP BY model, task, service
        """,
        f.params(),
    )


def traffic_by_role(client: Client, db: str, f: Filters, grain_minutes: int) -> pd.DataFrame:
    """Calls per (time bucket, model, role): role is 'primary', 'shadow' or 'live' (not mirrored)."""
    return _df(
        client,
        f"""
        SELECT toStartOfInterval(start_time, toIntervalMinute(%(grain)s)) AS t, model,
               if(shadow_role = '', 'live', toString(shadow_role)) AS role, count() AS calls
        FROM {db}.llm_calls FINAL
        WHERE {_where()}
        GROUP BY t, model, role
        ORDER BY t, model, role
        """,
        f.params(grain=grain_minutes),
    )


# --- SQL explorer -----------------------------------------------------------------------------


class ReadOnlyRefused(Exception):
    """ClickHouse refused the explorer query because it would change something."""


READONLY_CODE = 164  # ClickHouse error READONLY


@dataclass(frozen=True)
class ExplorerResult:
    frame: pd.DataFrame
    truncated: bool


# Statements that return rows and cannot change anything, by their first keyword in ClickHouse's
# own canonical formatting (KILL QUERY and table-less SYSTEM STOP … pass `readonly=1`).
READ_STATEMENTS = ("SELECT", "WITH", "SHOW", "DESCRIBE", "EXISTS", "EXPLAIN")


def run_readonly(dsn: str, sql: str, row_limit: int, timeout_s: int) -> ExplorerResult:
    """Run an explorer query under ClickHouse's `readonly=1` (no writes, DDL, SYSTEM or table functions).

    ClickHouse first parses the text without running it (`formatQuerySingleLine`, which also
    refuses multi-statements, which chDB would otherwise run one after the other); only one
    statement that returns rows is run, in that canonical form. Each query gets a client of
    its own, closed afterwards. Over HTTP the settings ride on the request. On chDB they are
    SET on that throwaway session instead: clickhouse-connect's per-query SET-and-restore
    fails to restore once readonly is on, which would leave a shared session read-only.
    """
    # `readonly` last: once it is on, no further setting may change.
    settings: dict[str, int | str] = {
        "max_result_rows": row_limit + 1,
        "result_overflow_mode": "break",
        "max_execution_time": timeout_s,
        "readonly": 1,
    }
    client = open_client(dsn)
    per_query = settings
    try:
        if dsn.startswith("chdb://"):
            for name, value in settings.items():
                client.command(f"SET {name} = {value!r}")
            per_query = {}
        try:
            statement = client.query("SELECT formatQuerySingleLine(%(sql)s)", parameters={"sql": sql}).result_rows[0][0]
        except Exception as error:
            if "Multi-statements are not allowed" in str(error):
                raise ReadOnlyRefused("one statement at a time: ClickHouse parsed several") from None
            raise
        if not statement.startswith(READ_STATEMENTS):
            raise ReadOnlyRefused(f"not a read-only query: ClickHouse parsed it as `{statement[:80]}`")
        frame = client.query_df(statement, settings=per_query)
    except Exception as error:
        if f"Code: {READONLY_CODE}." in str(error) or "(READONLY)" in str(error):
            raise ReadOnlyRefused(str(error)) from None
        raise
    finally:
        client.close()
    return ExplorerResult(frame=frame.head(row_limit), truncated=len(frame) > row_limit)


def example_queries(db: str, path: Path = SQL_DOC) -> list[tuple[str, str]]:
    """(title, sql) of each `### Title` + ```sql block in docs/sql.md, on the configured database."""
    if not path.is_file():
        return []
    found = re.findall(r"^###\s+(.+?)\s*$.*?^```sql\s*\n(.*?)^```", path.read_text(), flags=re.M | re.S)
    return [(title, re.sub(r"\bcutover\.", f"{db}.", body.strip())) for title, body in found]


# --- shadow agreement (answers' text, for cutover/agreement.py) ----------------------------


def shadow_pair_texts(
    client: Client, db: str, f: Filters, primary: str, shadow: str, limit: int, max_chars: int = 4000
) -> pd.DataFrame:
    """Both answers (first `max_chars` characters) of the newest `limit` pairs of `primary` -> `shadow`.

    The same pairs, in the same order, as `shadow_pairs` gives for that combination.
    """
    return _df(
        client,
        f"""
        SELECT shadow_pair_id, max(start_time) AS last_seen,
               anyIf(substring(output_text, 1, %(chars)s), shadow_role = 'primary') AS primary_text,
               anyIf(substring(output_text, 1, %(chars)s), shadow_role = 'shadow') AS shadow_text
        FROM {db}.shadow_pair_calls FINAL
        WHERE {_where(models=False)}
        GROUP BY shadow_pair_id
        HAVING countIf(shadow_role = 'primary') = 1 AND countIf(shadow_role = 'shadow') = 1
           AND anyIf(model, shadow_role = 'primary') = %(primary)s AND anyIf(model, shadow_role = 'shadow') = %(shadow)s
        ORDER BY last_seen DESC
        LIMIT %(limit)s
        """,
        f.params(primary=primary, shadow=shadow, limit=limit, chars=max_chars),
    )


# --- quality: per-check trust and the llm_judge (processors/hallucination/judge.py) -----------


def check_rates(client: Client, db: str, f: Filters) -> pd.DataFrame:
    """Per check: calls it ran on and flagged (latest verdict per call and check)."""
    return _df(
        client,
        f"""
        SELECT check_name, count() AS ran, sum(flagged) AS flagged
        FROM {db}.hallucination_flags FINAL
        WHERE {_where(services=False)}
        GROUP BY check_name
        ORDER BY check_name
        """,
        f.params(),
    )


def judge_agreement(client: Client, db: str, f: Filters) -> pd.DataFrame:
    """Per lexical check, on the calls the judge also read: how their verdicts line up.

    `both` / `flagged` estimates the check's precision on this traffic (the judge as truth),
    `both` / `judge_flagged` its recall; `agree` counts calls where the two verdicts match.
    """
    return _df(
        client,
        f"""
        WITH judged AS (
            SELECT span_id, flagged AS judge_flag
            FROM {db}.hallucination_flags FINAL
            WHERE check_name = 'llm_judge' AND {_where(services=False)}
        )
        SELECT h.check_name AS check_name,
               count() AS calls,
               sum(h.flagged) AS flagged,
               sum(j.judge_flag) AS judge_flagged,
               sum(h.flagged AND j.judge_flag) AS both,
               sum(h.flagged = j.judge_flag) AS agree
        FROM {db}.hallucination_flags AS h FINAL
        INNER JOIN judged AS j ON j.span_id = h.span_id
        WHERE h.check_name != 'llm_judge' AND h.start_time >= %(start)s AND h.start_time < %(end)s
          AND (empty(%(tasks)s) OR has(%(tasks)s, h.task)) AND (empty(%(models)s) OR has(%(models)s, h.model))
        GROUP BY check_name
        ORDER BY check_name
        """,
        f.params(),
    )


def judge_budget(client: Client, db: str, day_start: datetime) -> pd.DataFrame:
    """The judge's budget rows (one per judge model) of the UTC day starting at `day_start`, and its spend."""
    return _df(
        client,
        f"""
        SELECT s.judge_model AS judge_model, s.budget_usd AS budget_usd, s.spent_usd AS spent_usd,
               s.skipped_budget AS skipped_budget, s.exhausted_at AS exhausted_at, s.updated_at AS updated_at,
               u.requests AS requests, u.failed AS failed, u.input_tokens AS input_tokens,
               u.output_tokens AS output_tokens
        FROM (SELECT * FROM {db}.judge_status FINAL WHERE day = toDate(%(day)s)) AS s
        LEFT JOIN (
            SELECT judge_model, count() AS requests, countIf(status != 'ok') AS failed,
                   sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens
            FROM {db}.judge_usage
            WHERE judged_at >= %(day)s AND judged_at < %(day)s + INTERVAL 1 DAY
            GROUP BY judge_model
        ) AS u ON u.judge_model = s.judge_model
        ORDER BY judge_model
        """,
        {"day": day_start},
    )
