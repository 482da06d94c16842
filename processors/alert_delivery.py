"""Alert webhooks: each new crossing goes to Slack-compatible and Alertmanager receivers at most once.

At most once across restarts and replicas, in two steps. The evaluator only hands over
crossings it has just found missing from `alerts` (a restart finds them recorded). Two
replicas can both find the same crossing missing, so each webhook delivery is first
claimed in `alert_deliveries`: the claim is an insert whose deduplication token is the
crossing and the webhook, so ClickHouse keeps only the first claim of a pair
(`non_replicated_deduplication_window`; a Replicated table deduplicates through Keeper the
same way), and only the replica whose claim was kept sends. A replica that dies between
claim and send loses that delivery: the alert is still in the table, the log and the
dashboard.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import TYPE_CHECKING, Literal, Protocol, TypeGuard, get_args
from urllib.parse import urlsplit

import requests
from clickhouse_connect.driver.client import Client
from tenacity import RetryError, Retrying, retry_if_exception, stop_after_attempt, wait_exponential

if TYPE_CHECKING:
    from processors.alerts import Alert

log = logging.getLogger("cutover.alerts")

WebhookKind = Literal["slack", "alertmanager"]
WEBHOOK_KINDS: tuple[WebhookKind, ...] = get_args(WebhookKind)
ALERTMANAGER_PATH = "/api/v2/alerts"
JSON = dict[str, object] | list[dict[str, object]]


class DeliverySettings(Protocol):
    @property
    def alert_webhooks(self) -> str: ...
    @property
    def alert_webhook_attempts(self) -> int: ...
    @property
    def alert_webhook_timeout_s(self) -> float: ...
    @property
    def alert_webhook_max_backoff_s(self) -> float: ...


@dataclass(frozen=True)
class Webhook:
    kind: WebhookKind
    url: str

    @property
    def where(self) -> str:
        """Scheme and host only: a Slack webhook's path is its secret and must not reach the log."""
        parts = urlsplit(self.url)
        return f"{self.kind} {parts.scheme}://{parts.netloc}"

    @property
    def identity(self) -> str:
        return f"{self.kind}:{hashlib.sha256(self.url.encode()).hexdigest()[:16]}"

    def payload(self, alert: Alert) -> JSON:
        return _PAYLOADS[self.kind](alert)


def _is_webhook_kind(kind: str) -> TypeGuard[WebhookKind]:
    return kind in WEBHOOK_KINDS


def parse_webhooks(value: str) -> tuple[Webhook, ...]:
    """`kind=url[,kind=url...]` -> webhooks; a ValueError names the bad entry."""
    hooks = []
    for entry in filter(None, (part.strip() for part in value.split(","))):
        kind, _, url = entry.partition("=")
        kind, url = kind.strip().lower(), url.strip()
        parts = urlsplit(url)
        if not _is_webhook_kind(kind) or parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"expected slack=URL or alertmanager=URL (http or https), got {entry!r}")
        if kind == "alertmanager" and not parts.path.rstrip("/").endswith(ALERTMANAGER_PATH):
            url = url.rstrip("/") + ALERTMANAGER_PATH
        hooks.append(Webhook(kind, url))
    return tuple(hooks)


def slack_payload(alert: Alert) -> JSON:
    icon = {"critical": ":rotating_light:", "warning": ":warning:"}.get(alert.severity, ":information_source:")
    return {"text": f"{icon} *llm-cutover {alert.kind}* [{alert.severity}] {alert.message}"}


def alertmanager_payload(alert: Alert) -> JSON:
    labels = {
        "alertname": f"cutover_{alert.kind}",
        "severity": alert.severity,
        "service": "llm-cutover",
        "period": alert.period,
        "threshold": f"{alert.threshold:g}",
    }
    if alert.model:
        labels["model"] = alert.model
    started = alert.alert_time.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return [
        {
            "labels": labels,
            "annotations": {"summary": alert.message, "value": f"{alert.value:g}"},
            "startsAt": started,
        }
    ]


