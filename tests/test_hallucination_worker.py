from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from processors.hallucination import HallucinationWorker
from processors.hallucination.checks import Flag
from processors.schema import migrate
from processors.settings import ProcessorSettings

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
CONTEXT = "The refund window is 30 days. Refunds go back to the original payment method within 5 business days."


def call_row(span: str, model: str, output: str, offset_s: int = 0, **extra) -> dict:
    row = {
        "trace_id": f"t{span}",
        "span_id": span,
        "start_time": T0 + timedelta(seconds=offset_s),
        "model": model,
        "task": "rag",
        "latency_ms": 800.0,
        "input_tokens": 100,
        "output_tokens": 20,
        "cost_usd": Decimal("0.0011"),
        "content_captured": 1,
        "input_text": "What is the refund window?",
        "output_text": output,
        "context_text": CONTEXT,
        "reference_answer": "",
        "shadow_pair_id": "",
        "shadow_role": "",
        "is_error": 0,
        "is_refusal": 0,
        "version": 1,
    }
    row.update(extra)
    return row


def write_calls(client, database: str, rows: list[dict]) -> None:
    columns = list(rows[0])
    client.insert(f"{database}.llm_calls", [[row[c] for c in columns] for row in rows], column_names=columns)


def settings(**overrides) -> ProcessorSettings:
    return ProcessorSettings(**{"hallucination_queue_size": 1000, "hallucination_batch_size": 200, **overrides})


def stored(client, database: str) -> dict[str, tuple]:
    result = client.query(
        f"SELECT span_id, version, hallucination_checked, hallucination_flag, hallucination_sample_rate, cost_usd, "
        f"latency_ms FROM {database}.llm_calls FINAL"
    )
    return {row[0]: row[1:] for row in result.result_rows}


def check_until_idle(client, database: str, rows: list[dict]) -> HallucinationWorker:
    """Run a default worker over `rows` until it has written every verdict, then stop it."""
    worker = HallucinationWorker(client, database, settings())
    worker.start()
    try:
        worker.submit(rows)
        assert worker.wait_idle(60)
    finally:
        worker.stop()
    return worker


def test_worker_writes_flags_and_new_call_versions(ch_client, ch_database):
    migrate(ch_client, ch_database)
    rows = [
        call_row("good", "gpt-5.5", "Refunds are available within 30 days and go back to the original payment method."),
        call_row("bad", "gpt-5.4", "Refunds are available within 90 days, in cash, at any Walmart store.", 1),
        call_row("refused", "gpt-5.5", "I can't help with that.", 2, is_refusal=1),
        call_row("failed", "gpt-5.5", "", 3, is_error=1),
    ]
    write_calls(ch_client, ch_database, rows)
    worker = check_until_idle(ch_client, ch_database, rows)
    calls = stored(ch_client, ch_database)
    # version + 1, checked, verdict; the rest of the row (cost, latency) carried over unchanged
    assert calls["good"][:3] == (2, 1, 0)
    assert calls["bad"][:3] == (2, 1, 1)
    assert calls["good"][3] == 1.0 and calls["good"][4] == Decimal("0.0011") and calls["good"][5] == 800.0
    # refusals and errors have no answer to check
    assert calls["refused"][:2] == (1, 0) and calls["failed"][:2] == (1, 0)
    flags = ch_client.query(
        f"SELECT span_id, check_name, flagged, score, reason, sample_rate FROM {ch_database}.hallucination_flags FINAL"
    ).result_rows
    by_span = {}
    for span, check, flagged, score, reason, rate in flags:
        by_span.setdefault(span, {})[check] = (flagged, score, reason, rate)
    # one row per check that ran, flagged or not
    assert set(by_span) == {"good", "bad"}
    assert set(by_span["good"]) == {"context_grounding", "unsupported_facts"}
    assert not any(flagged for flagged, *_ in by_span["good"].values())
    assert by_span["bad"]["unsupported_facts"][0] == 1 and "90" in by_span["bad"]["unsupported_facts"][2]
    assert worker.stats.checked == 2 and worker.stats.flagged == 1


def test_shadow_pair_is_judged_when_the_second_half_arrives(ch_client, ch_database):
    migrate(ch_client, ch_database)
    primary = call_row(
        "p1",
        "gpt-5.4",
        "Full refunds are available within 30 days.",
        shadow_pair_id="pair-1",
        shadow_role="primary",
        context_text="",
    )
    shadow = call_row(
        "s1",
        "gpt-5.5",
        "Full refunds are available within 90 days.",
        1,
        shadow_pair_id="pair-1",
        shadow_role="shadow",
        context_text="",
    )
    worker = HallucinationWorker(ch_client, ch_database, settings())
    worker.start()
    try:
        write_calls(ch_client, ch_database, [primary])
        worker.submit([primary])
        assert worker.wait_idle(60)
        assert stored(ch_client, ch_database)["p1"][:3] == (2, 1, 0)  # alone: nothing to disagree with
        write_calls(ch_client, ch_database, [shadow])
        worker.submit([shadow])
        assert worker.wait_idle(60)
    finally:
        worker.stop()
    calls = stored(ch_client, ch_database)
    assert calls["s1"][:3] == (2, 1, 1)
    assert calls["p1"][:3] == (3, 1, 1)  # the earlier half gets the pair verdict too
    pair_flags = ch_client.query(
        f"SELECT span_id, flagged, reason FROM {ch_database}.hallucination_flags FINAL "
        "WHERE check_name = 'shadow_disagreement' ORDER BY span_id"
    ).result_rows
    assert [(span, flagged) for span, flagged, _ in pair_flags] == [("p1", 1), ("s1", 1)]
    assert "gpt-5.5" in pair_flags[0][2] and "gpt-5.4" in pair_flags[1][2]
    assert worker.stats.partner_updates == 1


