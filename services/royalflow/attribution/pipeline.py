"""The attribution pipeline for one batch of raw generation records, free of Kafka.

    raw bytes -> decode/validate -> family lookup -> prepare (content checks)
              -> batched attribute per family -> royalty parts + audit record

Every record ends in exactly one place: contribution events plus an audit record, or a dead
letter with a reason. The faust agent (``agents.py``) only moves bytes in and out.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from royalflow.attribution.family import Family, FamilyRegistry, Prepared
from royalflow.attribution.royalty import royalty_parts
from royalflow import topics
from royalflow.contracts import decode_generation
from royalflow.contracts.keys import KeyMaterial
from royalflow.contracts.signing import Signer
from royalflow.contracts.events import to_json_bytes
from royalflow.errors import AttributionError, ContractError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RawRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


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

    def process(self, records: list[RawRecord]) -> BatchOutcome:
        outcome = BatchOutcome()
        groups: dict[tuple[str, str], tuple[Family, list[tuple[RawRecord, Prepared]]]] = {}
        seen: set[str] = set()
        # 1. Per record: decode, find the family, check the content. Cheap; failures dead-letter.
        for record in records:
            try:
                event = decode_generation(
                    record.value or b"", max_record_bytes=self.max_record_bytes, max_amount=self.max_revenue_amount
                )
                family = self.registry.get(event.model_family.id, event.model_family.version)
                prepared = family.prepare(event)
            except ContractError as exc:
                outcome.rejected.append(Rejected(record, exc.reason, exc.detail))
                continue
            if event.event_id in seen:
                continue  # duplicate within the batch: its output would be identical anyway
            seen.add(event.event_id)
            key = (family.family_id, family.version)
            groups.setdefault(key, (family, []))[1].append((record, prepared))

        # 2. Per family: one batched attribution call (all models, one device pass per chunk).
        for family, items in groups.values():
            started = time.perf_counter()
            try:
                attributions = family.attribute([p for _, p in items])
            except (AttributionError, ValueError, RuntimeError) as exc:
                # A batch that cannot be attributed is dead-lettered, not retried forever.
                log.exception("attribution failed for %s/%s", family.family_id, family.version)
                for record, _ in items:
                    outcome.rejected.append(Rejected(record, "processing_error", f"attribution failed: {exc}"))
                continue
            outcome.attribute_seconds += time.perf_counter() - started
            # 3. Money: royalty parts and the audit record per generation.
            for (record, prepared), attribution in zip(items, attributions, strict=True):
                try:
                    parts, audit = royalty_parts(prepared, family, attribution)
                except (AttributionError, ValueError) as exc:
                    outcome.rejected.append(Rejected(record, "processing_error", str(exc)))
                    continue
                for p in parts:
                    outcome.contributions.append(_signed(self.contribution_signer, topics.CONTRIBUTIONS, p.owner_id.encode(), to_json_bytes(p)))
                outcome.audits.append(_signed(self.audit_signer, topics.ATTRIBUTIONS, audit.generation_id.encode(), to_json_bytes(audit)))
                outcome.attributed_events += 1
                outcome.model_evaluations.append(attribution.model_evaluations)
        return outcome


def _signed(signer: Signer | None, topic: str, key: bytes, value: bytes) -> tuple[bytes, bytes, Headers]:
    return key, value, (signer.headers(topic, key, value) if signer else [])
