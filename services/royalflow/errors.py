"""Every error royalflow raises on purpose, in one place.

    RoyalflowError
    ├── ConfigurationError        settings that cannot work (bad URL, missing binary)
    ├── PlatformError             the embedded broker or PostgreSQL failed to start/stop
    ├── ContractError             a record that breaks its schema (goes to the dead-letter topic)
    │   └── UnknownFamilyError    a generation names a model family/version we do not serve
    ├── AttributionError          a utility or Shapley computation that cannot produce numbers
    ├── MoneyError                an amount or split that would break exactness
    └── LedgerError               an invariant of the journal would be violated
        └── ReconciliationError   a reconciliation run found mismatches
"""

from __future__ import annotations


class RoyalflowError(Exception):
    """Base class of every error royalflow raises on purpose."""


class ConfigurationError(RoyalflowError):
    """Settings that cannot work."""


class PlatformError(RoyalflowError):
    """The embedded broker or database could not be started, reached or stopped."""


class ContractError(RoyalflowError):
    """A record that breaks its event contract. ``reason`` is a short machine-readable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class UnknownFamilyError(ContractError):
    def __init__(self, family_id: str, version: str) -> None:
        super().__init__("unknown_model_family", f"model family {family_id!r} version {version!r} is not served")


class AttributionError(RoyalflowError):
    """A utility or Shapley computation could not produce numbers."""


class MoneyError(RoyalflowError):
    """An amount or split that would break exactness."""


class LedgerError(RoyalflowError):
    """A ledger invariant would be violated."""


class ReconciliationError(LedgerError):
    """Reconciliation found mismatches; ``problems`` names the offending records."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(f"{len(problems)} reconciliation problem(s)")
        self.problems = problems
