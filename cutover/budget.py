"""The spend budget: one setting pair read by the processor's alerts and the dashboard's burn
chart, so both judge the same period against the same number."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal

from pydantic import Field

from cutover.settings import CutoverSettings

BudgetPeriod = Literal["day", "month"]


class BudgetSettings(CutoverSettings):
    budget_usd: Decimal = Field(
        default=Decimal(0),
        ge=0,
        description="Spend budget in USD per budget period; 0 turns budget alerts and lines off.",
    )
    budget_period: BudgetPeriod = Field(
        default="month", description="Period the budget covers (UTC calendar day or month)."
    )


def period_bounds(now: datetime, period: BudgetPeriod) -> tuple[datetime, datetime]:
    """[start, end) of the UTC calendar day or month that contains `now`."""
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day, day + timedelta(days=1)
    start = day.replace(day=1)
    return start, (start + timedelta(days=32)).replace(day=1)


def period_label(now: datetime, period: BudgetPeriod) -> str:
    return now.strftime("%Y-%m-%d" if period == "day" else "%Y-%m")
