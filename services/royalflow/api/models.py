"""Response models of the balances API. Amounts are exact: integer asset units plus the exact
decimal string; never floats."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from royalflow.money import currency_for


class Amount(BaseModel):
    units: int = Field(description="Integer count of 10^-asset_scale currency units.")
    decimal: str = Field(description="The same amount as an exact decimal string, e.g. '0.012500000 USD'.")

    @classmethod
    def of(cls, units: int, currency: str) -> "Amount":
        return cls(units=units, decimal=currency_for(currency).format(units))


class Balance(BaseModel):
    currency: str
    asset_scale: int
    lifetime: Amount = Field(description="Credits earned, by event time, net of reversals.")
    available: Amount = Field(description="Current balance: credits minus reversals and payouts.")
    windows: dict[str, Amount] = Field(description="Credits in the rolling 1h / 24h / 7d / 30d by event time.")


class Balances(BaseModel):
    owner_id: str
    balances: list[Balance]


class Contribution(BaseModel):
    contribution_id: str
    generation_id: str
    family_id: str
    family_version: str
    method: str
    shapley_value: float = Field(description="phi_i in nats (informational).")
    std_error: float
    share: float
    amount: Amount
    currency: str
    event_time: datetime
    settled_at: datetime


class ContributionPage(BaseModel):
    owner_id: str
    items: list[Contribution]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null on the last page.")


class Audit(BaseModel):
    generation_id: str
    currency: str
    revenue: Amount
    pool: Amount
    platform: Amount
    family_id: str
    family_version: str
    complete: bool
    inconsistent: str | None
    parts: list[dict[str, Any]] = Field(description="Each owner's value, share, amount, error bar, method.")
    attribution: dict[str, Any] | None = Field(description="The audit record: coalition utilities, SEs, seed, content.")


class ClosePeriod(BaseModel):
    period_end: datetime = Field(description="End of the period, with a timezone.")
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")


class Reconciliation(BaseModel):
    ok: bool
    problems: list[str]
