"""One generation id, one sale: the first valid event with an id claims it.

A *claim* maps an event id to the fingerprint of the event that first used it (sha256 of the
canonical decoded event). A later event with the same id is

* identical (same fingerprint): a redelivery, attributed again (deterministic, and the ledger's
  idempotency keys make it a no-op); never a dead letter;
* different (revenue, content, family, conditioning, producer, time...): dead-lettered
  ``conflicting_duplicate``, and the first one stands.

Claims live in memory and on the compacted topic ``topics.GENERATION_CLAIMS`` (claimstore.py),
so they survive restarts. A claim is written to the partition of its event: the claim of an id is on the
partition its events arrive on, which is why the agent requires a generation record's Kafka key
to equal its event id (same key -> same partition, for producers with the same partitioner).

Bounds: a claim is kept for :data:`CLAIM_RETENTION_SECONDS` (the retention of generations.v1:
an older event cannot be redelivered from the topic) and at most :data:`MAX_CLAIMS` per agent
process (the oldest go first); the changelog topic has the same retention. A conflict beyond
those bounds is caught by the ledger, which refuses a second sale of a booked generation.
Only events that decode, name a served family and pass the content checks claim their id: a
rejected record never blocks its corrected resend.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC

from royalflow.contracts import GenerationEvent

CLAIM_RETENTION_SECONDS = 7 * 24 * 3600  # = retention of generations.v1 (platform/kafka.py)
MAX_CLAIMS = 1_000_000  # per process: about 250 MB of keys and values at the bound


def fingerprint(event: GenerationEvent) -> str:
    """sha256 of the canonical event: sorted keys, compact separators, the time in UTC (the same
    instant written with another offset is the same sale)."""
    doc = event.model_dump(mode="json", by_alias=True)
    doc["occurred_at"] = event.occurred_at.astimezone(UTC).isoformat()
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Claim:
    event_id: str
    fingerprint: str
    partition: int  # of the event, and so of the changelog record
    claimed_at: int  # unix seconds

    def encode(self) -> bytes:
        return f"{self.fingerprint}:{self.partition}:{self.claimed_at}".encode()

    @classmethod
    def decode(cls, event_id: str, raw: bytes | None) -> "Claim | None":
        """A stored claim, or None when absent or unreadable (a torn changelog value must not
        stop the agent: the ledger still refuses a second sale)."""
        if not raw:
            return None
        try:
            fp, partition, claimed_at = raw.decode().split(":")
            return cls(event_id, fp, int(partition), int(claimed_at))
        except ValueError:
            return None

    def expired(self, now: float) -> bool:
        return now - self.claimed_at > CLAIM_RETENTION_SECONDS


def conflict_detail(event_id: str, first: str, this: str) -> str:
    return (
        f"event_id {event_id!r} was first used by an event with another payload (fingerprint "
        f"{first[:16]}..., this one {this[:16]}...); the first one stands"
    )


def stale(claims: list[Claim], now: float) -> list[Claim]:
    """The claims to drop: expired ones, then the oldest beyond :data:`MAX_CLAIMS`."""
    expired = [c for c in claims if c.expired(now)]
    live = sorted((c for c in claims if not c.expired(now)), key=lambda c: c.claimed_at)
    return expired + live[: max(0, len(live) - MAX_CLAIMS)]
