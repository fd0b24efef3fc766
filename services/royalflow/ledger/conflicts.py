"""One id, one payload: telling an identical redelivery (a silent no-op) from a different
payload under an id the ledger has seen (dead letter ``conflicting_duplicate``; the first one
wins, deterministically: the one booked before, or the lowest offset inside one batch).

Nothing here costs the hot path a round trip: ids that come back are compared only when the
idempotent INSERT reports that some rows already existed.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from royalflow.contracts import AttributionRecord, ContributionEvent
# Where a refused record came from, and its bytes: the record as consumed.
from royalflow.platform.deadletter import RawRecord as Origin

CONFLICT = "conflicting_duplicate"


@dataclass(frozen=True)
class Rejection:
    """A record the ledger refuses after decoding; it moves nothing and is dead-lettered."""

    reason: str
    detail: str
    origin: Origin | None  # None only when the caller gave no origins (direct journal use)


def payload_digest(record: ContributionEvent | AttributionRecord) -> bytes:
    """sha256 of the canonical JSON (fields in model order): equal for equal payloads,
    whatever key order or spacing the producer used. Signatures travel in headers, not here."""
    return hashlib.sha256(record.model_dump_json(by_alias=True).encode()).digest()


@dataclass
class Unique:
    """A batch's records, one per id: ``kept`` is the first (offset order); ``later`` are the
    other payloads under a kept id, to be judged against what is booked (the first of all)."""

    kept: list[Any]
    duplicates: int  # later records equal to the kept one
    later: list[tuple[Any, Any]]  # (later record, the kept one it differs from)


def first_wins(records: Sequence[Any], key: str) -> Unique:
    kept: dict[str, Any] = {}
    duplicates = 0
    later: list[tuple[Any, Any]] = []
    for record in records:
        first = kept.setdefault(getattr(record, key), record)
        if first is record:
            continue
        if first == record:
            duplicates += 1
        else:
            later.append((record, first))
    return Unique(list(kept.values()), duplicates, later)


def in_batch_rejections(later: list[tuple[Any, Any]], key: str, origins: Mapping[int, Origin] | None) -> list[Rejection]:
    """Later payloads under an id first seen in this very batch: the first (lowest offset) wins."""
    return [
        rejection(record, origins, f"{key} {getattr(record, key)} appears twice in one batch with different "
                                   f"payloads ({differences(first, record)}); the first (lowest offset) wins")
        for record, first in later
    ]


def rejection(record: Any, origins: Mapping[int, Origin] | None, detail: str, reason: str = CONFLICT) -> Rejection:
    return Rejection(reason, detail[:1000], origins.get(id(record)) if origins else None)


def differences(a: Any, b: Any) -> str:
    """Names of the fields that differ (never their values: a detail may be read widely)."""
    names = [n for n in type(a).model_fields if getattr(a, n) != getattr(b, n)]
    return "differs in " + ", ".join(names) if names else "differs"


# A booked contribution's stored columns and its generation's terms: the payload it was booked with.
_STORED = """
SELECT c.contribution_id, c.generation_id, c.owner_id, c.family_id, c.family_version, c.method, c.shapley_value,
       c.std_error, c.share, c.amount, c.currency, c.event_time,
       g.revenue_amount, g.pool_amount, g.parts_total
FROM contributions c LEFT JOIN generations g USING (generation_id)
WHERE c.contribution_id = ANY($1::text[])
"""
# (column, event field)
_COMPARED = (("generation_id", "generation_id"), ("owner_id", "owner_id"), ("family_id", "family_id"),
             ("family_version", "family_version"), ("method", "method"), ("shapley_value", "shapley_value"),
             ("std_error", "std_error"), ("share", "share"), ("amount", "amount"), ("currency", "currency"),
             ("event_time", "occurred_at"), ("revenue_amount", "revenue_amount"), ("pool_amount", "pool_amount"),
             ("parts_total", "parts_total"))


async def booked_conflicts(
    conn: asyncpg.Connection, candidates: list[ContributionEvent], origins: Mapping[int, Origin] | None
) -> tuple[list[Rejection], set[str]]:
    """Judge records whose id may be booked already against the booked payload (the first one).
    Returns (those that differ, the ids found booked); equal ones are silent duplicates."""
    if not candidates:
        return [], set()
    stored = {r["contribution_id"]: r for r in await conn.fetch(_STORED, sorted({c.contribution_id for c in candidates}))}
    out = []
    for c in candidates:
        row = stored.get(c.contribution_id)
        if row is None:
            continue
        names = [field for column, field in _COMPARED if not _same(column, row[column], getattr(c, field))]
        if names:
            out.append(rejection(c, origins, f"contribution {c.contribution_id} was booked before with a different "
                                             f"payload (differs in {', '.join(names)}); the first one wins"))
    return out, set(stored)


def _same(name: str, stored: Any, new: Any) -> bool:
    if isinstance(stored, float) and isinstance(new, float) and math.isnan(stored) and math.isnan(new):
        return True  # PostgreSQL stores NaN as one value; Python's NaN != NaN
    if name == "currency":
        return str(stored).strip() == new  # char(3)
    if isinstance(stored, datetime):
        return stored == new  # the same instant, whatever offset it was written with
    return bool(stored == new)


_AUDIT_INSERT = """
WITH x AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[]) AS x(generation_id, family_id, family_version, record)),
ins AS (
    INSERT INTO attributions (generation_id, family_id, family_version, record) SELECT * FROM x
    ON CONFLICT (generation_id) DO NOTHING RETURNING generation_id
)
SELECT a.generation_id, a.record
FROM attributions a  -- the statement's snapshot: rows from before it, never the ones it inserts
WHERE a.generation_id IN (SELECT generation_id FROM x)
"""


async def store_audits(
    conn: asyncpg.Connection, audits: list[AttributionRecord], origins: Mapping[int, Origin] | None
) -> tuple[int, list[Rejection]]:
    """Insert attribution records, one per generation; the first one wins (recorded before, else
    the lowest offset in this batch). Returns (duplicates, rejected)."""
    if not audits:
        return 0, []
    unique = first_wins(audits, "generation_id")
    kept = unique.kept
    rows = await conn.fetch(
        _AUDIT_INSERT, [a.generation_id for a in kept], [a.family_id for a in kept], [a.family_version for a in kept],
        [a.model_dump_json(by_alias=True) for a in kept],
    )
    recorded = {r["generation_id"]: json.loads(r["record"]) for r in rows}
    duplicates = unique.duplicates
    rejected = in_batch_rejections([(a, f) for a, f in unique.later if a.generation_id not in recorded], "generation_id", origins)
    for a in [*(a for a in kept if a.generation_id in recorded), *(a for a, _ in unique.later if a.generation_id in recorded)]:
        # jsonb in, JSON out: compared as documents (key order and number spelling do not matter).
        if json.loads(a.model_dump_json(by_alias=True)) == recorded[a.generation_id]:
            duplicates += 1
        else:
            rejected.append(rejection(a, origins, f"attribution record of {a.generation_id} was recorded before with "
                                                  "a different payload; the first one wins"))
    return duplicates, rejected
