"""Ledger account names and the sign convention.

A posting's amount is signed: positive credits the account, negative debits it. Revenue
enters through ``external:revenue`` (debited) and is credited to owners, the unattributed
account and the platform; payouts move owner credit to ``payouts:payable``.
"""

from __future__ import annotations

from royalflow.contracts import UNATTRIBUTED_OWNER

EXTERNAL_REVENUE = "external:revenue"
PLATFORM = "platform:revenue_share"
UNATTRIBUTED = "unattributed"
PAYOUTS = "payouts:payable"
OWNER_PREFIX = "owner:"


def owner_account(owner_id: str) -> str:
    """The account of an owner id; the reserved unattributed owner maps to its own account."""
    return UNATTRIBUTED if owner_id == UNATTRIBUTED_OWNER else f"{OWNER_PREFIX}{owner_id}"


def account_owner(account_id: str) -> str:
    return UNATTRIBUTED_OWNER if account_id == UNATTRIBUTED else account_id.removeprefix(OWNER_PREFIX)


def account_type(account_id: str) -> str:
    """owner | platform | unattributed | external | payout (the accounts.account_type values)."""
    fixed = {UNATTRIBUTED: "unattributed", PLATFORM: "platform", EXTERNAL_REVENUE: "external", PAYOUTS: "payout"}
    return fixed.get(account_id, "owner")