_PAYLOADS: dict[str, Callable[[Alert], JSON]] = {"slack": slack_payload, "alertmanager": alertmanager_payload}


class WebhookRefused(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:200]}")
        self.status = status


def _transient(error: BaseException) -> bool:
    if isinstance(error, WebhookRefused):
        return error.status == 429 or error.status >= 500
    return isinstance(error, requests.ConnectionError | requests.Timeout)


class AlertDelivery:
    """Claims and sends new alerts to every configured webhook; one instance per evaluator."""

    def __init__(self, client: Client, database: str, settings: DeliverySettings) -> None:
        self.client = client
        self.database = database
        self.webhooks = parse_webhooks(settings.alert_webhooks)
        self.attempts = settings.alert_webhook_attempts
        self.timeout_s = settings.alert_webhook_timeout_s
        self.max_backoff_s = settings.alert_webhook_max_backoff_s
        self.claimant = uuid.uuid4().hex
        self._session = requests.Session()
        if self.webhooks:
            self._create_table()

    def _create_table(self) -> None:
        # The claims outlive any deduplication window only as rows: a claim older than the
        # window is never contested, because its crossing is in `alerts` by then.
        self.client.command(
            f"""
            CREATE TABLE IF NOT EXISTS {self.database}.alert_deliveries (
                claim       String,
                claimant    String,
                claimed_at  DateTime64(3, 'UTC') DEFAULT now64(3)
            )
            ENGINE = MergeTree
            ORDER BY claim
            SETTINGS non_replicated_deduplication_window = 100000
            """
        )

    def deliver(self, alerts: Sequence[Alert]) -> int:
        """Send each alert to each webhook this instance wins the claim for; returns how many were delivered."""
        delivered = 0
        for alert in alerts:
            for hook in self.webhooks:
                if self._claim(alert, hook):
                    delivered += self._send(alert, hook)
        return delivered

    def _claim(self, alert: Alert, hook: Webhook) -> bool:
        claim = "|".join((alert.kind, alert.model, alert.period, repr(float(alert.threshold)), hook.identity))
        self.client.insert(
            "alert_deliveries",
            [[claim, self.claimant]],
            column_names=["claim", "claimant"],
            database=self.database,
            settings={"insert_deduplicate": 1, "insert_deduplication_token": claim},
        )
        kept = self.client.query(
            f"SELECT claimant FROM {self.database}.alert_deliveries WHERE claim = %(claim)s LIMIT 1",
            parameters={"claim": claim},
        ).result_rows
        return bool(kept) and kept[0][0] == self.claimant

    def _send(self, alert: Alert, hook: Webhook) -> int:
        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=0.5, max=self.max_backoff_s),
            retry=retry_if_exception(_transient),
            reraise=False,
        )
        try:
            for attempt in retrying:
                with attempt:
                    self._post(hook, hook.payload(alert))
        except RetryError as error:
            cause = error.last_attempt.exception()
            log.error(
                "alert delivery to %s failed after %d attempts (%s): %s %s %s not delivered",
                hook.where,
                self.attempts,
                cause,
                alert.kind,
                alert.model or "-",
                alert.period,
            )
            return 0
        except (WebhookRefused, requests.RequestException) as error:
            log.error(
                "alert delivery to %s refused, not retried (%s): %s %s %s not delivered",
                hook.where,
                error,
                alert.kind,
                alert.model or "-",
                alert.period,
            )
            return 0
        log.info("alert %s %s %s delivered to %s", alert.kind, alert.model or "-", alert.period, hook.where)
        return 1

    def _post(self, hook: Webhook, payload: JSON) -> None:
        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"}
        response = self._session.post(hook.url, data=body, headers=headers, timeout=self.timeout_s)
        if response.status_code >= 300:
            raise WebhookRefused(response.status_code, response.text)

    def close(self) -> None:
        self._session.close()
