"""Reversal events: compensating entries for contributions, never edits.

A reversal (``kind = "reversal"``, ``corrects = <contribution_id>``) arrives only on
``corrections.v1``, signed by the admin key set (``ledger reverse`` / ``withdraw-family``;
contracts/decode.py refuses it anywhere else). It is stored in ``reversals`` (its own id is the
idempotency key) and applied once the corrected contribution is settled: which may be in the
same batch, or later, since the two travel on different topics. One whose contribution has not
arrived within ``reversal_wait_seconds`` is dead-lettered by the sweeper and never applied.

Applying it posts one entry ``reversal:<corrected id>`` (unique: a contribution is reversed at
most once, whether by ``ledger reverse`` or by ``ledger withdraw-family``) that moves the original
credit from the owner to the unattributed account, in the event hour of the original, so the
generation's pool stays fully accounted for and rolling windows follow the correction.
"""

from __future__ import annotations

from collections.abc import Mapping

import asyncpg

from royalflow.contracts import ContributionEvent
from royalflow.ledger.accounts import UNATTRIBUTED, owner_account
from royalflow.ledger.columns import text_columns
from royalflow.ledger.conflicts import Origin, Rejection, payload_digest, rejection
from royalflow.ledger.posting import Entries, allocate_entry_ids

REFERENCE_PREFIX = "reversal:"

# Claim pending reversals whose contribution is settled; the row lock of the UPDATE makes a
# concurrent consumer skip them. Each comes back with the owner and currency it states and
# those of the contribution it names (they must agree), and its stored origin.
_CLAIM = """
WITH ready AS (
    SELECT r.reversal_id, c.owner_id AS booked_owner, c.currency AS booked_currency
    FROM reversals r JOIN contributions c ON c.contribution_id = r.corrects
    WHERE r.applied_at IS NULL AND (r.corrects = ANY(string_to_array($1::text, $3::text)) OR r.reversal_id = ANY($2::text[]))
    ORDER BY r.reversal_id
    FOR UPDATE OF r SKIP LOCKED
)
UPDATE reversals r SET applied_at = now() FROM ready WHERE r.reversal_id = ready.reversal_id
RETURNING r.reversal_id, r.corrects, r.owner_id, r.currency, ready.booked_owner, ready.booked_currency,
          r.source_topic, r.source_partition, r.source_offset, r.original_key, r.original_value
"""

# Store reversal events with their bytes and origin; ids seen before come back with whether
# the payload is the same (legacy rows without a digest: compared on the stored columns).
_STORE = """
WITH x AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[], $6::timestamptz[], $7::bytea[],
                         $8::text[], $9::int4[], $10::int8[], $11::bytea[], $12::bytea[])
        AS x(reversal_id, corrects, owner_id, currency, amount, event_time, payload_digest, source_topic,
             source_partition, source_offset, original_key, original_value)
), ins AS (
    INSERT INTO reversals (reversal_id, corrects, owner_id, currency, amount, event_time, payload_digest, source_topic,
                           source_partition, source_offset, original_key, original_value)
    SELECT * FROM x ON CONFLICT (reversal_id) DO NOTHING RETURNING reversal_id
)
SELECT reversal_id, NULL::bool AS same FROM ins
UNION ALL
SELECT x.reversal_id, CASE WHEN r.payload_digest IS NULL
                           THEN (r.corrects, r.owner_id, r.currency::text, r.amount) = (x.corrects, x.owner_id, x.currency, x.amount)
                           ELSE r.payload_digest = x.payload_digest END
FROM x JOIN reversals r USING (reversal_id)  -- the statement's snapshot: rows from before it
"""

# Pending reversals past the wait whose contribution never arrived: they are given up on
# (never applied later) and dead-lettered with their stored bytes.
_EXPIRE = """
WITH due AS (
    SELECT r.reversal_id FROM reversals r
    WHERE r.applied_at IS NULL AND r.received_at < now() - make_interval(secs => $1)
      AND NOT EXISTS (SELECT 1 FROM contributions c WHERE c.contribution_id = r.corrects)
    ORDER BY r.received_at LIMIT $2
    FOR UPDATE OF r SKIP LOCKED
)
UPDATE reversals r SET applied_at = now(), outcome = 'unknown_contribution' FROM due WHERE r.reversal_id = due.reversal_id
RETURNING r.reversal_id, r.corrects, r.received_at,
          r.source_topic, r.source_partition, r.source_offset, r.original_key, r.original_value
"""

