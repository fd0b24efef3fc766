"""The pipeline, free of Kafka: one bad record never costs a good one.

A poison record (hostile JSON, a key that is not its event id, a payload that conflicts with an
earlier one under the same id, an item that makes the family's batched ``attribute`` fail, a
bug) is dead-lettered alone, with a reason; every other record of the batch is attributed."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone

import pytest

from royalflow.attribution.claims import CLAIM_RETENTION_SECONDS, MAX_CLAIMS, Claim, fingerprint, stale
from royalflow.attribution.families.categorical import CategoricalFamily, demo_manifest
from royalflow.attribution.family import Attribution, Prepared
from royalflow.attribution.pipeline import MAX_SPLIT_DEPTH, Pipeline, RawRecord
from royalflow.contracts import ContributionEvent, GenerationEvent
from royalflow.contracts.events import WIRE, to_json_bytes
from royalflow.errors import UnknownFamilyError
from royalflow.producer.samples import sample_events

TOPIC = "t.generations.v1"
POISON_LABEL = 7  # the flaky family fails any batch holding an item with this label
PLUS_TWO = timezone(timedelta(hours=2))


class FlakyFamily(CategoricalFamily):
    """The categorical family, except that a batch holding a poison item fails as a whole,
    the way a model pass fails on one bad input (a NaN, an unexpected shape)."""

    calls = 0

    def attribute(self, batch: Sequence[Prepared]) -> list[Attribution]:
        type(self).calls += 1
        if any(p.item == POISON_LABEL for p in batch):
            raise RuntimeError("CUDA error: device-side assert triggered")
        return super().attribute(batch)


class Registry:
    def __init__(self, family: CategoricalFamily) -> None:
        self.family = family

    def get(self, family_id: str, version: str) -> CategoricalFamily:
        if (family_id, version) != (self.family.family_id, self.family.version):
            raise UnknownFamilyError(family_id, version)
        return self.family


@pytest.fixture
def family() -> FlakyFamily:
    FlakyFamily.calls = 0
    return FlakyFamily.from_manifest(demo_manifest())  # type: ignore[return-value]


def _events(count: int, run_id: str = "p") -> list[GenerationEvent]:
    return sample_events(count, family_id="digits-categorical", family_version="1", seed=3, run_id=run_id)


def _record(value: bytes | None, key: bytes | None, offset: int = 0) -> RawRecord:
    return RawRecord(TOPIC, 0, offset, key, value)


def _records(events: list[GenerationEvent]) -> list[RawRecord]:
    return [_record(to_json_bytes(e), e.event_id.encode(), i) for i, e in enumerate(events)]


def _attributed(outcome) -> set[str]:  # type: ignore[no-untyped-def]
    return {ContributionEvent.model_validate_json(v, context=WIRE).generation_id for _, v, _ in outcome.contributions}


def _reasons(outcome) -> dict[bytes | None, str]:  # type: ignore[no-untyped-def]
    return {r.record.key: r.reason for r in outcome.rejected}


def test_a_poison_item_is_isolated_by_splitting_the_batch(family: FlakyFamily) -> None:
    events = _events(32)
    poison = [e.event_id for e in events if e.conditioning.class_label == POISON_LABEL]
    assert 0 < len(poison) < len(events)
    outcome = Pipeline(Registry(family), max_record_bytes=2**20, max_revenue_amount=10**15).process(_records(events))
    assert _attributed(outcome) == {e.event_id for e in events} - set(poison)
    assert _reasons(outcome) == {p.encode(): "processing_error" for p in poison}
    assert all("RuntimeError: CUDA error" in r.detail for r in outcome.rejected)
    assert outcome.splits > 0 and FlakyFamily.calls <= 2 * len(events) - 1
    assert len(outcome.audits) == outcome.attributed_events == len(events) - len(poison)


def test_hostile_records_among_valid_ones(family: FlakyFamily) -> None:
    events = [e for e in _events(12) if e.conditioning.class_label != POISON_LABEL]
    good = _records(events)
    first = events[0]
    conflicting = first.model_copy(update={"revenue": first.revenue.model_copy(update={"amount": 1})})
    later_time = first.model_copy(update={"occurred_at": first.occurred_at + timedelta(seconds=1)})
    same_instant = json.loads(to_json_bytes(first))
    same_instant["occurred_at"] = first.occurred_at.astimezone(PLUS_TWO).isoformat()
    deep = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
    claimed = first.event_id.encode()
    hostile = [
        _record(b'{"revenue": ' + b"9" * 5000 + b"}", b"huge-int"),
        _record(deep, b"deep"),
        _record(b"[" * 1_000_000, b"deep-unterminated"),
        _record(None, b"tombstone"),
        _record(to_json_bytes(events[1]), b"not-its-event-id"),
        _record(to_json_bytes(events[2]), None),
        _record(to_json_bytes(conflicting), claimed, 98),  # same id, other revenue, after the first
        _record(to_json_bytes(later_time), claimed, 99),  # same id, one second later
    ]
    identical = [_record(json.dumps(same_instant).encode(), claimed, 100)]  # same instant, other offset
    pipeline = Pipeline(Registry(family), max_record_bytes=2**21, max_revenue_amount=10**15)
    outcome = pipeline.process(good[:3] + hostile[:4] + good[3:] + hostile[4:] + identical)
    assert _attributed(outcome) == {e.event_id for e in events}
    assert outcome.attributed_events == len(events)  # the identical copy in the batch is not attributed twice
    by_offset = {(r.record.key, r.record.offset): (r.reason, r.detail) for r in outcome.rejected}
    assert {k: v[0] for k, v in by_offset.items()} == {
        (b"huge-int", 0): "malformed_json",
        (b"deep", 0): "malformed_json",
        (b"deep-unterminated", 0): "malformed_json",
        (b"tombstone", 0): "malformed_json",
        (b"not-its-event-id", 0): "schema_violation",
        (None, 0): "schema_violation",
        (claimed, 98): "conflicting_duplicate",
        (claimed, 99): "conflicting_duplicate",
    }
    assert "must equal event_id" in by_offset[(None, 0)][1]
    assert "the first one stands" in by_offset[(claimed, 98)][1]
    assert {c.event_id for c in outcome.claims} == {e.event_id for e in events}


def test_first_one_wins_across_batches_and_identical_redeliveries_are_attributed_again(family: FlakyFamily) -> None:
    events = [e for e in _events(6, run_id="x") if e.conditioning.class_label != POISON_LABEL]
    pipeline = Pipeline(Registry(family), max_record_bytes=2**20, max_revenue_amount=10**15)
    first = pipeline.process(_records(events))
    table = {c.event_id: c for c in first.claims}
    changed = [e.model_copy(update={"producer": "someone-else"}) for e in events]
    again = pipeline.process(_records(changed[:2]) + _records(events[2:]), table.get)
    assert _reasons(again) == {e.event_id.encode(): "conflicting_duplicate" for e in events[:2]}
    assert _attributed(again) == {e.event_id for e in events[2:]}
    assert again.claims == []  # nothing new claimed: the redelivered ones were claimed before
    # Identical redeliveries reproduce identical outputs (the ledger deduplicates them).
    redelivered = {v for _, v, _ in again.contributions}
    assert redelivered <= {v for _, v, _ in first.contributions}
    # A claim past its retention no longer blocks the id (the ledger is the backstop beyond it).
    old = {k: Claim(k, c.fingerprint, c.partition, c.claimed_at - CLAIM_RETENTION_SECONDS - 1) for k, c in table.items()}
    late = pipeline.process(_records(changed[:1]), old.get)
    assert _attributed(late) == {events[0].event_id} and [c.event_id for c in late.claims] == [events[0].event_id]


def test_a_rejected_record_does_not_claim_its_id(family: FlakyFamily) -> None:
    event = next(e for e in _events(4, run_id="fix") if e.conditioning.class_label != POISON_LABEL)
    broken = event.model_copy(update={"content": event.content.model_copy(update={"sha256": "0" * 64})})
    unknown = event.model_copy(update={"model_family": event.model_family.model_copy(update={"version": "9"})})
    pipeline = Pipeline(Registry(family), max_record_bytes=2**20, max_revenue_amount=10**15)
    outcome = pipeline.process(_records([broken, unknown, event]))
    assert [r.reason for r in outcome.rejected] == ["bad_content", "unknown_model_family"]
    assert _attributed(outcome) == {event.event_id}
    assert [c.event_id for c in outcome.claims] == [event.event_id]


def test_a_bug_anywhere_dead_letters_only_its_record(family: FlakyFamily, monkeypatch: pytest.MonkeyPatch) -> None:
    events = [e for e in _events(8, run_id="bug") if e.conditioning.class_label != POISON_LABEL]
    victim = events[1].event_id
    original = CategoricalFamily.prepare

    def prepare(self, event):  # type: ignore[no-untyped-def]
        if event.event_id == victim:
            raise KeyError("a bug, not a contract error")
        return original(self, event)

    monkeypatch.setattr(CategoricalFamily, "prepare", prepare)
    outcome = Pipeline(Registry(family), max_record_bytes=2**20, max_revenue_amount=10**15).process(_records(events))
    assert _reasons(outcome) == {victim.encode(): "processing_error"}
    assert "KeyError" in outcome.rejected[0].detail
    assert _attributed(outcome) == {e.event_id for e in events} - {victim}


def test_a_family_that_always_fails_costs_at_most_2n_minus_1_calls(family: FlakyFamily) -> None:
    events = [e.model_copy(update={"conditioning": e.conditioning.model_copy(update={"class_label": POISON_LABEL})})
              for e in _events(16, run_id="all")]
    outcome = Pipeline(Registry(family), max_record_bytes=2**20, max_revenue_amount=10**15).process(_records(events))
    assert len(outcome.rejected) == 16 and not outcome.contributions
    assert FlakyFamily.calls == 2 * 16 - 1 and MAX_SPLIT_DEPTH >= 12  # 4096 = 2^12 (the batch size limit)


def test_fingerprint_is_canonical() -> None:
    event = _events(1, run_id="fp")[0]
    shifted = event.model_copy(update={"occurred_at": event.occurred_at.astimezone(PLUS_TWO)})
    assert fingerprint(shifted) == fingerprint(event)
    for change in ({"producer": "p2"}, {"occurred_at": event.occurred_at + timedelta(microseconds=1)},
                   {"revenue": event.revenue.model_copy(update={"amount": event.revenue.amount + 1})},
                   {"conditioning": event.conditioning.model_copy(update={"prompt": "other"})}):
        assert fingerprint(event.model_copy(update=change)) != fingerprint(event)


def test_claims_encode_and_are_bounded() -> None:
    claim = Claim("gen-1", "ab" * 32, 3, 1_700_000_000)
    assert Claim.decode("gen-1", claim.encode()) == claim
    assert Claim.decode("gen-1", b"torn") is None and Claim.decode("gen-1", None) is None
    now = datetime.now(UTC).timestamp()
    fresh = [Claim(f"g{i}", "0" * 64, 0, int(now) - i) for i in range(3)]
    expired = Claim("old", "0" * 64, 0, int(now) - CLAIM_RETENTION_SECONDS - 10)
    assert stale(fresh + [expired], now) == [expired]
    assert MAX_CLAIMS >= 100_000


def test_content_by_reference_is_checked_for_every_family(family: FlakyFamily, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import base64
    import hashlib

    from royalflow.attribution.diffusion.images import URI_DISABLED, URI_REFUSED, configure_content_root

    event = next(e for e in _events(4, run_id="uri") if e.conditioning.class_label != POISON_LABEL)
    data = base64.b64decode(event.content.data_base64 or "")
    (tmp_path / "item.png").write_bytes(data)
    by_uri = event.model_copy(update={"content": event.content.model_copy(update={
        "data_base64": None, "uri": (tmp_path / "item.png").as_uri(), "sha256": hashlib.sha256(data).hexdigest()})})
    missing = by_uri.model_copy(update={"event_id": "uri-missing", "content": by_uri.content.model_copy(
        update={"uri": (tmp_path / "missing.png").as_uri()})})
    pipeline = Pipeline(Registry(family), max_record_bytes=2**20, max_revenue_amount=10**15)
    refused = pipeline.process(_records([by_uri]))
    assert [(r.reason, r.detail) for r in refused.rejected] == [("bad_content", URI_DISABLED)]
    configure_content_root(tmp_path)
    try:
        served = pipeline.process(_records([by_uri, missing]))
    finally:
        configure_content_root(None)
    assert _attributed(served) == {event.event_id}
    assert [(r.reason, r.detail) for r in served.rejected] == [("bad_content", URI_REFUSED)]


@pytest.mark.parametrize(
    ("occurred_at", "reason"),
    [
        ("0001-01-01T00:00:00Z", "invalid_timestamp"),
        ("0001-01-01T00:00:00+14:00", "invalid_timestamp"),  # would underflow once shifted to UTC
        ("0001-01-01T00:00:00-14:00", "invalid_timestamp"),
        ("9999-12-31T23:59:59-14:00", "invalid_timestamp"),  # would overflow once shifted to UTC
        ("9999-12-31T23:59:59+14:00", "invalid_timestamp"),
        ("1999-12-31T23:59:59.999999Z", "invalid_timestamp"),
        ("2000-01-01T00:00:00+14:00", "invalid_timestamp"),  # 1999-12-31T10:00Z
        ("2000-01-01T13:59:59-14:00", None),  # 2000-01-02T03:59:59Z
        ("2000-01-01T00:00:00Z", None),  # the first instant of the window
        ("2000-01-01T00:00:00-14:00", None),
        ("2000-01-01T00:00:00", "schema_violation"),  # no offset: not a point in time
        (1_700_000_000, "schema_violation"),  # a number, not RFC 3339
    ],
)
def test_event_times_outside_the_window_are_dead_lettered(family: FlakyFamily, occurred_at: object, reason: str | None) -> None:
    event = next(e for e in _events(4, run_id="time") if e.conditioning.class_label != POISON_LABEL)
    doc = json.loads(to_json_bytes(event))
    doc["occurred_at"] = occurred_at
    outcome = Pipeline(Registry(family), max_record_bytes=2**20, max_revenue_amount=10**15).process(
        [_record(json.dumps(doc).encode(), event.event_id.encode())]
    )
    if reason is None:
        assert _attributed(outcome) == {event.event_id} and not outcome.rejected
    else:
        assert [r.reason for r in outcome.rejected] == [reason] and not outcome.contributions and not outcome.audits


def test_the_window_moves_with_the_clock(family: FlakyFamily) -> None:
    event = next(e for e in _events(4, run_id="skew") if e.conditioning.class_label != POISON_LABEL)
    pipeline = Pipeline(Registry(family), max_record_bytes=2**20, max_revenue_amount=10**15)
    now = datetime.now(UTC)
    for offset, reason in ((timedelta(hours=23), None), (timedelta(days=1, minutes=5), "invalid_timestamp")):
        doc = json.loads(to_json_bytes(event))
        doc["occurred_at"] = (now + offset).astimezone(PLUS_TWO).isoformat()
        outcome = pipeline.process([_record(json.dumps(doc).encode(), event.event_id.encode())])
        assert [r.reason for r in outcome.rejected] == ([reason] if reason else [])
