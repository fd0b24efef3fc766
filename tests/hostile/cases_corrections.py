"""Hostile records on corrections.v1: only the admin path may correct (admin key set), a
reversal must name an existing contribution within the bounded wait, and it must agree with it."""

from __future__ import annotations

import json

from royalflow import topics
from royalflow.contracts import ContributionEvent
from royalflow.contracts.events import to_json_bytes

from tests.hostile import keys
from tests.hostile.cases_ledger import SIG, _eid, _good
from tests.hostile.corpus import Built, Context, Rec, case, dumps

C, K = topics.CONTRIBUTIONS, topics.CORRECTIONS


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


@case("reversal_conflicting_payload", "forged_reversal", K, "conflicting_duplicate", round=2)
def _reversal_conflict(ctx: Context) -> Built:
    # The admin's real reversal first (it applies), then a different payload under its id.
    parts, _ = ctx.pipeline_output(ctx.event(_eid("reversal_conflicting_payload")))
    target = next(p for p in parts if p.amount > 0)
    first = _reversal(ctx, target)
    second = first.model_copy(update={"amount": first.amount - 1})
    key = target.owner_id.encode()
    return Built([ctx.signed(K, key, to_json_bytes(first), keys.admin),
                  ctx.signed(K, key, to_json_bytes(second), keys.admin, hostile=True)],
                 reversed_ids=[target.contribution_id])


@case("reversal_conflicting_payload_target", "forged_reversal", C, round=1)
def _reversal_conflict_target(ctx: Context) -> Built:
    _, _, recs = _good(ctx, _eid("reversal_conflicting_payload"))
    return Built(recs, ledger_events=[ctx.event(_eid("reversal_conflicting_payload"))])


@case("reversal_wrong_owner", "forged_reversal", K, "inconsistent_contribution", round=2)
def _reversal_wrong_owner(ctx: Context) -> Built:
    # Admin-signed, but it states another owner than the contribution's: it must move nothing.
    parts, _ = ctx.pipeline_output(ctx.event(_eid("reversal_wrong_owner")))
    target = next(p for p in parts if p.amount > 0)
    wrong = _reversal(ctx, target).model_copy(update={"owner_id": "owner-x"})
    return Built([ctx.signed(K, b"owner-x", to_json_bytes(wrong), keys.admin, hostile=True)])


@case("reversal_wrong_owner_target", "forged_reversal", C, round=1)
def _reversal_wrong_owner_target(ctx: Context) -> Built:
    _, _, recs = _good(ctx, _eid("reversal_wrong_owner"))
    return Built(recs, ledger_events=[ctx.event(_eid("reversal_wrong_owner"))])


@case("reversal_year_9999", "forged_reversal", K, "invalid_timestamp")
def _reversal_time(ctx: Context) -> Built:
    parts, _ = ctx.pipeline_output(ctx.event(_eid("reversal_year_9999")))
    doc = json.loads(to_json_bytes(_reversal(ctx, parts[0])))
    doc["occurred_at"] = "9999-12-31T23:59:59-14:00"
    return Built([ctx.signed(K, parts[0].owner_id.encode(), dumps(doc), keys.admin, hostile=True)],
                 absent_generation=parts[0].generation_id)
