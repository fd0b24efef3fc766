"""The attribution pipeline for one batch of raw generation records, free of Kafka.

    raw bytes -> decode/validate -> key = event id -> claim (first payload wins)
              -> family lookup -> prepare (content checks)
              -> batched attribute per family -> royalty parts + audit record

Every record ends in exactly one place: contribution events plus an audit record, or a dead
letter with a reason. One bad record never costs a good one: every step is guarded per record
(a bug dead-letters ``processing_error``, it does not escape), and when a family's batched
``attribute`` fails the batch is split in halves and retried, so only the records that fail
on their own are dead-lettered. The faust agent (``agents.py``) only moves bytes in and out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from royalflow.attribution.claims import Claim, conflict_detail, fingerprint
from royalflow.attribution.family import Family, FamilyRegistry, Prepared
from royalflow.attribution.royalty import royalty_parts
from royalflow import topics
from royalflow.contracts import decode_generation
from royalflow.contracts.keys import KeyMaterial
from royalflow.contracts.signing import Signer
from royalflow.contracts.events import to_json_bytes
from royalflow.errors import AttributionError, ContractError
from royalflow.platform.deadletter import RawRecord

log = logging.getLogger(__name__)

# Bisection depth when a batched attribute call fails: 2^16 > any batch (Settings allows 4096),
# so every failing record is isolated, in at most 2n - 1 calls for a batch of n.
MAX_SPLIT_DEPTH = 16
DETAIL_MAX_CHARS = 1000

ClaimLookup = Callable[[str], Claim | None]


def _no_claims(event_id: str) -> Claim | None:
    return None


@dataclass(frozen=True)
class Rejected:
    record: RawRecord
    reason: str
    detail: str


Headers = list[tuple[str, bytes]]


@dataclass
class BatchOutcome:
    # (key, value, headers): headers carry the signature the ledger requires (contracts/signing.py)
    contributions: list[tuple[bytes, bytes, Headers]] = field(default_factory=list)  # key: owner
    audits: list[tuple[bytes, bytes, Headers]] = field(default_factory=list)  # key: generation
    rejected: list[Rejected] = field(default_factory=list)
    attributed_events: int = 0
    model_evaluations: list[int] = field(default_factory=list)
    attribute_seconds: float = 0.0
    claims: list[Claim] = field(default_factory=list)  # ids first used in this batch, to record
    # (record, its number of contribution parts), in the order of ``audits`` and ``contributions``:
    # lets the agent deliver record by record when the broker refuses one record's outputs.
    attributed: list[tuple[RawRecord, int]] = field(default_factory=list)
    splits: int = 0  # batched attribute calls that failed and were split


class Pipeline:
    def __init__(self, registry: FamilyRegistry, *, max_record_bytes: int, max_revenue_amount: int,
                 keys: KeyMaterial | None = None) -> None:
        self.registry = registry
        # Signing happens here, in the worker thread, not on the event loop. Without keys the
        # outputs are unsigned, and the ledger dead-letters them (tests that never publish).
        self.contribution_signer = keys.signer(topics.CONTRIBUTIONS) if keys else None
        self.audit_signer = keys.signer(topics.ATTRIBUTIONS) if keys else None
        self.max_record_bytes = max_record_bytes
        self.max_revenue_amount = max_revenue_amount

    def process(self, records: list[RawRecord], claims: ClaimLookup = _no_claims) -> BatchOutcome:
        """Attribute a batch; ``claims`` finds the earlier claim of an event id (see claims.py)."""
        outcome = BatchOutcome()
        groups: dict[tuple[str, str], tuple[Family, list[tuple[RawRecord, Prepared]]]] = {}
        batch_claims: dict[str, str] = {}  # event id -> fingerprint, first valid one in this batch
        now = int(time.time())
        # 1. Per record: decode, check key and claim, find the family, check the content.
        for record in records:
            try:
                prepared = self._prepare(record, claims, batch_claims, now, outcome)
            except ContractError as exc:
                outcome.rejected.append(Rejected(record, exc.reason, exc.detail))
                continue
            except Exception as exc:  # a bug must dead-letter the record, not stop the agent
                log.exception("preparing %s[%d]@%d failed", record.topic, record.partition, record.offset)
                outcome.rejected.append(Rejected(record, "processing_error", _failure("preparation failed", exc)))
                continue
            if prepared is None:
                continue  # an identical copy earlier in this batch: same outputs, already on their way
            family, item = prepared
            groups.setdefault((family.family_id, family.version), (family, []))[1].append((record, item))

        # 2. Per family: batched attribution (all models, one device pass per chunk), split on failure.
        for family, items in groups.values():
            self._attribute(family, items, outcome, depth=0)
        return outcome

    def _prepare(
        self, record: RawRecord, claims: ClaimLookup, batch_claims: dict[str, str], now: int, outcome: BatchOutcome
    ) -> tuple[Family, Prepared] | None:
        event = decode_generation(
            record.value or b"", max_record_bytes=self.max_record_bytes, max_amount=self.max_revenue_amount
        )
        # Claims are partition-local (a faust table): an id must always arrive on one partition.
        if record.key != event.event_id.encode():
            shown = record.key[:64] if record.key is not None else None
            raise ContractError(
                "schema_violation",
                f"record key {shown!r} must equal event_id {event.event_id!r} (generations are keyed by event id)",
            )
        this = fingerprint(event)
        earlier = batch_claims.get(event.event_id)
        stored = claims(event.event_id) if earlier is None else None
        if stored is not None and not stored.expired(now):
            earlier = stored.fingerprint
        if earlier is not None and earlier != this:
            raise ContractError("conflicting_duplicate", conflict_detail(event.event_id, earlier, this))
        if event.event_id in batch_claims:
            return None
        family = self.registry.get(event.model_family.id, event.model_family.version)
        prepared = family.prepare(event)
        batch_claims[event.event_id] = this
        if earlier is None:
            outcome.claims.append(Claim(event.event_id, this, record.partition, now))
        return family, prepared

    def _attribute(
        self, family: Family, items: list[tuple[RawRecord, Prepared]], outcome: BatchOutcome, *, depth: int
    ) -> None:
        started = time.perf_counter()
        try:
            attributions = family.attribute([p for _, p in items])
            if len(attributions) != len(items):
                raise AttributionError(f"family returned {len(attributions)} attributions for {len(items)} items")
        except Exception as exc:
            if len(items) > 1 and depth < MAX_SPLIT_DEPTH:
                # One bad item must not cost the others: retry each half on its own.
                log.warning("attribution of %d items of %s/%s failed (%s); splitting the batch",
                            len(items), family.family_id, family.version, exc)
                outcome.splits += 1
                middle = len(items) // 2
                self._attribute(family, items[:middle], outcome, depth=depth + 1)
                self._attribute(family, items[middle:], outcome, depth=depth + 1)
                return
            log.exception("attribution failed for %s/%s", family.family_id, family.version)
            for record, _ in items:
                outcome.rejected.append(Rejected(record, "processing_error", _failure("attribution failed", exc)))
            return
        outcome.attribute_seconds += time.perf_counter() - started
        # 3. Money: royalty parts and the audit record per generation.
        for (record, prepared), attribution in zip(items, attributions, strict=True):
            try:
                parts, audit = royalty_parts(prepared, family, attribution)
                contributions = [
                    _signed(self.contribution_signer, topics.CONTRIBUTIONS, p.owner_id.encode(), to_json_bytes(p))
                    for p in parts
                ]
                signed_audit = _signed(self.audit_signer, topics.ATTRIBUTIONS, audit.generation_id.encode(), to_json_bytes(audit))
            except Exception as exc:
                log.exception("royalty parts of %s[%d]@%d failed", record.topic, record.partition, record.offset)
                outcome.rejected.append(Rejected(record, "processing_error", _failure("royalty split failed", exc)))
                continue
            outcome.contributions.extend(contributions)
            outcome.audits.append(signed_audit)
            outcome.attributed.append((record, len(contributions)))
            outcome.attributed_events += 1
            outcome.model_evaluations.append(attribution.model_evaluations)


def _failure(what: str, exc: BaseException) -> str:
    return f"{what}: {type(exc).__name__}: {exc}"[:DETAIL_MAX_CHARS]


def _signed(signer: Signer | None, topic: str, key: bytes, value: bytes) -> tuple[bytes, bytes, Headers]:
    return key, value, (signer.headers(topic, key, value) if signer else [])
