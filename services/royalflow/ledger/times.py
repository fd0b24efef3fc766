"""Event times read back from PostgreSQL.

The contract bounds event times to [2000-01-01, now + 1 day], but a book written before that
bound may hold ``-infinity``/``infinity`` (a year-1 time after its offset was applied). asyncpg
returns those as NAIVE ``datetime.min``/``datetime.max``: arithmetic with an aware time raises
TypeError, and ``astimezone`` on them may overflow. Every ledger path that computes with a
stored time goes through :func:`finite` first; such rows are still booked and corrected, they
only get no latency sample and an hourly bucket at the same infinity.
"""

from __future__ import annotations

from datetime import UTC, datetime


def finite(value: datetime | None) -> datetime | None:
    """``value`` if it is a real, timezone-aware instant; None for ±infinity (or no value)."""
    if value is None or value.tzinfo is None:
        return None
    return value


def hour_of(value: datetime) -> datetime:
    """The UTC hour an event belongs to; ±infinity stays itself (PostgreSQL stores it as such)."""
    if finite(value) is None:
        return value
    # UTC first: an event at 10:00+05:30 belongs to the 04:00 UTC bucket, not 10:00.
    return value.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
