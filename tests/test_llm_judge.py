"""The llm_judge check end to end against the simulator: exact verdicts, the budget cap, its cost kept apart."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import openai
import pytest
import yaml
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from collectors.instrument import instrument
from collectors.settings import CollectorSettings
from cutover import semconv
from cutover.local_kafka import free_port
from dashboards import context
from processors.hallucination import HallucinationWorker
from processors.hallucination.judge import judge_messages, parse_verdict
from processors.pricing import PriceBook
from processors.schema import migrate
from processors.settings import ProcessorSettings
from simulator.profiles import DEFAULT_PROFILES
from simulator.server import NONCE_HEADER, SimulatorThread
from simulator.settings import SimulatorSettings
from simulator.workload import Task, load_corpus
from tests.test_dashboard_pages import point_app_at, render

JUDGE = "gpt-4o-mini"
KEY_VARIABLE = "CUTOVER_TEST_JUDGE_KEY"
CORPUS = load_corpus()
TASKS = [*CORPUS.tasks["knowledge"], *CORPUS.tasks["rag"]]
NEVER = {"rate_limited": 0.0, "server_error": 0.0, "stall": 0.0}


@pytest.fixture(scope="module")
def simulator(tmp_path_factory) -> Iterator[SimulatorThread]:
    """Fault-free models (the judge's too) that plant wrong facts often and never refuse."""
    raw = yaml.safe_load(DEFAULT_PROFILES.read_text())
    raw.pop("defaults")
    for name in ("gpt-5.4", "gpt-5.5", JUDGE):
        raw["models"][name]["faults"] = NEVER
        raw["models"][name]["refusal"]["rate"] = dict.fromkeys(("coding", "knowledge", "rag", "simple"), 0.0)
        raw["models"][name]["refusal"]["sensitive_rate"] = 0.0
        raw["models"][name]["hallucination_rate"] = {"knowledge": 0.4, "rag": 0.4}
    path = tmp_path_factory.mktemp("profiles") / "profiles.yaml"
    path.write_text(yaml.safe_dump(raw))
    settings = SimulatorSettings(
        simulator_port=free_port(), simulator_profiles=path, simulator_time_scale=0.0, simulator_seed=5
    )
    with SimulatorThread(settings) as running:
        yield running


def app_calls(base_url: str, rounds: int = 3) -> list[dict]:
    """Calls of the application (instrumented) to two models, as the processor would have stored them."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=20)
    rows: list[dict] = []
    with openai.OpenAI(base_url=base_url, api_key="sim", max_retries=0, timeout=30) as client:
        for n in range(rounds):
            for task in TASKS:
                for model in ("gpt-5.4", "gpt-5.5"):
                    reply = client.chat.completions.create(
                        model=model,
                        messages=CORPUS.messages(task),
                        extra_headers={NONCE_HEADER: f"judge-{n}"},
                    )
                    rows.append(call_row(task, model, reply.choices[0].message.content or "", start, len(rows)))
    return rows


def call_row(task: Task, model: str, text: str, start: datetime, n: int) -> dict:
    return {
        "trace_id": f"t{n}",
        "span_id": f"s{n:04d}",
        "start_time": start + timedelta(seconds=n),
        "model": model,
        "task": task.task,
        "latency_ms": 500.0,
        "input_tokens": 120,
        "output_tokens": 30,
        "cost_usd": Decimal("0.001"),
        "content_captured": 1,
        "input_text": task.question or task.prompt,
        "output_text": text,
        "context_text": task.context,
        "reference_answer": task.reference,
        "is_error": 0,
        "is_refusal": 0,
        "version": 1,
    }


def planted(row: dict) -> bool:
    task = next(t for t in TASKS if t.reference == row["reference_answer"])
    return any(wrong in row["output_text"] for wrong in task.wrong)


def store_calls(client, database: str, rows: list[dict]) -> None:
    migrate(client, database)
    columns = list(rows[0])
    client.insert(f"{database}.llm_calls", [[row[c] for c in columns] for row in rows], column_names=columns)


def judge_settings(base_url: str, **overrides) -> ProcessorSettings:
    return ProcessorSettings(
        **{
            "hallucination_checks": "context_grounding,unsupported_facts,reference_mismatch,llm_judge",
            "hallucination_queue_size": 1000,
            "hallucination_batch_size": 50,
            "judge_base_url": base_url,
            "judge_model": JUDGE,
            "judge_api_key_env": KEY_VARIABLE,
            "judge_sample_rate": 1.0,
            "judge_daily_budget_usd": 100.0,
            "judge_concurrency": 3,
            "judge_timeout_s": 10.0,
            **overrides,
        }
    )


def run_worker(client, database: str, settings: ProcessorSettings, rows: list[dict]) -> HallucinationWorker:
    worker = HallucinationWorker(client, database, settings)
    assert worker.judge is not None
    worker.start()
    try:
        worker.submit(rows)
        assert worker.wait_idle(120) and worker.judge.wait_idle(180)
    finally:
        worker.stop()
    return worker


def test_judge_prompt_and_reply_parsing():
    system, user = judge_messages("How long?", "The window is 30 days.", "It is 90 days.")
    assert "grounding judge" in system["content"] and "<answer>\nIt is 90 days.\n</answer>" in user["content"]
    verdict = parse_verdict(
        '```json\n{"verdict": "unsupported", "unsupported_claims": ["90 days"], "reason": "30"}\n```'
    )
    assert verdict.verdict == "unsupported" and verdict.unsupported_claims == ["90 days"]
    with pytest.raises(ValueError, match="not a verdict"):
        parse_verdict('{"verdict": "maybe"}')


def test_judge_end_to_end_exact_verdicts_and_its_cost_apart(simulator, ch_client, ch_database, monkeypatch):
    monkeypatch.setenv(KEY_VARIABLE, "sim")
    spans = InMemorySpanExporter()
    instrumentation = instrument(service_name="app", settings=CollectorSettings(), exporter=spans)
    try:
        rows = app_calls(simulator.base_url)
        store_calls(ch_client, ch_database, rows)
        worker = run_worker(ch_client, ch_database, judge_settings(simulator.base_url), rows)
        assert instrumentation.force_flush()
        # The application's calls were traced; the judge's (made in this same process) were not.
        traced = [s for s in spans.get_finished_spans() if semconv.OPERATION in (s.attributes or {})]
        assert len(traced) == len(rows)
    finally:
        instrumentation.shutdown()

    expected = {row["span_id"]: int(planted(row)) for row in rows}
    assert 0 < sum(expected.values()) < len(rows)  # both verdicts occur
    verdicts = ch_client.query(
        f"SELECT span_id, flagged, reason FROM {ch_database}.hallucination_flags FINAL WHERE check_name = 'llm_judge'"
    ).result_rows
    assert {span: flagged for span, flagged, _ in verdicts} == expected
    by_span = {row["span_id"]: row for row in rows}
    for span, flagged, reason in verdicts:
        if flagged:  # the reason quotes the sentence carrying the planted value
            task = next(t for t in TASKS if t.reference == by_span[span]["reference_answer"])
            assert reason.startswith("judge: unsupported “") and any(w in reason for w in task.wrong), reason
    assert worker.judge is not None and worker.judge.stats.failed == 0
    assert worker.judge.stats.judged == len(rows) and worker.judge.stats.flagged == sum(expected.values())

    # The judge's tokens and cost: one judge_usage row per request, priced with our price book ...
    usage = ch_client.query(
        f"SELECT status, judge_model, input_tokens, cached_input_tokens, output_tokens, cost_usd, judged_at "
        f"FROM {ch_database}.judge_usage"
    ).result_rows
    assert len(usage) == len(rows) and {(u[0], u[1]) for u in usage} == {("ok", JUDGE)}
    prices = PriceBook.load()
    assert all(u[5] == prices.cost(JUDGE, u[6].date(), u[2], u[3], u[4], 0)[0] > 0 for u in usage)
    # ... and never the application's: llm_calls holds exactly the application's calls and spend.
    calls, spend, judge_rows = ch_client.query(
        f"SELECT count(), sum(cost_usd), countIf(model = %(judge)s) FROM {ch_database}.llm_calls FINAL",
        parameters={"judge": JUDGE},
    ).result_rows[0]
    assert (calls, spend, judge_rows) == (len(rows), Decimal("0.001") * len(rows), 0)


def test_budget_cap_stops_the_judge_and_the_quality_page_says_so(
    simulator, ch_client, ch_database, chdb_path, monkeypatch
):
    monkeypatch.setenv(KEY_VARIABLE, "sim")
    rows = app_calls(simulator.base_url, rounds=2)
    store_calls(ch_client, ch_database, rows)
    one_request = 1.0e-4  # a judge request costs ~$0.0001 on gpt-4o-mini: a budget of about 5 requests
    settings = judge_settings(simulator.base_url, judge_daily_budget_usd=5 * one_request, judge_concurrency=1)
    worker = run_worker(ch_client, ch_database, settings, rows)
    assert worker.judge is not None
    stats = worker.judge.stats
    assert 1 <= stats.judged < len(rows) and stats.skipped_budget == len(rows) - stats.judged
    spent, requests = ch_client.query(
        f"SELECT toFloat64(sum(cost_usd)), count() FROM {ch_database}.judge_usage"
    ).result_rows[0]
    assert requests == stats.judged and spent >= settings.judge_daily_budget_usd
    status = ch_client.query(
        f"SELECT budget_usd, spent_usd, skipped_budget, exhausted_at FROM {ch_database}.judge_status FINAL"
    ).result_rows
    assert len(status) == 1
    budget_usd, spent_usd, skipped, exhausted_at = status[0]
    assert budget_usd == settings.judge_daily_budget_usd and spent_usd == pytest.approx(spent)
    assert skipped == stats.skipped_budget and exhausted_at is not None

    point_app_at(ch_client, ch_database, chdb_path, monkeypatch)
    page = render("quality")
    warning = " ".join(w.value for w in page.warning)
    assert "daily budget is spent" in warning and "resumes at midnight UTC" in warning
    shown = {m.label: m.value for m in page.metric}
    assert shown["skipped: budget spent"] == f"{stats.skipped_budget:,}"
    assert shown["judge requests today"] == f"{requests:,}"
    # Per-check trust: each lexical check's agreement with the judge on the calls both read.
    trust = page.dataframe[0].value
    judged = trust[trust["check"] == "reference_mismatch"].iloc[0]
    assert judged["judged alongside"] == stats.judged
    flagged, confirmed = ch_client.query(
        f"""SELECT sum(h.flagged), sum(h.flagged AND j.flagged)
            FROM {ch_database}.hallucination_flags AS h FINAL
            INNER JOIN (SELECT span_id, flagged FROM {ch_database}.hallucination_flags FINAL
                        WHERE check_name = 'llm_judge') AS j ON j.span_id = h.span_id
            WHERE h.check_name = 'reference_mismatch'"""
    ).result_rows[0]
    if flagged:
        assert judged["precision vs judge"].startswith(context.pct(confirmed / flagged))
    else:
        assert judged["precision vs judge"] == "no flag judged"


def test_a_failing_judge_is_counted_never_fatal(ch_client, ch_database, monkeypatch):
    monkeypatch.setenv(KEY_VARIABLE, "sim")
    task = TASKS[0]
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    rows = [call_row(task, "gpt-5.4", task.reference, start, n) for n in range(4)]
    store_calls(ch_client, ch_database, rows)
    closed = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    worker = run_worker(ch_client, ch_database, judge_settings(closed, judge_max_retries=1, judge_timeout_s=2), rows)
    assert worker.stats.checked == len(rows)  # the lexical checks ran and were written
    assert worker.judge is not None and worker.judge.stats.failed == len(rows)
    statuses = ch_client.query(
        f"SELECT status, count(), sum(cost_usd) FROM {ch_database}.judge_usage GROUP BY status"
    ).result_rows
    assert statuses == [("failed", len(rows), Decimal(0))]
    flags = ch_client.query(
        f"SELECT count() FROM {ch_database}.hallucination_flags FINAL WHERE check_name = 'llm_judge'"
    ).result_rows[0][0]
    assert flags == 0


def test_settings_refuse_an_unpriced_judge_model(monkeypatch):
    monkeypatch.setenv(KEY_VARIABLE, "sim")
    with pytest.raises(ValueError, match="no price in the price book"):
        judge_settings("http://127.0.0.1:1/v1", judge_model="my-local-llama")
    monkeypatch.delenv(KEY_VARIABLE)
    with pytest.raises(ValueError, match=f"API key in \\${KEY_VARIABLE}"):
        judge_settings("http://127.0.0.1:1/v1")


def test_docs_state_the_prompt():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "llm-judge.md").read_text()
    system, user = judge_messages("{question}", "{evidence}", "{answer}")
    assert system["content"] in doc and user["content"].split("<question>")[0].strip() in doc
