"""Alert rules over `llm_calls FINAL` and `latency_histograms FINAL`, written to `alerts`.

- budget_burn: spend of the current UTC day or month crossing 50%, 75% and 90% of
  `CUTOVER_BUDGET_USD` (one row per period and threshold, ever).
- p99_over_timeout: a model's p99 latency over the last window (merged exponential
  histogram buckets) at or above its configured client timeout.
- refusal_rate / error_rate: one model's rate significantly above the other models' over the
  window: a one-sided two-proportion z-test, with a minimum sample and a minimum absolute
  difference, so a handful of calls or a 0.1-point gap never pages anyone.

The `alerts` table is keyed (kind, model, period, threshold): a crossing is one row. For
the budget the period is the budget period; for the windowed rules it is the
`CUTOVER_ALERT_REPEAT_MINUTES` slot, so a condition that persists is re-recorded (and
re-logged) once per slot, not on every evaluation. A crossing already in the table is
neither written nor logged again, also across restarts and processor instances. New
crossings also go to the webhooks of `CUTOVER_ALERT_WEBHOOKS` (processors/alert_delivery.py).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from clickhouse_connect.driver.client import Client

from cutover.budget import period_bounds, period_label
from cutover.histogram import HISTOGRAM_SCALE, quantile
from processors.alert_delivery import AlertDelivery
from processors.pricing import PriceBook
from processors.settings import ProcessorSettings

log = logging.getLogger("cutover.alerts")

BUDGET_THRESHOLDS = (0.5, 0.75, 0.9)
# Timed-out calls are recorded at the moment they were cut, so when more than 1% are cut the
# p99 sits *at* the timeout, not above it; allow the histogram's relative error (0.54% at
# scale 6) so that case fires instead of flickering on which side of the line the bucket falls.
_BASE = 2 ** (2**-HISTOGRAM_SCALE)
P99_TOLERANCE = (_BASE - 1) / (_BASE + 1)
_BUDGET_SEVERITY = {0.5: "info", 0.75: "warning", 0.9: "critical"}
ALERT_COLUMNS = ("alert_time", "kind", "severity", "model", "period", "threshold", "value", "message")


@dataclass(frozen=True)
class Alert:
    alert_time: datetime
    kind: str
    severity: str
    model: str
    period: str
    threshold: float
    value: float
    message: str

    @property
    def key(self) -> tuple[str, str, str, float]:
        return self.kind, self.model, self.period, self.threshold

    def row(self) -> tuple:
        return tuple(getattr(self, name) for name in ALERT_COLUMNS)


def two_proportion_z(hits_a: int, n_a: int, hits_b: int, n_b: int) -> float:
    """z of the pooled two-proportion test for p_a > p_b (0 when undefined)."""
    if n_a == 0 or n_b == 0:
        return 0.0
    pooled = (hits_a + hits_b) / (n_a + n_b)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    return 0.0 if spread == 0 else (hits_a / n_a - hits_b / n_b) / spread


class AlertEvaluator:
    def __init__(self, client: Client, database: str, settings: ProcessorSettings) -> None:
        self.client = client
        self.database = database
        self.settings = settings
        self._book: PriceBook | None = None
        self.delivery = AlertDelivery(client, database, settings)

    def run_once(self, now: datetime) -> list[Alert]:
        """Evaluate every rule at `now` (UTC); write and log the crossings not recorded yet; return them."""
        now = now.astimezone(UTC) if now.tzinfo else now.replace(tzinfo=UTC)
        candidates = [*self._budget(now), *self._latency(now), *self._rates(now)]
        new = self._unrecorded(candidates)
        if new:
            self.client.insert(
                "alerts", [alert.row() for alert in new], column_names=list(ALERT_COLUMNS), database=self.database
            )
            for alert in new:
                level = logging.ERROR if alert.severity == "critical" else logging.WARNING
                log.log(level, "ALERT %s [%s] %s", alert.kind, alert.severity, alert.message)
            self.delivery.deliver(new)
        return new

    # rules -----------------------------------------------------------------------------

    def _budget(self, now: datetime) -> list[Alert]:
        budget = Decimal(self.settings.budget_usd)
        if budget <= 0:
            return []
        start, _ = period_bounds(now, self.settings.budget_period)
        period = period_label(now, self.settings.budget_period)
        spent, unpriced = self.client.query(
            f"""
            SELECT sum(cost_usd), countIf(cost_usd IS NULL)
            FROM {self.database}.llm_calls FINAL
            WHERE start_time >= %(start)s AND start_time < %(now)s
            """,
            parameters={"start": start.replace(tzinfo=None), "now": now.replace(tzinfo=None)},
        ).result_rows[0]
        spent = Decimal(spent or 0)
        burn = float(spent / budget)
        unpriced_note = f"; {unpriced} unpriced calls not included" if unpriced else ""
        return [
            Alert(
                now,
                "budget_burn",
                _BUDGET_SEVERITY[threshold],
                "",
                period,
                threshold,
                round(burn, 6),
                f"budget {period}: ${spent:.2f} of ${budget:.2f} spent ({burn:.1%}), past {threshold:.0%}{unpriced_note}",
            )
            for threshold in BUDGET_THRESHOLDS
            if burn >= threshold
        ]

    def _window(self, now: datetime) -> tuple[datetime, str]:
        start = now - timedelta(minutes=self.settings.alert_window_minutes)
        slot_seconds = self.settings.alert_repeat_minutes * 60
        slot = datetime.fromtimestamp(int(now.timestamp()) // slot_seconds * slot_seconds, tz=UTC)
        return start, slot.strftime("%Y-%m-%dT%H:%M")

    def _timeout_s(self, model: str) -> float:
        timeouts: dict[str, float] = self.settings.model_timeouts_s
        name = model.strip().lower()
        if name in timeouts:
            return timeouts[name]
        family = self._price_book().family(name)
        return timeouts.get(family or "", self.settings.default_timeout_s)

    def _price_book(self) -> PriceBook:
        # Dated snapshots take their family's timeout; the price book knows the families.
        if self._book is None:
            self._book = PriceBook.load(self.settings.prices_file)
        return self._book

    def _latency(self, now: datetime) -> list[Alert]:
        start, slot = self._window(now)
        result = self.client.query(
            f"""
            SELECT model, sum(count), sum(zero_count), sumMap(buckets)
            FROM {self.database}.latency_histograms FINAL
            WHERE metric = 'latency_ms' AND minute >= %(start)s AND minute <= %(now)s
            GROUP BY model
            """,
            parameters={"start": start.replace(second=0, microsecond=0, tzinfo=None), "now": now.replace(tzinfo=None)},
        )
        alerts = []
        for model, count, zero_count, buckets in result.result_rows:
            if count < self.settings.alert_min_calls:
                continue
            p99 = quantile(dict(buckets), 0.99, zero_count)
            limit_ms = self._timeout_s(model) * 1000
            if p99 is not None and p99 >= limit_ms * (1 - P99_TOLERANCE):
                alerts.append(
                    Alert(
                        now,
                        "p99_over_timeout",
                        "warning",
                        model,
                        slot,
                        limit_ms,
                        round(p99, 3),
                        f"{model}: p99 latency {p99 / 1000:.2f}s over the last {self.settings.alert_window_minutes} min "
                        f"({count} calls) is at or above its {limit_ms / 1000:g}s timeout: over 1% of calls are cut",
                    )
                )
        return alerts

    def _rates(self, now: datetime) -> list[Alert]:
        start, slot = self._window(now)
        rows = self.client.query(
            f"""
            SELECT model, count(), countIf(is_error = 1), countIf(is_error = 0), countIf(is_error = 0 AND is_refusal = 1)
            FROM {self.database}.llm_calls FINAL
            WHERE start_time >= %(start)s AND start_time < %(now)s
            GROUP BY model
            """,
            parameters={"start": start.replace(tzinfo=None), "now": now.replace(tzinfo=None)},
        ).result_rows
        if len(rows) < 2:
            return []
        settings, alerts = self.settings, []
        # Errors are a share of all calls; refusals a share of the calls that got an answer.
        for kind, hits_at, total_at in (("error_rate", 2, 1), ("refusal_rate", 4, 3)):
            all_hits = sum(row[hits_at] for row in rows)
            all_total = sum(row[total_at] for row in rows)
            for row in rows:
                model, hits, total = row[0], row[hits_at], row[total_at]
                rest_hits, rest_total = all_hits - hits, all_total - total
                if total < settings.alert_min_calls or rest_total < settings.alert_min_calls:
                    continue
                rate, rest_rate = hits / total, rest_hits / rest_total
                z = two_proportion_z(hits, total, rest_hits, rest_total)
                if z >= settings.alert_rate_z and rate - rest_rate >= settings.alert_rate_min_diff:
                    others = ", ".join(sorted(r[0] for r in rows if r[0] != model))
                    label = kind.replace("_", " ")
                    alerts.append(
                        Alert(
                            now,
                            kind,
                            "warning",
                            model,
                            slot,
                            settings.alert_rate_z,
                            round(rate, 6),
                            f"{model}: {label} {rate:.1%} ({hits}/{total}) vs {rest_rate:.1%} ({rest_hits}/{rest_total}) "
                            f"for {others} over the last {settings.alert_window_minutes} min (z={z:.1f})",
                        )
                    )
        return alerts

    # bookkeeping -----------------------------------------------------------------------

    def _unrecorded(self, candidates: list[Alert]) -> list[Alert]:
        if not candidates:
            return []
        recorded = {
            (kind, model, period, float(threshold))
            for kind, model, period, threshold in self.client.query(
                f"SELECT kind, model, period, threshold FROM {self.database}.alerts FINAL WHERE period IN %(periods)s",
                parameters={"periods": sorted({alert.period for alert in candidates})},
            ).result_rows
        }
        return [alert for alert in candidates if alert.key not in recorded]