# Pending past the wait although the contribution is booked: a concurrent consumer's snapshot
# missed it (contribution and reversal committed at the same time). Applied by the sweep.
_OVERDUE_READY = """
SELECT r.reversal_id FROM reversals r JOIN contributions c ON c.contribution_id = r.corrects
WHERE r.applied_at IS NULL AND r.received_at < now() - make_interval(secs => $1)
ORDER BY r.received_at LIMIT $2
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


async def store(
    conn: asyncpg.Connection, events: list[ContributionEvent], origins: Mapping[int, Origin] | None = None
) -> tuple[list[str], list[Rejection]]:
    """Insert reversal events (an equal redelivery is a no-op, a different payload under a known
    id is refused); returns (ids new to the ledger, refused)."""
    if not events:
        return [], []
    where = [origins.get(id(e)) if origins else None for e in events]
    rows = await conn.fetch(
        _STORE, [e.contribution_id for e in events], [e.corrects or "" for e in events], [e.owner_id for e in events],
        [e.currency for e in events], [e.amount for e in events], [e.occurred_at for e in events],
        [payload_digest(e) for e in events], [o.topic if o else None for o in where],
        [o.partition if o else None for o in where], [o.offset if o else None for o in where],
        [o.key if o else None for o in where], [o.value if o else None for o in where],
    )
    by_id = {e.contribution_id: e for e in events}
    new = [r["reversal_id"] for r in rows if r["same"] is None]
    refused = [
        rejection(by_id[r["reversal_id"]], origins, f"reversal {r['reversal_id']} was received before with a "
                                                    "different payload; the first one wins")
        for r in rows if r["same"] is False
    ]
    return new, refused


def _stored_origin(row: asyncpg.Record) -> Origin | None:
    if row["source_topic"] is None:
        return None  # stored before 0006, or applied directly without an origin
    return Origin(row["source_topic"], row["source_partition"], row["source_offset"], row["original_key"],
                  row["original_value"])


async def claim_ready(
    conn: asyncpg.Connection, entries: Entries, *, new_contribution_ids: list[str], new_reversal_ids: list[str]
) -> tuple[list[str], list[Rejection]]:
    """Add compensating entries for every pending reversal whose contribution is now settled.

    Only reversals touched by this batch are looked at: new reversals, and those waiting for a
    contribution that arrived in this batch. A reversal stating another owner or currency than
    the contribution's moves nothing and is refused. Returns (ids that will be reversed, refused).
    """
    if not new_contribution_ids and not new_reversal_ids:
        return [], []
    # The batch's new ids as one text (columns.py): thousands of them per batch, reversals are few.
    (joined,), separator = text_columns(new_contribution_ids)
    claimed = await conn.fetch(_CLAIM, joined, new_reversal_ids, separator)
    if not claimed:
        return [], []
    refused: list[Rejection] = []
    outcomes: list[tuple[str, str]] = []
    matching = []
    for c in claimed:
        if c["owner_id"] != c["booked_owner"] or c["currency"].strip() != c["booked_currency"].strip():
            outcomes.append((c["reversal_id"], "mismatch"))
            refused.append(Rejection("inconsistent_contribution", (
                f"reversal {c['reversal_id']} states owner {c['owner_id']} and currency {c['currency'].strip()}, but "
                f"contribution {c['corrects']} belongs to owner {c['booked_owner']} in "
                f"{c['booked_currency'].strip()}: it moves nothing"), _stored_origin(c)))
        else:
            matching.append(c)
    by_contribution = await add_reversals(conn, entries, sorted({c["corrects"] for c in matching}))
    first_claim: set[str] = set()
    for c in matching:
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
    return [o[0] for o in outcomes if o[1] == "reversed"], refused


async def expire(conn: asyncpg.Connection, *, wait_seconds: float, limit: int) -> list[Rejection]:
    """Give up on at most ``limit`` reversals pending longer than ``wait_seconds`` whose
    contribution is unknown: refused with reason unknown_contribution, never applied later."""
    rows = await conn.fetch(_EXPIRE, float(wait_seconds), limit)
    return [
        Rejection("unknown_contribution", (
            f"reversal {r['reversal_id']} names contribution {r['corrects']}, which did not arrive within "
            f"{wait_seconds:g} s (received {r['received_at'].isoformat()}): it will never be applied"),
            _stored_origin(r))
        for r in rows
    ]


async def overdue_ready(conn: asyncpg.Connection, *, wait_seconds: float, limit: int) -> list[str]:
    """Ids of reversals pending past the wait although their contribution is booked."""
    return [r["reversal_id"] for r in await conn.fetch(_OVERDUE_READY, float(wait_seconds), limit)]


async def link_entries(conn: asyncpg.Connection, reversal_ids: list[str]) -> None:
    """Point applied reversals at the compensating entry posted for them (same transaction)."""
    if reversal_ids:
        await conn.execute(
            "UPDATE reversals r SET entry_id = e.entry_id FROM journal_entries e "
            "WHERE r.reversal_id = ANY($2::text[]) AND e.reference = $1 || r.corrects",
            REFERENCE_PREFIX, reversal_ids,
        )
