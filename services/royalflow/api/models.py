"""Response and request models of the balances API. Amounts are exact: integer asset units plus
the exact decimal string, with the currency and its asset scale; never floats."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field

from royalflow.contracts.events import Timestamp
from royalflow.money import CURRENCIES, currency_for

SupportedCurrency = Literal[tuple(sorted(CURRENCIES))]  # type: ignore[valid-type]


def _with_zone(value: datetime) -> datetime:
    # PostgreSQL's ±infinity timestamptz decodes to a *naive* datetime.min/max in asyncpg; sent
    # as is, "0001-01-01T00:00:00" would break the RFC 3339 date-time the schema promises.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_with_zone)]  # every time the API answers with


class Error(BaseModel):
    detail: str = Field(description="What was wrong with the request, in words.")


class Amount(BaseModel):
    units: int = Field(description="Exact integer count of 10^-asset_scale currency units.")
    decimal: str = Field(description="The same amount as an exact decimal string, e.g. '0.012500000'.")
    currency: str = Field(description="ISO 4217 code.")
    asset_scale: int = Field(description="Decimal places of `units`: 9 for USD (2 minor + 7 sub-cent digits).")

    @classmethod
    def of(cls, units: int, currency: str) -> Amount:
        spec = currency_for(currency)
        # format() renders exactly via integer divmod ("12.345000001 USD"); drop the code.
        return cls(units=units, decimal=spec.format(units).rsplit(" ", 1)[0], currency=spec.code, asset_scale=spec.asset_scale)


class Balance(BaseModel):
    currency: str
    asset_scale: int
    lifetime: Amount = Field(description="Credits earned, net of reversals (payouts do not reduce it).")
    available: Amount = Field(description="Current balance: credits minus reversals and payouts.")
    windows: dict[str, Amount] = Field(description="Credits in the rolling 1h / 24h / 7d / 30d windows, by event time.")


class Balances(BaseModel):
    owner_id: str
    balances: list[Balance] = Field(description="One entry per currency the owner has earned in; empty if none.")


class Contribution(BaseModel):
    contribution_id: str
    generation_id: str
    family_id: str
    family_version: str
    method: str = Field(description="Shapley method: exact, permutation or mixture.")
    shapley_value: float = Field(description="phi_i in nats (informational; money is `amount`).")
    std_error: float = Field(description="Standard error of phi_i in nats (0 for exact).")
    share: float = Field(description="phi_i / sum(phi) used for the split (informational).")
    amount: Amount
    event_time: UtcDatetime
    settled_at: UtcDatetime


class ContributionPage(BaseModel):
    owner_id: str
    items: list[Contribution]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null on the last page.")


class AuditPart(BaseModel):
    owner_id: str = Field(description="Owner id; other owners appear as 'owner#k' in an owner's view.")
    contribution_id: str | None = Field(description="Null for other owners in an owner's view (it embeds their id).")
    shapley_value: float = Field(description="phi_i in nats.")
    std_error: float = Field(description="Error bar of phi_i (standard error, nats).")
    share: float
    amount: Amount
    method: str
    family_version: str
    cluster: list[str] | None = Field(
        default=None, description="The cluster of owners this part was paid through (same-source owners valued as "
        "one player and split by data size); [owner] alone when the owner is its own player; null for older records.")


class Audit(BaseModel):
    generation_id: str
    currency: str
    revenue: Amount
    pool: Amount = Field(description="Royalty pool split among the owners.")
    platform: Amount = Field(description="Revenue minus pool, kept by the platform.")
    family_id: str
    family_version: str
    event_time: UtcDatetime
    complete: bool = Field(description="All owners' parts arrived and sum exactly to the pool.")
    inconsistent: str | None = Field(description="Why the parts disagree with the pool, if they do.")
    parts: list[AuditPart] = Field(description="Each owner's value, share, amount, error bar and method.")
    attribution: dict[str, Any] | None = Field(
        description="The attribution record (schemas/attribution-record.v1.json): coalition utilities and their "
        "standard errors, Shapley values, method, mode, seed. In an owner's view other owners are pseudonymised "
        "and the generation's content and conditioning are withheld."
    )
    redacted: bool = Field(description="True in an owner's view (see `attribution`).")


class Period(BaseModel):
    period_id: str
    currency: str
    period_end: UtcDatetime
    closed_at: UtcDatetime
    href: str = Field(description="This owner's statement for the period.")


class StatementLine(BaseModel):
    generation_id: str
    contribution_id: str
    family_id: str
    family_version: str
    share: float
    amount: Amount
    event_time: UtcDatetime


class Statement(BaseModel):
    owner_id: str
    period_id: str
    currency: str
    asset_scale: int
    credits: Amount = Field(description="Sum of the lines: credits settled in this period.")
    payout: Amount = Field(description="Paid out at close, rounded down to the minor unit.")
    carried_forward: Amount = Field(description="Sub-minor-unit remainder left on the account for the next period.")
    lines: list[StatementLine]


class ClosePeriod(BaseModel):
    # The contract's one window for event times, [2000-01-01, now + 1 day], and only RFC 3339
    # text: a number is not silently read as seconds since 1970, and a year-1 or year-9999 end
    # (with an offset, outside what PostgreSQL and Python can both hold) is a 422, never a 500.
    period_end: Timestamp = Field(
        description="End of the period, RFC 3339 with a timezone, e.g. 2026-12-01T00:00:00Z; "
        "between 2000-01-01T00:00:00Z and now + 1 day."
    )
    # An enum, not just a pattern: the schema names exactly the currencies the ledger books, so
    # a schema-valid body is never refused for its currency.
    currency: SupportedCurrency = Field(default="USD", description="ISO 4217 code of a supported currency.")


class ClosedPeriod(BaseModel):
    period_id: str
    currency: str
    owners: int = Field(description="Owners with a positive balance at close.")
    paid: Amount
    carried_forward: Amount


class Reconciliation(BaseModel):
    ok: bool
    problems: list[str] = Field(description="Each offending record, named; empty when ok.")


class Health(BaseModel):
    status: str = Field(description="'ok', or 'failing' when a liveness check failed.")
    checks: dict[str, bool] = Field(default_factory=dict, description="Each liveness check by name: passed?")
    failing: list[str] = Field(default_factory=list, description="Names of the failing checks, sorted.")
    details: dict[str, str] = Field(default_factory=dict, description="Why each failing check failed.")


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, bool] = Field(description="Each readiness check by name: passed within its time limit?")
    failing: list[str] = Field(default_factory=list, description="Names of the failing checks, sorted.")
    details: dict[str, str] = Field(default_factory=dict, description="Why each failing check failed.")
