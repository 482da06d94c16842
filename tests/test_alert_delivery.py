"""Alert webhooks against a real HTTP receiver on 127.0.0.1: formats, retries, at most once per crossing."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from processors.alert_delivery import parse_webhooks
from processors.alerts import AlertEvaluator
from processors.schema import migrate
from processors.settings import ProcessorSettings
from tests.test_alerts import NOW, Calls, settings


class Receiver:
    """A tiny webhook receiver: records every request; answers the scripted statuses first, then 200."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, Any]] = []  # (path, the JSON body as parsed)
        self.delivered: list[tuple[str, Any]] = []
        self.script: list[int] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver.lock:
                    receiver.requests.append((self.path, body))
                    status = receiver.script.pop(0) if receiver.script else 200
                    if status == 200:
                        receiver.delivered.append((self.path, body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def paths(self) -> list[str]:
        return sorted(path for path, _ in self.delivered)


@pytest.fixture
def calls(ch_client, ch_database) -> Calls:
    migrate(ch_client, ch_database)
    return Calls(ch_client, ch_database)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    served = Receiver()
    yield served
    served.server.shutdown()
    served.server.server_close()


def hooked(receiver: Receiver, **overrides: object) -> ProcessorSettings:
    webhooks = f"slack={receiver.url}/services/T0/B0/SECRET,alertmanager={receiver.url}"
    return settings(alert_webhooks=webhooks, alert_webhook_max_backoff_s=0.2, **overrides)


def test_each_crossing_reaches_slack_and_alertmanager_once_also_after_a_restart(
    ch_client, ch_database, calls: Calls, receiver: Receiver
):
    evaluator = AlertEvaluator(ch_client, ch_database, hooked(receiver))
    calls.add("gpt-5.5", 40, cost=Decimal("1.5"))  # $60 of $100: the 50% crossing
    assert len(evaluator.run_once(NOW)) == 1
    assert evaluator.run_once(NOW + timedelta(seconds=30)) == []
    assert receiver.paths() == ["/api/v2/alerts", "/services/T0/B0/SECRET"]
    slack = next(body for path, body in receiver.delivered if path.startswith("/services"))
    assert "budget_burn" in slack["text"] and "$60.00 of $100.00" in slack["text"]
    [am] = next(body for path, body in receiver.delivered if path == "/api/v2/alerts")
    assert am["labels"] == {
        "alertname": "cutover_budget_burn",
        "severity": "info",
        "service": "llm-cutover",
        "period": NOW.strftime("%Y-%m"),
        "threshold": "0.5",
    }
    assert "$60.00" in am["annotations"]["summary"] and am["startsAt"].endswith("Z")

    calls.add("gpt-5.5", 20, cost=Decimal("1.5"))  # $90: 75% and 90% at once
    restarted = AlertEvaluator(ch_client, ch_database, hooked(receiver))
    assert len(restarted.run_once(NOW + timedelta(seconds=60))) == 2
    assert AlertEvaluator(ch_client, ch_database, hooked(receiver)).run_once(NOW + timedelta(seconds=90)) == []
    thresholds = sorted(body[0]["labels"]["threshold"] for path, body in receiver.delivered if path == "/api/v2/alerts")
    assert thresholds == ["0.5", "0.75", "0.9"]
    assert len(receiver.requests) == 6


def test_two_evaluators_racing_on_the_same_crossings_deliver_each_once(
    ch_client, ch_database, calls: Calls, receiver: Receiver
):
    calls.add("gpt-5.5", 60, cost=Decimal("1.5"))  # $90: three crossings
    found = AlertEvaluator(ch_client, ch_database, hooked(receiver)).run_once(NOW)
    assert len(found) == 3
    # Replicas that found the same crossings unrecorded at the same moment hand them over too.
    barrier = threading.Barrier(4)
    results: list[int] = []

    def race(evaluator: AlertEvaluator) -> None:
        barrier.wait()
        results.append(evaluator.delivery.deliver(found))

    fresh = [AlertEvaluator(ch_client, ch_database, hooked(receiver)) for _ in range(4)]
    threads = [threading.Thread(target=race, args=(evaluator,)) for evaluator in fresh]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results == [0, 0, 0, 0]
    assert len(receiver.delivered) == 6 == len(receiver.requests)  # 3 crossings x 2 webhooks


def test_concurrent_first_claims_pick_exactly_one_sender(ch_client, ch_database, calls: Calls, receiver: Receiver):
    calls.add("gpt-5.5", 40, cost=Decimal("1.5"))
    [alert] = AlertEvaluator(ch_client, ch_database, settings()).run_once(NOW)  # recorded, no webhooks
    racers = [AlertEvaluator(ch_client, ch_database, hooked(receiver)) for _ in range(4)]
    barrier = threading.Barrier(len(racers))
    results: list[int] = []

    def race(evaluator: AlertEvaluator) -> None:
        barrier.wait()
        results.append(evaluator.delivery.deliver([alert]))

    threads = [threading.Thread(target=race, args=(evaluator,)) for evaluator in racers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sum(results) == 2 and len(receiver.delivered) == 2  # one per webhook, whoever won


def test_transient_failures_are_retried_and_delivered_once(ch_client, ch_database, calls: Calls, receiver: Receiver):
    receiver.script = [503, 429]
    settings_ = settings(alert_webhooks=f"slack={receiver.url}/hook", alert_webhook_max_backoff_s=0.2)
    calls.add("gpt-5.5", 40, cost=Decimal("1.5"))
    AlertEvaluator(ch_client, ch_database, settings_).run_once(NOW)
    assert len(receiver.requests) == 3 and len(receiver.delivered) == 1


def test_a_failed_delivery_is_one_clear_line_without_the_webhook_secret(
    ch_client, ch_database, calls: Calls, receiver: Receiver, caplog
):
    caplog.set_level(logging.INFO, logger="cutover.alerts")
    receiver.script = [500] * 3 + [400]
    settings_ = settings(
        alert_webhooks=f"slack={receiver.url}/services/T0/B0/SECRET",
        alert_webhook_attempts=3,
        alert_webhook_max_backoff_s=0.2,
    )
    calls.add("gpt-5.5", 40, cost=Decimal("1.5"))
    assert len(AlertEvaluator(ch_client, ch_database, settings_).run_once(NOW)) == 1
    assert len(receiver.requests) == 3 and receiver.delivered == []
    [failed] = [r.getMessage() for r in caplog.records if "delivery" in r.getMessage()]
    assert "failed after 3 attempts" in failed and "HTTP 500" in failed and "budget_burn" in failed
    assert "SECRET" not in failed and f"slack {receiver.url}" in failed
    # A 4xx is the receiver refusing the payload: no retry.
    calls.add("gpt-5.5", 20, cost=Decimal("1.5"))
    AlertEvaluator(ch_client, ch_database, settings_).run_once(NOW + timedelta(seconds=30))
    refused = [r.getMessage() for r in caplog.records if "refused, not retried" in r.getMessage()]
    assert len(refused) == 1 and "HTTP 400" in refused[0]


@pytest.mark.parametrize(
    "value", ["teams=https://x.example", "slack=ftp://x.example/hook", "alertmanager=", "http://no-kind.example"]
)
def test_bad_webhook_settings_are_rejected(value):
    with pytest.raises(ValueError):
        parse_webhooks(value)
    with pytest.raises(ValueError, match="alert_webhooks"):
        ProcessorSettings(alert_webhooks=value)


def test_alertmanager_url_gets_the_v2_path_once():
    assert [
        h.url for h in parse_webhooks("alertmanager=http://am:9093/,alertmanager=http://am:9093/api/v2/alerts")
    ] == [
        "http://am:9093/api/v2/alerts",
        "http://am:9093/api/v2/alerts",
    ]