def test_both_halves_of_a_pair_in_one_batch_as_the_processor_hands_them_over(ch_client, ch_database):
    migrate(ch_client, ch_database)
    question = "Who wrote Hamlet?"
    primary = call_row(
        "p3",
        "gpt-5.4",
        "William Shakespeare wrote Hamlet around 1600.",
        shadow_pair_id="pair-3",
        context_text="",
        input_text=question,
    )
    shadow = call_row(
        "s3",
        "gpt-5.5",
        "Hamlet was written by Christopher Marlowe in 1590.",
        1,
        shadow_pair_id="pair-3",
        context_text="",
        input_text=question,
    )
    write_calls(ch_client, ch_database, [primary, shadow])
    # the processor's row dicts: start time in int microseconds, booleans, no sample-rate column
    handed = []
    for row in (primary, shadow):
        row = dict(
            row,
            start_time=int(row["start_time"].timestamp()) * 1_000_000,
            is_error=False,
            is_refusal=False,
            hallucination_checked=False,
            hallucination_flag=False,
        )
        handed.append(row)
    worker = check_until_idle(ch_client, ch_database, handed)
    calls = stored(ch_client, ch_database)
    assert calls["p3"][:3] == (2, 1, 1) and calls["s3"][:3] == (2, 1, 1)
    assert worker.stats.write_failures == 0 and worker.stats.partner_updates == 0
    pair = ch_client.query(
        f"SELECT span_id, flagged, start_time FROM {ch_database}.hallucination_flags FINAL "
        "WHERE check_name = 'shadow_disagreement' ORDER BY span_id"
    ).result_rows
    assert [(span, flagged) for span, flagged, _ in pair] == [("p3", 1), ("s3", 1)]
    assert pair[0][2].replace(tzinfo=UTC) == primary["start_time"]


def test_pair_verdict_reaches_a_partner_whose_own_check_has_not_run(ch_client, ch_database):
    """The race of two instances: the partner is stored but its worker looked before this call existed."""
    migrate(ch_client, ch_database)
    primary = call_row(
        "p2",
        "gpt-5.4",
        "PostgreSQL uses port 5432 by default.",
        shadow_pair_id="pair-2",
        context_text="",
        input_text="What port does PostgreSQL use?",
    )
    shadow = call_row(
        "s2",
        "gpt-5.5",
        "PostgreSQL listens on port 3306 by default.",
        1,
        shadow_pair_id="pair-2",
        context_text="",
        input_text="What port does PostgreSQL use?",
    )
    write_calls(ch_client, ch_database, [primary, shadow])
    check_until_idle(ch_client, ch_database, [shadow])
    calls = stored(ch_client, ch_database)
    assert calls["s2"][:3] == (2, 1, 1)
    assert calls["p2"][:3] == (2, 0, 1)  # the pair verdict, but not called checked by checks that never ran
    spans = ch_client.query(
        f"SELECT span_id FROM {ch_database}.hallucination_flags FINAL WHERE check_name = 'shadow_disagreement' "
        "AND flagged = 1 ORDER BY span_id"
    ).result_rows
    assert spans == [("p2",), ("s2",)]


class _SlowCheck:
    """A real check made slow, to fill the queue the way a heavy model-based check would."""

    name = "slow"

    def __init__(self, release: threading.Event) -> None:
        self.release = release

    def run(self, call) -> Flag:
        self.release.wait(30)
        return Flag(self.name, 0.0, False, "slow check")


def started_worker(client, database: str, rows: list[dict], check, **overrides) -> HallucinationWorker:
    """A started worker running only `check`, with `settings(**overrides)`, after `rows` are stored
    (the processor writes its calls before it submits them)."""
    migrate(client, database)
    write_calls(client, database, rows)
    worker = HallucinationWorker(client, database, settings(**overrides), checks=[check])
    worker.start()
    return worker


