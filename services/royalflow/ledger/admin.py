"""The authenticated admin path for manual corrections: signed reversal events on corrections.v1.

Manual corrections never write the books directly. ``royalflow ledger reverse`` and
``royalflow ledger withdraw-family`` build one reversal event per contribution from what
PostgreSQL holds, sign it with the ADMIN key set and publish it to ``<prefix>.corrections.v1``;
the ledger verifies the signature like any other record and posts the compensating entry in
its own exactly-once transaction. So every movement of money passes one authenticated door,
leaves a signed record on a retained topic (365 days), and is replayed like the rest.

Reversal ids are derived from the corrected contribution (``rev/<contribution id>``): running a
command twice, or reversing by hand a contribution a family withdrawal also covers, publishes
the same id again, which the ledger treats as a duplicate (no-op).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass, field

import asyncpg

from royalflow import topics
from royalflow.config import Settings
from royalflow.contracts import UNATTRIBUTED_OWNER, ContributionEvent
from royalflow.contracts.events import to_json_bytes
from royalflow.contracts.keys import key_material
from royalflow.errors import LedgerError
from royalflow.money import currency_for
from royalflow.platform.kafka import make_producer

CHUNK = 1000  # contributions read and published per round trip
MAX_IDS_PER_COMMAND = 10_000  # `ledger reverse` takes ids on the command line: keep it bounded
MAX_CONTRIBUTION_ID_CHARS = 300  # schemas/contribution.v1.json
POLL_SECONDS = 0.2

_ORIGINALS = """
SELECT c.contribution_id, c.generation_id, c.owner_id, c.family_id, c.family_version, c.method,
       c.shapley_value, c.std_error, c.share, c.amount, c.currency, c.event_time,
       g.pool_amount, g.revenue_amount, g.parts_total
FROM contributions c JOIN generations g USING (generation_id)
WHERE c.contribution_id = ANY($1::text[])
"""

# Credits of one family version still owed to an owner (not unattributed, not yet reversed),
# in keyset pages so a family of any size is read in bounded chunks.
_FAMILY_PAGE = """
SELECT c.contribution_id FROM contributions c
WHERE c.family_id = $1 AND c.family_version = $2 AND c.amount > 0 AND c.owner_id <> $3
  AND c.contribution_id > $4
  AND NOT EXISTS (SELECT 1 FROM journal_entries r WHERE r.reference = 'reversal:' || c.contribution_id)
ORDER BY c.contribution_id LIMIT $5
"""


def reversal_id(contribution_id: str) -> str:
    rid = f"rev/{contribution_id}"
    if len(rid) <= MAX_CONTRIBUTION_ID_CHARS:
        return rid
    return f"rev/sha256:{hashlib.sha256(contribution_id.encode()).hexdigest()}"


@dataclass
class Published:
    reversal_ids: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)  # ids PostgreSQL does not hold: nothing published


def _reversal(row: asyncpg.Record) -> ContributionEvent:
    currency = row["currency"].strip()
    return ContributionEvent(
        contribution_id=reversal_id(row["contribution_id"]), generation_id=row["generation_id"],
        owner_id=row["owner_id"], occurred_at=row["event_time"], family_id=row["family_id"],
        family_version=row["family_version"], method=row["method"], shapley_value=row["shapley_value"],
        std_error=row["std_error"], share=row["share"], amount=row["amount"], currency=currency,
        asset_scale=currency_for(currency).asset_scale, pool_amount=row["pool_amount"],
        revenue_amount=row["revenue_amount"], parts_total=row["parts_total"], kind="reversal",
        corrects=row["contribution_id"],
    )


async def publish_reversals(settings: Settings, pool: asyncpg.Pool, contribution_ids: list[str]) -> Published:
    """Sign and publish one reversal per known contribution id; returns once the broker acked all."""
    if len(contribution_ids) > MAX_IDS_PER_COMMAND:
        raise LedgerError(f"{len(contribution_ids)} ids; at most {MAX_IDS_PER_COMMAND} per command")
    signer = key_material(settings).signer(topics.CORRECTIONS)  # fails before anything is sent
    out = Published()
    producer = make_producer(settings, linger_ms=20)
    await producer.start()
    try:
        for start in range(0, len(contribution_ids), CHUNK):
            chunk = contribution_ids[start:start + CHUNK]
            rows = {r["contribution_id"]: r for r in await pool.fetch(_ORIGINALS, chunk)}
            pending = []
            for cid in chunk:
                if cid not in rows:
                    out.unknown.append(cid)
                    continue
                event = _reversal(rows[cid])
                key, value = event.owner_id.encode(), to_json_bytes(event)
                headers = signer.headers(topics.CORRECTIONS, key, value)
                pending.append(await producer.send(settings.topic(topics.CORRECTIONS), value, key=key, headers=headers))
                out.reversal_ids.append(event.contribution_id)
            await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return out


async def withdraw_family(settings: Settings, pool: asyncpg.Pool, family_id: str, version: str) -> Published:
    """Publish signed reversals for every credit of ``family_id`` ``version`` still on an owner."""
    total = Published()
    after = ""
    while True:
        ids = [r["contribution_id"] for r in await pool.fetch(
            _FAMILY_PAGE, family_id, version, UNATTRIBUTED_OWNER, after, CHUNK)]
        if not ids:
            return total
        part = await publish_reversals(settings, pool, ids)
        total.reversal_ids += part.reversal_ids
        total.unknown += part.unknown
        after = ids[-1]


async def wait_applied(pool: asyncpg.Pool, reversal_ids: list[str], *, timeout_seconds: float) -> dict[str, int]:
    """Wait (bounded) until the ledger applied the reversals; returns a count per outcome,
    with ``pending`` for those it has not applied yet."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        rows = await pool.fetch(
            "SELECT coalesce(outcome, 'pending') AS outcome, count(*) AS n FROM reversals "
            "WHERE reversal_id = ANY($1::text[]) AND applied_at IS NOT NULL GROUP BY 1", reversal_ids)
        counts = {r["outcome"]: int(r["n"]) for r in rows}
        done = sum(counts.values())
        if done >= len(set(reversal_ids)) or time.monotonic() >= deadline:
            counts["pending"] = len(set(reversal_ids)) - done
            return counts
        await asyncio.sleep(POLL_SECONDS)
