"""Hostile records on the ledger's inputs: contributions.v1, attributions.v1, corrections.v1.

Only the agent may write the first two and only the admin path the third (README "Security");
an outsider who reaches the broker anyway must not move money. Some cases are signed with the
test keys on purpose: to reach the checks behind the signature (decoding, duplicates, the
bounded reversal wait), or, for ``flag`` cases, to forge *around* the signature, which only
reconciliation against the attribution records can catch.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from royalflow import topics
from royalflow.contracts import ContributionEvent
from royalflow.contracts.events import to_json_bytes

from tests.hostile import keys
from tests.hostile.corpus import Built, Context, Rec, case, dumps

C, A, K = topics.CONTRIBUTIONS, topics.ATTRIBUTIONS, topics.CORRECTIONS
SIG = ("bad_signature",)
# Unsigned garbage: refused by the signature check first, or by decoding if that runs first.
SIG_OR_JSON = ("bad_signature", "malformed_json")
JSONISH = ("malformed_json", "schema_violation", "invalid_amount", "oversized_payload")


def _eid(name: str) -> str:
    return "h-" + name.replace("_", "-")


def _good(ctx: Context, generation_id: str) -> tuple[list[ContributionEvent], Any, list[Rec]]:
    """A generation exactly as the agent emits it, signed with the agent key, written directly."""
    parts, audit = ctx.pipeline_output(ctx.event(generation_id))
    return parts, audit, ctx.ledger_recs(parts, audit)


def _forged_part(ctx: Context, name: str) -> dict[str, Any]:
    """The issue's forged contribution: 10^15 units to owner-x for a generation that never existed."""
    doc = ctx.part_doc(_eid(name))
    doc.update(owner_id="owner-x", contribution_id=f"{_eid(name)}/owner-x/0", amount=10**15, pool_amount=10**15,
               revenue_amount=10**15, parts_total=1, share=1.0)
    return doc


def _forged(name: str, topic: str, *expect: str, headers: Callable[[Context, bytes, bytes], list[tuple[str, bytes]]],
            value: Callable[[Context, dict[str, Any]], bytes | None] = lambda c, d: dumps(d)) -> None:
    @case(name, "forged_contribution" if topic == C else "forged_record", topic, *expect)
    def build(ctx: Context) -> Built:
        doc = _forged_part(ctx, name)
        key = b"owner-x"
        raw = value(ctx, doc)
        rec = Rec(topic, key, raw, tuple(headers(ctx, key, raw or b"")), hostile=True)
        return Built([rec], absent_generation=_eid(name))


def _sig(sign: keys.Sign, topic: str = C) -> Callable[[Context, bytes, bytes], list[tuple[str, bytes]]]:
    return lambda ctx, key, value: sign(topic, key, value)


_forged("forged_contribution_unsigned", C, *SIG, headers=_sig(keys.unsigned))
_forged("forged_contribution_bad_signature", C, *SIG,
        headers=lambda c, k, v: keys.with_signature(keys.agent(C, k, v), b"00" * 32))
_forged("forged_contribution_signature_not_hex", C, *SIG,
        headers=lambda c, k, v: keys.with_signature(keys.agent(C, k, v), b"zz" * 32))
_forged("forged_contribution_unknown_key_id", C, *SIG, headers=_sig(keys.stranger))
_forged("forged_contribution_admin_key", C, *SIG, headers=_sig(keys.admin))
_forged("forged_contribution_signed_for_other_topic", C, *SIG, headers=lambda c, k, v: keys.agent(A, k, v))
_forged("forged_contribution_signed_for_other_key", C, *SIG, headers=lambda c, k, v: keys.agent(C, b"owner-a", v))
_forged("forged_contribution_no_key_id_header", C, *SIG,
        headers=lambda c, k, v: keys.without(keys.agent(C, k, v), keys.HEADER_KEY_ID))
_forged("forged_contribution_two_signatures", C, *SIG,
        headers=lambda c, k, v: keys.agent(C, k, v) + [(keys.HEADER_SIGNATURE, b"00" * 32)])
_forged("forged_contribution_tampered_after_signing", C, *SIG,
        headers=lambda c, k, v: keys.agent(C, k, v.replace(b"1000000000000000", b"1")))
_forged("forged_contribution_replayed_signature", C, *SIG,
        headers=lambda c, k, v: keys.agent(C, k, to_json_bytes(c.pipeline_output(c.event("h-replay-source"))[0][0])))
_forged("unsigned_empty_value", C, *SIG_OR_JSON, headers=_sig(keys.unsigned), value=lambda c, d: b"")
_forged("unsigned_null_value", C, *SIG_OR_JSON, headers=_sig(keys.unsigned), value=lambda c, d: None)
_forged("unsigned_bad_utf8", C, *SIG_OR_JSON, headers=_sig(keys.unsigned), value=lambda c, d: b"{\"a\":\"\xff\"}")
_forged("forged_audit_unsigned", A, *SIG, headers=_sig(keys.unsigned, A),
        value=lambda c, d: to_json_bytes(c.pipeline_output(c.event(_eid("forged_audit_unsigned")))[1]))
