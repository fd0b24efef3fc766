"""Currencies and their asset scales.

An amount is an integer count of 10^-asset_scale units of the currency. Every currency's
asset scale is its ISO 4217 minor-unit digits + 7, so one asset unit is 1e-7 of a minor unit
(USD: scale 9, 1 unit = 1e-9 USD). That resolves a generation that earned a hundredth of a
cent split 64 ways with room to spare, and a BIGINT still holds 9.2e9 USD.
"""

from __future__ import annotations

from dataclasses import dataclass

from royalflow.errors import MoneyError

SUB_MINOR_DIGITS = 7


@dataclass(frozen=True, slots=True)
class Currency:
    code: str
    minor_digits: int

    @property
    def asset_scale(self) -> int:
        return self.minor_digits + SUB_MINOR_DIGITS

    @property
    def units_per_minor(self) -> int:
        """Asset units in one minor unit (one cent for USD)."""
        return 10**SUB_MINOR_DIGITS

    def format(self, amount: int) -> str:
        """Exact decimal rendering, e.g. ``12.345000001 USD``; never goes through float."""
        sign = "-" if amount < 0 else ""
        whole, frac = divmod(abs(amount), 10**self.asset_scale)
        return f"{sign}{whole}.{frac:0{self.asset_scale}d} {self.code}" if self.asset_scale else f"{sign}{whole} {self.code}"


# ISO 4217 minor-unit digits of the currencies we settle in.
CURRENCIES: dict[str, Currency] = {
    c.code: c
    for c in (
        Currency("USD", 2),
        Currency("EUR", 2),
        Currency("GBP", 2),
        Currency("CHF", 2),
        Currency("CAD", 2),
        Currency("AUD", 2),
        Currency("JPY", 0),
        Currency("KRW", 0),
        Currency("KWD", 3),
    )
}


def currency_for(code: str) -> Currency:
    try:
        return CURRENCIES[code]
    except KeyError:
        raise MoneyError(f"currency {code!r} is not supported (supported: {', '.join(sorted(CURRENCIES))})") from None
