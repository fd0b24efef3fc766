"""Reversal events: compensating entries for contributions, never edits.

A reversal (``kind = "reversal"``, ``corrects = <contribution_id>``) arrives on
``contributions.v1`` or ``corrections.v1``. It is stored in ``reversals`` (its own id is the
idempotency key) and applied once the corrected contribution is settled: which may be in the
same batch, or later, since the two travel on different partitions or topics.

Applying it posts one entry ``reversal:<corrected id>`` (unique: a contribution is reversed at
most once, whether by an event or by ``ledger withdraw-family``) that moves the original
credit from the owner to the unattributed account, in the event hour of the original, so the
generation's pool stays fully accounted for and rolling windows follow the correction.
"""

from __future__ import annotations

import asyncpg

from royalflow.contracts import ContributionEvent
from royalflow.ledger.accounts import UNATTRIBUTED, owner_account
from royalflow.ledger.posting import Entries, allocate_entry_ids

REFERENCE_PREFIX = "reversal:"

# Claim pending reversals whose contribution is settled; the row lock of the UPDATE makes a
# concurrent consumer skip them. Each comes back with the royalty entry it compensates (if any)
# and whether that entry was already reversed.
_CLAIM = """
WITH ready AS (
    SELECT r.reversal_id FROM reversals r JOIN contributions c ON c.contribution_id = r.corrects
    WHERE r.applied_at IS NULL AND (r.corrects = ANY($1::text[]) OR r.reversal_id = ANY($2::text[]))
    ORDER BY r.reversal_id
    FOR UPDATE OF r SKIP LOCKED
)
UPDATE reversals r SET applied_at = now() FROM ready WHERE r.reversal_id = ready.reversal_id
RETURNING r.reversal_id, r.corrects
"""

_ORIGINALS = """
SELECT c.contribution_id, c.entry_id, c.generation_id, c.event_time, c.owner_id, c.currency, c.amount,
       EXISTS (SELECT 1 FROM journal_entries x WHERE x.reference = $2 || c.contribution_id) AS reversed
FROM contributions c WHERE c.contribution_id = ANY($1::text[])
"""


async def add_reversals(conn: asyncpg.Connection, entries: Entries, contribution_ids: list[str]) -> dict[str, str]:
    """Compensating entries for settled contributions; returns each id's outcome:
    reversed | already_reversed | nothing_to_reverse (zero amount, already unattributed, unknown)."""
    originals = {r["contribution_id"]: r for r in await conn.fetch(_ORIGINALS, contribution_ids, REFERENCE_PREFIX)}
    to_reverse = []
    outcomes: dict[str, str] = {}
    for cid in contribution_ids:
        original = originals.get(cid)
        if original is None or original["amount"] == 0 or original["entry_id"] is None \
                or owner_account(original["owner_id"]) == UNATTRIBUTED:
            outcomes[cid] = "nothing_to_reverse"
        elif original["reversed"]:
            outcomes[cid] = "already_reversed"
        else:
            outcomes[cid] = "reversed"
            to_reverse.append(original)
    for original, entry_id in zip(to_reverse, await allocate_entry_ids(conn, len(to_reverse))):
        account, amount, currency = owner_account(original["owner_id"]), original["amount"], original["currency"].strip()
        entries.add(entry_id, "reversal", f"{REFERENCE_PREFIX}{original['contribution_id']}", original["generation_id"],
                    original["event_time"], currency, [(account, -amount), (UNATTRIBUTED, amount)],
                    corrects=original["entry_id"])
        # Rolling windows follow the correction, in the hour the original happened.
        entries.credit_hour(entry_id, account, currency, original["event_time"], -amount)
        entries.credit_hour(entry_id, UNATTRIBUTED, currency, original["event_time"], amount)
    return outcomes


async def store(conn: asyncpg.Connection, events: list[ContributionEvent]) -> list[str]:
    """Insert reversal events (duplicates are no-ops); returns the ids new to the ledger."""
    if not events:
        return []
    rows = await conn.fetch(
        "INSERT INTO reversals (reversal_id, corrects, owner_id, currency, amount, event_time) "
        "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[], $6::timestamptz[]) "
        "ON CONFLICT (reversal_id) DO NOTHING RETURNING reversal_id",
        [e.contribution_id for e in events], [e.corrects or "" for e in events], [e.owner_id for e in events],
        [e.currency for e in events], [e.amount for e in events], [e.occurred_at for e in events],
    )
    return [r["reversal_id"] for r in rows]


async def claim_ready(
    conn: asyncpg.Connection, entries: Entries, *, new_contribution_ids: list[str], new_reversal_ids: list[str]
) -> list[str]:
    """Add compensating entries for every pending reversal whose contribution is now settled.

    Only reversals touched by this batch are looked at: new reversals, and those waiting for a
    contribution that arrived in this batch. Returns the ids of those that will be reversed.
    """
    if not new_contribution_ids and not new_reversal_ids:
        return []
    claimed = await conn.fetch(_CLAIM, new_contribution_ids, new_reversal_ids)
    if not claimed:
        return []
    by_contribution = await add_reversals(conn, entries, sorted({c["corrects"] for c in claimed}))
    outcomes: list[tuple[str, str]] = []
    first_claim: set[str] = set()
    for c in claimed:
        outcome = by_contribution[c["corrects"]]
        if outcome == "reversed" and c["corrects"] in first_claim:
            outcome = "already_reversed"  # two reversal events for one contribution: the first wins
        first_claim.add(c["corrects"])
        outcomes.append((c["reversal_id"], outcome))
    await conn.execute(
        "UPDATE reversals r SET outcome = x.outcome FROM unnest($1::text[], $2::text[]) AS x(id, outcome) "
        "WHERE r.reversal_id = x.id",
        [o[0] for o in outcomes], [o[1] for o in outcomes],
    )
    return [o[0] for o in outcomes if o[1] == "reversed"]


async def link_entries(conn: asyncpg.Connection, reversal_ids: list[str]) -> None:
    """Point applied reversals at the compensating entry posted for them (same transaction)."""
    if reversal_ids:
        await conn.execute(
            "UPDATE reversals r SET entry_id = e.entry_id FROM journal_entries e "
            "WHERE r.reversal_id = ANY($2::text[]) AND e.reference = $1 || r.corrects",
            REFERENCE_PREFIX, reversal_ids,
        )