_forged("forged_audit_admin_key", A, *SIG, headers=_sig(keys.admin, A),
        value=lambda c, d: to_json_bytes(c.pipeline_output(c.event(_eid("forged_audit_admin_key")))[1]))


# --- signed by the agent key, bad behind the signature: decoding must still refuse ----------------
def _signed_bad(name: str, expect: tuple[str, ...], mutate: Callable[[dict[str, Any]], bytes | None],
                topic: str = C) -> None:
    @case(name, "signed_malformed", topic, *expect)
    def build(ctx: Context) -> Built:
        doc = ctx.part_doc(_eid(name))
        out = mutate(doc)
        raw = out if isinstance(out, bytes) else dumps(doc)
        key = doc["owner_id"].encode()
        return Built([ctx.signed(topic, key, raw, hostile=True)], absent_generation=_eid(name))


def _put(**changes: Any) -> Callable[[dict[str, Any]], None]:
    return lambda d: d.update(changes)  # type: ignore[func-returns-value]


_signed_bad("signed_garbage", ("malformed_json",), lambda d: b"\x00garbage")
_signed_bad("signed_int_5000_digits", JSONISH,
            lambda d: dumps(d).replace(b'"amount":' + str(d["amount"]).encode(), b'"amount":' + b"9" * 5000, 1))
_signed_bad("signed_deep_nesting", JSONISH, lambda d: b"[" * 100_000 + b"]" * 100_000)
_signed_bad("signed_nan_shapley", ("schema_violation", "malformed_json"),
            lambda d: dumps(d).replace(b'"shapley_value":', b'"shapley_value":NaN,"x":', 1))
_signed_bad("signed_negative_amount", ("schema_violation", "invalid_amount"), _put(amount=-5))
_signed_bad("signed_amount_over_pool", ("inconsistent_contribution",), lambda d: d.update(amount=d["pool_amount"] + 1))
_signed_bad("signed_amount_string", ("schema_violation", "invalid_amount"), lambda d: d.update(amount=str(d["amount"])))
_signed_bad("signed_year_1", ("invalid_timestamp",), _put(occurred_at="0001-01-01T00:00:00+14:00"))
_signed_bad("signed_year_9999", ("invalid_timestamp",), _put(occurred_at="9999-12-31T23:59:59-14:00"))
_signed_bad("signed_extra_field", ("schema_violation",), _put(bonus=1))
_signed_bad("signed_schema_tag_missing", ("schema_violation",), lambda d: d.pop("schema"))
_signed_bad("signed_oversized", ("oversized_payload",), _put(family_id="F" * 600_000))
_signed_bad("signed_audit_malformed", ("malformed_json",), lambda d: b"{\"schema\":", topic=A)


# --- conflicting duplicates that slip past the agent ------------------------------------------------
def _ledger_conflict(name: str, *, round: int) -> None:
    @case(name, "conflicting_sale", C, "conflicting_duplicate", round=round)
    def build(ctx: Context) -> Built:
        parts, audit, recs = _good(ctx, _eid(name))
        original = next(p for p in parts if p.amount > 0)
        changed = original.model_copy(update={"amount": original.amount - 1})
        hostile = ctx.signed(C, original.owner_id.encode(), to_json_bytes(changed), hostile=True)
        if round == 2:  # the original was booked in round 1 (its control case below)
            return Built([hostile], first_revenue=(audit.generation_id, audit.revenue_amount))
        at = recs.index(next(r for r in recs if r.value == to_json_bytes(original))) + 1
        return Built(recs[:at] + [hostile] + recs[at:], ledger_events=[ctx.event(_eid(name))],
                     first_revenue=(audit.generation_id, audit.revenue_amount))

    if round == 2:
        @case(name + "_first", "conflicting_sale", C, round=1)
        def build_first(ctx: Context) -> Built:
            _, _, recs = _good(ctx, _eid(name))
            return Built(recs, ledger_events=[ctx.event(_eid(name))])


_ledger_conflict("ledger_conflict_same_batch", round=1)
_ledger_conflict("ledger_conflict_later_batch", round=2)


@case("audit_conflict_later_batch", "conflicting_sale", A, "conflicting_duplicate", round=2)
def _audit_conflict(ctx: Context) -> Built:
    _, audit = ctx.pipeline_output(ctx.event(_eid("ledger_conflict_later_batch")))
    changed = audit.model_copy(update={"revenue_amount": audit.revenue_amount + 1000})
    return Built([ctx.signed(A, audit.generation_id.encode(), to_json_bytes(changed), hostile=True)])