def test_submit_never_blocks_and_samples_when_the_queue_is_full(ch_client, ch_database):
    rows = [call_row(f"c{i:04d}", "gpt-5.5", "Refunds take 30 days.", i) for i in range(1_000)]
    release = threading.Event()
    worker = started_worker(
        ch_client, ch_database, rows, _SlowCheck(release), hallucination_queue_size=100, hallucination_batch_size=50
    )
    try:
        # The check holds the worker until `release`: a submit that blocked would never return.
        worker.submit(rows[:100])  # fits
        while worker.backlog > 50:  # the worker takes its first batch of 50 and sticks in the slow check
            time.sleep(0.01)
        worker.submit(rows[100:])  # only what fits (50 of 900) is taken
        release.set()
        assert worker.wait_idle(60)
    finally:
        worker.stop()
    stats = worker.stats
    assert stats.offered == 1_000 and stats.queued + stats.sampled_out == 1_000
    assert stats.queued == 150 and stats.sampled_out == 850
    checked = ch_client.query(
        f"SELECT hallucination_sample_rate, count() FROM {ch_database}.llm_calls FINAL "
        "WHERE hallucination_checked = 1 GROUP BY hallucination_sample_rate ORDER BY hallucination_sample_rate"
    ).result_rows
    rates = dict(checked)
    assert rates[1.0] == 100  # the first submit was taken whole
    sampled = [rate for rate in rates if rate < 1.0]
    assert len(sampled) == 1 and rates[sampled[0]] == 50 and abs(sampled[0] - 50 / 900) < 1e-6
    unchecked = ch_client.query(
        f"SELECT count() FROM {ch_database}.llm_calls FINAL WHERE hallucination_checked = 0"
    ).result_rows[0][0]
    assert unchecked == stats.sampled_out


def test_the_queue_is_bounded_in_bytes_and_keeps_only_what_the_checks_read(ch_client, ch_database):
    answer = "Refunds take 30 days. " * 10_000  # 220 KB: captured content has no size limit
    rows = [call_row(f"b{i:03d}", "gpt-5.5", answer, i) for i in range(40)]
    release = threading.Event()
    seen: list[dict] = []

    class _Holding(_SlowCheck):
        def run(self, call) -> Flag:
            seen.append(call)
            return super().run(call)

    worker = started_worker(
        ch_client, ch_database, rows, _Holding(release), hallucination_queue_mb=1, hallucination_batch_size=100
    )
    try:
        worker.submit(rows)  # 40 x 220 KB = 8.8 MB offered, 1 MB of room: a sample of 4
        assert worker.backlog_bytes <= 2**20
        release.set()
        assert worker.wait_idle(60)
    finally:
        worker.stop()
    assert worker.stats.queued == 4 and worker.stats.sampled_out == 36
    assert worker.backlog_bytes == 0
    assert {key for key in seen[0] if not key.startswith("partner_")} <= {
        "span_id", "trace_id", "start_time", "model", "task", "input_text", "output_text",
        "context_text", "reference_answer", "shadow_pair_id",
    }  # fmt: skip
    rates = ch_client.query(
        f"SELECT DISTINCT hallucination_sample_rate FROM {ch_database}.llm_calls FINAL WHERE hallucination_checked = 1"
    ).result_rows
    assert len(rates) == 1 and abs(rates[0][0] - 4 / 40) < 1e-6


def test_a_failing_write_is_retried_not_lost(ch_client, ch_database):
    row = call_row("late", "gpt-5.5", "Refunds are available within 90 days.")
    migrate(ch_client, ch_database)
    write_calls(ch_client, ch_database, [row])
    # The flags table is missing (moved aside): ClickHouse rejects the write until it is back in
    # one atomic step, so no retry can land between a half-made schema and the stored call.
    ch_client.command(f"RENAME TABLE {ch_database}.hallucination_flags TO {ch_database}.flags_aside")
    worker = HallucinationWorker(ch_client, ch_database, settings(retry_max_backoff_s=0.2))
    worker.start()
    try:
        worker.submit([row])
        deadline = time.monotonic() + 30
        while worker.stats.write_failures == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert worker.stats.write_failures > 0 and not worker.idle()
        ch_client.command(f"RENAME TABLE {ch_database}.flags_aside TO {ch_database}.hallucination_flags")
        assert worker.wait_idle(60)
    finally:
        worker.stop()
    assert stored(ch_client, ch_database)["late"][:3] == (2, 1, 1)
    assert worker.stats.abandoned == 0


class _SleepyCheck:
    name = "sleepy"

    def run(self, call) -> Flag:
        time.sleep(0.1)
        return Flag(self.name, 0.0, False, "took 100 ms")


def test_stop_is_bounded_and_counts_what_stays_unchecked(ch_client, ch_database):
    rows = [call_row(f"z{i:03d}", "gpt-5.5", "Refunds take 30 days.", i) for i in range(100)]
    worker = started_worker(
        ch_client, ch_database, rows, _SleepyCheck(), hallucination_queue_size=100, hallucination_batch_size=1
    )
    worker.submit(rows)
    worker.stop(timeout=0.5)  # 100 checks of 100 ms each would take 10 s
    stats = worker.stats
    assert 0 < stats.checked < 100 and stats.checked + stats.abandoned == 100
    checked = ch_client.query(
        f"SELECT count() FROM {ch_database}.llm_calls FINAL WHERE hallucination_checked = 1"
    ).result_rows[0][0]
    assert checked == stats.checked
