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


# --- reversals: only the admin path may correct, and only what exists ---------------------------------
def _reversal(ctx: Context, corrects: ContributionEvent, *, suffix: str = "1") -> ContributionEvent:
    return corrects.model_copy(update={"contribution_id": f"{corrects.contribution_id}/reversal/{suffix}",
                                       "kind": "reversal", "corrects": corrects.contribution_id})


def _reversal_case(name: str, topic: str, sign: keys.Sign, *expect: str, sign_topic: str | None = None,
                   tamper: bool = False) -> None:
    @case(name, "forged_reversal", topic, *expect, round=2)
    def build(ctx: Context) -> Built:
        parts, _, _ = _good(ctx, _eid(name))
        target = next(p for p in parts if p.amount > 0)
        value = to_json_bytes(_reversal(ctx, target))
        key = target.owner_id.encode()
        headers = sign(sign_topic or topic, key, value)
        if tamper:
            value = value.replace(b"/reversal/1", b"/reversal/2")
        return Built([Rec(topic, key, value, tuple(headers), hostile=True)])

    @case(name + "_target", "forged_reversal", C, round=1)
    def build_target(ctx: Context) -> Built:
        _, _, recs = _good(ctx, _eid(name))
        return Built(recs, ledger_events=[ctx.event(_eid(name))])


_reversal_case("reversal_unsigned", K, keys.unsigned, *SIG)
_reversal_case("reversal_unsigned_on_contributions", C, keys.unsigned, *SIG)
_reversal_case("reversal_agent_key_on_corrections", K, keys.agent, *SIG)
_reversal_case("reversal_unknown_key", K, keys.stranger, *SIG)
_reversal_case("reversal_tampered_after_signing", K, keys.admin, *SIG, tamper=True)
_reversal_case("reversal_admin_signature_replayed_from_contributions", K, keys.admin, *SIG, sign_topic=C)


@case("reversal_of_nonexistent_contribution", "forged_reversal", K, "unknown_contribution")
def _reversal_nonexistent(ctx: Context) -> Built:
    parts, _ = ctx.pipeline_output(ctx.event(_eid("reversal_of_nonexistent_contribution")))
    value = to_json_bytes(_reversal(ctx, parts[0]))
    return Built([ctx.signed(K, parts[0].owner_id.encode(), value, keys.admin, hostile=True)],
                 absent_generation=parts[0].generation_id)


@case("reversal_in_advance", "forged_reversal", K, "unknown_contribution")
def _reversal_in_advance(ctx: Context) -> Built:
    # The contribution it names arrives in round 2, after the bounded wait: it must book unreversed.
    parts, _ = ctx.pipeline_output(ctx.event(_eid("reversal_in_advance")))
    target = next(p for p in parts if p.amount > 0)
    value = to_json_bytes(_reversal(ctx, target))
    return Built([ctx.signed(K, target.owner_id.encode(), value, keys.admin, hostile=True)])


@case("reversal_in_advance_target", "forged_reversal", C, round=2)
def _reversal_in_advance_target(ctx: Context) -> Built:
    _, _, recs = _good(ctx, _eid("reversal_in_advance"))
    return Built(recs, ledger_events=[ctx.event(_eid("reversal_in_advance"))])


@case("corrections_non_reversal", "forged_reversal", K, "schema_violation")
def _non_reversal(ctx: Context) -> Built:
    parts, _ = ctx.pipeline_output(ctx.event(_eid("corrections_non_reversal")))
    value = to_json_bytes(parts[0])
    return Built([ctx.signed(K, parts[0].owner_id.encode(), value, keys.admin, hostile=True)],
                 absent_generation=parts[0].generation_id)


@case("reversal_without_corrects", "forged_reversal", K, "schema_violation")
def _reversal_no_target(ctx: Context) -> Built:
    parts, _ = ctx.pipeline_output(ctx.event(_eid("reversal_without_corrects")))
    doc = json.loads(to_json_bytes(_reversal(ctx, parts[0])))
    doc["corrects"] = None
    return Built([ctx.signed(K, parts[0].owner_id.encode(), dumps(doc), keys.admin, hostile=True)])


@case("admin_reversal_control", "forged_reversal", K, round=2)
def _admin_reversal(ctx: Context) -> Built:
    # The legitimate path, as a control: an admin-signed reversal of a settled contribution moves
    # exactly that credit to unattributed and dead-letters nothing.
    parts, _ = ctx.pipeline_output(ctx.event(_eid("admin_reversal_control")))
    target = next(p for p in parts if p.amount > 0)
    rec = ctx.signed(K, target.owner_id.encode(), to_json_bytes(_reversal(ctx, target)), keys.admin)
    return Built([rec], reversed_ids=[target.contribution_id])


@case("admin_reversal_control_target", "forged_reversal", C, round=1)
def _admin_reversal_target(ctx: Context) -> Built:
    _, _, recs = _good(ctx, _eid("admin_reversal_control"))
    return Built(recs, ledger_events=[ctx.event(_eid("admin_reversal_control"))])


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