@case("ledger_identical_redelivery", "conflicting_sale", C, round=2)
def _ledger_redelivery(ctx: Context) -> Built:
    _, _, recs = _good(ctx, _eid("ledger_conflict_later_batch"))
    return Built(recs)  # the very same signed records again: a silent no-op


# --- forged around the signature: books, and reconciliation must name it ------------------------------
def _flag(name: str, forge: Callable[[list[ContributionEvent], Any], tuple[list[ContributionEvent], Any]]) -> None:
    @case(name, "forged_around_signature", C, flag=True)
    def build(ctx: Context) -> Built:
        parts, audit = ctx.pipeline_output(ctx.event(_eid(name)))
        forged, audit = forge(parts, audit)
        return Built(ctx.ledger_recs(forged, audit), forged=forged, flag_ids=[_eid(name)])


def _swap_amounts(parts: list[ContributionEvent], audit: Any) -> tuple[list[ContributionEvent], Any]:
    amounts = [p.amount for p in parts]
    amounts = amounts[1:] + amounts[:1]  # same pool, other owners paid
    return [p.model_copy(update={"amount": a}) for p, a in zip(parts, amounts)], audit


def _inflate_revenue(parts: list[ContributionEvent], audit: Any) -> tuple[list[ContributionEvent], Any]:
    return [p.model_copy(update={"revenue_amount": p.revenue_amount + 10_000_000}) for p in parts], audit


def _stranger_owner(parts: list[ContributionEvent], audit: Any) -> tuple[list[ContributionEvent], Any]:
    last = parts[-1]
    renamed = last.model_copy(update={"owner_id": "owner-x", "contribution_id": f"{last.generation_id}/owner-x/0"})
    return parts[:-1] + [renamed], audit


_flag("signed_contribution_without_audit", lambda parts, audit: (parts, None))
_flag("signed_parts_disagree_with_audit", _swap_amounts)
_flag("signed_revenue_disagrees_with_audit", _inflate_revenue)
_flag("signed_owner_not_in_audit", _stranger_owner)


# --- more behind-the-signature and header attacks ---------------------------------------------------
_signed_bad("signed_asset_scale_wrong", ("invalid_amount", "schema_violation"), _put(asset_scale=2))
_signed_bad("signed_pool_over_revenue", ("inconsistent_contribution",),
            lambda d: d.update(pool_amount=d["revenue_amount"] + 1, amount=0))
_signed_bad("signed_parts_total_zero", ("schema_violation",), _put(parts_total=0))
_signed_bad("signed_unknown_currency", ("invalid_amount", "schema_violation"), _put(currency="ZZZ"))
_forged("forged_contribution_key_id_not_ascii", C, *SIG,
        headers=lambda c, k, v: [(keys.HEADER_KEY_ID, "agent-\u00e9".encode()), (keys.HEADER_SIGNATURE, b"00" * 32)])
_forged("forged_contribution_signature_huge", C, *SIG,
        headers=lambda c, k, v: keys.with_signature(keys.agent(C, k, v), b"0" * 200_000))
_forged("forged_contribution_header_flood", C, *SIG,
        headers=lambda c, k, v: [(f"x-{i}", b"v") for i in range(5_000)] + keys.without(keys.agent(C, k, v), keys.HEADER_KEY_ID))


def _signed_audit(name: str, expect: tuple[str, ...], mutate: Callable[[dict[str, Any]], bytes | None]) -> None:
    @case(name, "signed_malformed", A, *expect)
    def build(ctx: Context) -> Built:
        _, audit = ctx.pipeline_output(ctx.event(_eid(name)))
        doc = json.loads(to_json_bytes(audit))
        out = mutate(doc)
        raw = out if isinstance(out, bytes) else dumps(doc)
        return Built([ctx.signed(A, audit.generation_id.encode(), raw, hostile=True)], absent_generation=_eid(name))


_signed_audit("signed_audit_year_9999", ("invalid_timestamp",), _put(occurred_at="9999-12-31T23:59:59-14:00"))
_signed_audit("signed_audit_nan_utility", ("malformed_json", "schema_violation"),
              lambda d: dumps(d).replace(b'"coalition_utilities":{', b'"coalition_utilities":{"0xff":NaN,', 1))
_signed_audit("signed_audit_extra_field", ("schema_violation",), _put(payout_to="owner-x"))


@case("ledger_conflict_revenue_later_batch", "conflicting_sale", C, "conflicting_duplicate", round=2)
def _ledger_conflict_revenue(ctx: Context) -> Built:
    # Same contribution id as a part booked in round 1, claiming a higher revenue (and pool share).
    parts, audit = ctx.pipeline_output(ctx.event(_eid("ledger_conflict_later_batch")))
    original = parts[-1]
    changed = original.model_copy(update={"revenue_amount": original.revenue_amount * 2})
    return Built([ctx.signed(C, original.owner_id.encode(), to_json_bytes(changed), hostile=True)],
                 first_revenue=(audit.generation_id, audit.revenue_amount))
