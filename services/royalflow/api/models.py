"""Response and request models of the balances API. Amounts are exact: integer asset units plus
the exact decimal string, with the currency and its asset scale; never floats."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, Field, WithJsonSchema

from royalflow.ledger.queries import CURSOR_PATTERN
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
    next_cursor: Annotated[str, Field(pattern=CURSOR_PATTERN)] | None = Field(
        description="Pass as ?cursor= for the next page; null on the last page.")


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


# The period_end window, said in the schema and enforced by that same pattern (one constant): an
# RFC 3339 date-time with an offset, years 2000-2099 as written, a real calendar date (months'
# lengths and leap days spelt out), no leap second, at most microseconds. So every string a
# generated client can build from the document is a time Python and PostgreSQL both hold (a
# year-1 or year-9999 end with an offset is not), and no number is read as seconds since 1970.
# Whether the period has ended yet is the server's clock, not the request's shape: a 409.
_YEAR = "20[0-9]{2}"
_DATE = (
    f"(?:{_YEAR}-(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
    f"|{_YEAR}-(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
    f"|{_YEAR}-02-(?:0[1-9]|1[0-9]|2[0-8])"
    "|20(?:[02468][048]|[13579][26])-02-29)"  # every fourth year from 2000 (itself a leap year)
)
_TIME = "(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\\.[0-9]{1,6})?"
_OFFSET = "(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
PERIOD_END_PATTERN = f"^{_DATE}T{_TIME}{_OFFSET}$"
PERIOD_END_MAX_LENGTH = 32  # "2000-01-01T00:00:00.000000+00:00"
_PERIOD_END = re.compile(PERIOD_END_PATTERN)


def _period_end_text(value: Any) -> Any:
    if not isinstance(value, str) or not _PERIOD_END.fullmatch(value):
        raise ValueError("period_end must be an RFC 3339 date-time with an offset, years 2000-2099, "
                         "e.g. 2026-12-01T00:00:00Z (the schema's pattern)")
    return value


PeriodEnd = Annotated[
    AwareDatetime,
    BeforeValidator(_period_end_text),
    WithJsonSchema({
        "type": "string", "format": "date-time", "pattern": PERIOD_END_PATTERN, "maxLength": PERIOD_END_MAX_LENGTH,
        "examples": ["2026-12-01T00:00:00Z"],
        "description": "End of the period: an RFC 3339 date-time with an offset, a year from 2000 to 2099 as written, "
        "e.g. 2026-12-01T00:00:00Z. A period that has not ended (period_end more than 1 day after the server's "
        "clock) is refused with 409.",
    }),
]


class ClosePeriod(BaseModel):
    period_end: PeriodEnd
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
