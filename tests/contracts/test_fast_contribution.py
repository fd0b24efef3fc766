"""The fast path for contributions only ever accepts, and only what the general path accepts.

Every check compares against the general path as it is (bounded JSON, then the pydantic model)
and against the JSON Schema file: whatever ``fast_contribution`` accepts, the general path
accepts as an equal event (same fields, same JSON, same fields set) and the schema accepts;
whatever it declines, ``decode_contribution`` refuses or accepts exactly as the general path
does, with the same reason and detail. Property-style: random mutations of valid records,
field by field and byte by byte, plus every timestamp offset.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from royalflow.contracts import ContributionEvent, decode_contribution
from royalflow.contracts.bounded_json import load_bounded_json
from royalflow.contracts.decode import _check_money, _schema_error
from royalflow.contracts.events import MAX_REVENUE_AMOUNT, WIRE, to_json_bytes
from royalflow.contracts.fast_contribution import _FIELDS, fast_contribution
from royalflow.errors import ContractError

from tests.contracts.test_events import CONTRIBUTION, _validator

SCHEMA = _validator("contribution-event.v1")
LIMIT = 1_048_576


def _validated(raw: bytes) -> ContributionEvent:
    """The general path's parse and contract: what the fast path stands in for."""
    doc = load_bounded_json(raw, LIMIT)
    try:
        return ContributionEvent.model_validate(doc, context=WIRE)
    except ValidationError as exc:
        raise _schema_error(exc) from None


def _general(raw: bytes) -> ContributionEvent | ContractError:
    """decode_contribution as it was before the fast path: the reference."""
    try:
        event = _validated(raw)
        _check_money(event.pool_amount, event.currency, event.asset_scale, MAX_REVENUE_AMOUNT)
        if event.amount > event.pool_amount:
            raise ContractError("inconsistent_contribution", f"amount {event.amount} exceeds pool {event.pool_amount}")
        if event.pool_amount > event.revenue_amount:
            raise ContractError("inconsistent_contribution",
                                f"pool {event.pool_amount} exceeds revenue {event.revenue_amount}")
        return event
    except ContractError as exc:
        return exc


def _same_event(fast: ContributionEvent, general: ContributionEvent) -> None:
    assert fast == general
    assert fast.model_dump() == general.model_dump()
    assert to_json_bytes(fast) == to_json_bytes(general)  # payload digests of reversals agree
    assert fast.model_fields_set == general.model_fields_set
    assert hash(fast) == hash(general)
    assert fast.occurred_at.utcoffset() == general.occurred_at.utcoffset()


def _check(raw: bytes) -> bool:
    """The two properties for one input; True when the fast path accepted it."""
    general = _general(raw)
    fast = fast_contribution(raw)
    if fast is not None:
        try:
            validated = _validated(raw)
        except ContractError as exc:
            raise AssertionError(f"fast path accepted what the general path refuses: {exc}") from None
        _same_event(fast, validated)
        assert SCHEMA.is_valid(json.loads(raw)), "fast path accepted what the JSON Schema refuses"
    # The decode step as a whole: the same event, or the same refusal in the same words.
    try:
        decoded: ContributionEvent | ContractError = decode_contribution(raw)
    except ContractError as exc:
        decoded = exc
    if isinstance(general, ContributionEvent):
        assert isinstance(decoded, ContributionEvent)
        assert decoded == general and decoded.model_fields_set == general.model_fields_set
    else:
        assert isinstance(decoded, ContractError)
        assert (decoded.reason, decoded.detail) == (general.reason, general.detail)
    return fast is not None


def _agent_bytes(doc: dict[str, Any]) -> bytes:
    """The layout the agent writes (to_json_bytes: compact, model order)."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def test_the_fields_are_the_models() -> None:
    assert _FIELDS == tuple(ContributionEvent.model_fields)


@pytest.mark.parametrize("kind", ["attribution", "reversal"])
def test_records_as_the_agent_writes_them_take_the_fast_path(kind: str) -> None:
    doc = {**CONTRIBUTION, "kind": kind, "corrects": "gen-0000/owner-a/0" if kind == "reversal" else None}
    event = ContributionEvent.model_validate(doc, context=WIRE)
    raw = to_json_bytes(event)
    assert _check(raw)
    assert _check(_agent_bytes(doc))


def test_other_layouts_take_the_general_path_with_equal_results() -> None:
    reordered = dict(reversed(list(CONTRIBUTION.items())))
    without_defaults = {k: v for k, v in CONTRIBUTION.items() if k not in ("kind", "corrects")}
    for raw in (json.dumps(CONTRIBUTION).encode(),  # spaces after ':' and ','
                _agent_bytes(reordered), _agent_bytes(without_defaults),
                json.dumps(CONTRIBUTION, indent=2).encode(), b" " + _agent_bytes(CONTRIBUTION) + b"\n",
                json.dumps({**CONTRIBUTION, "owner_id": "owner-\u00e9"}).encode()):
        _check(raw)
    assert _general(_agent_bytes(reordered)) == fast_contribution(_agent_bytes(CONTRIBUTION))


HOSTILE_TEXTS = [
    # duplicate keys (the first, the last, or both spellings), escapes, and bounds of bounded_json
    _agent_bytes(CONTRIBUTION)[:-1] + b',"amount":1}',
    _agent_bytes(CONTRIBUTION)[:-1] + b',"amount":1800000}',
    _agent_bytes(CONTRIBUTION)[:-1] + b',"schema":"royalflow.contribution.v1"}',
    _agent_bytes(CONTRIBUTION)[:-1] + b',"\\u0061mount":1}',
    _agent_bytes(CONTRIBUTION).replace(b'"amount":', b'"amount" :'),
    _agent_bytes(CONTRIBUTION).replace(b'"amount":1800000', b'"amount":1800000,"amount":1800000'),
    _agent_bytes(CONTRIBUTION).replace(b'"owner-a"', b'"owner-\\u0061"'),
    _agent_bytes(CONTRIBUTION).replace(b'"family_id":"digits-diffusion"', b'"family_id":"\\ud800"'),
    _agent_bytes(CONTRIBUTION).replace(b'"family_id":"digits-diffusion"', b'"family_id":"a\\u0000b"'),
    _agent_bytes(CONTRIBUTION).replace(b'"share":0.5', b'"share":0.' + b"5" * 70),
    _agent_bytes(CONTRIBUTION).replace(b'"share":0.5', b'"share":5e-1'),
    _agent_bytes(CONTRIBUTION).replace(b'"shapley_value":1.25', b'"shapley_value":1e400'),
    _agent_bytes(CONTRIBUTION).replace(b'"shapley_value":1.25', b'"shapley_value":-1e400'),
    _agent_bytes(CONTRIBUTION).replace(b'"shapley_value":1.25', b'"shapley_value":NaN'),
    _agent_bytes(CONTRIBUTION).replace(b'"shapley_value":1.25', b'"shapley_value":Infinity'),
    _agent_bytes(CONTRIBUTION).replace(b'"shapley_value":1.25', b'"shapley_value":125'),
    _agent_bytes(CONTRIBUTION).replace(b'"std_error":0.01', b'"std_error":-0.0'),
    _agent_bytes(CONTRIBUTION).replace(b'"std_error":0.01', b'"std_error":1' + b"0" * 400 + b".0"),
    _agent_bytes(CONTRIBUTION).replace(b'"revenue_amount":12000000', b'"revenue_amount":' + b"9" * 30),
    _agent_bytes(CONTRIBUTION).replace(b'"revenue_amount":12000000', b'"revenue_amount":1' + b"0" * 30),
    _agent_bytes(CONTRIBUTION).replace(b'"revenue_amount":12000000', b'"revenue_amount":' + b"9" * 5000),
    _agent_bytes(CONTRIBUTION).replace(b'"amount":1800000', b'"amount":01800000'),
    _agent_bytes(CONTRIBUTION).replace(b'"amount":1800000', b'"amount":-0'),
    _agent_bytes(CONTRIBUTION).replace(b'"amount":1800000', b'"amount":1800000.0'),
    _agent_bytes(CONTRIBUTION).replace(b'"amount":1800000', b'"amount":true'),
    _agent_bytes(CONTRIBUTION).replace(b'"parts_total":4', b'"parts_total":[4]'),
    _agent_bytes(CONTRIBUTION).replace(b'"parts_total":4', b'"parts_total":{"n":4}'),
    _agent_bytes(CONTRIBUTION).replace(b'"corrects":null', b'"corrects":"' + b"[" * 40 + b'"'),
    _agent_bytes(CONTRIBUTION).replace(b'"corrects":null', b'"corrects":' + b"[" * 40 + b"]" * 40),
    _agent_bytes(CONTRIBUTION).replace(b'"corrects":null', b'"corrects":1'),
    _agent_bytes(CONTRIBUTION).replace(b'"kind":"attribution"', b'"kind":null'),
    _agent_bytes(CONTRIBUTION).replace(b'"schema":"royalflow.contribution.v1"', b'"schema":"royalflow.contribution.v2"'),
    _agent_bytes(CONTRIBUTION).replace(b'"owner_id":"owner-a"', b'"owner_id":"owner-a\\n"'),
    _agent_bytes(CONTRIBUTION).replace(b'"owner_id":"owner-a"', '"owner_id":"owner-\u0661"'.encode()),
    _agent_bytes(CONTRIBUTION).replace(b'"currency":"USD"', b'"currency":"usd"'),
    _agent_bytes(CONTRIBUTION).replace(b'"currency":"USD"', b'"currency":"XXX"'),
    _agent_bytes(CONTRIBUTION).replace(b'"asset_scale":9', b'"asset_scale":2'),
    _agent_bytes(CONTRIBUTION) + b"x",
    _agent_bytes(CONTRIBUTION) + b"{}",
    b"\xef\xbb\xbf" + _agent_bytes(CONTRIBUTION),
    _agent_bytes(CONTRIBUTION).decode().encode("utf-16"),
    _agent_bytes(CONTRIBUTION).replace(b"owner-a", b"owner-\xff"),
    b"[" + _agent_bytes(CONTRIBUTION) + b"]",
    b'"' + _agent_bytes(CONTRIBUTION) + b'"',
    b"[" * 100_000 + b"]" * 100_000,
    b"{}", b"null", b"",
]


@pytest.mark.parametrize("raw", HOSTILE_TEXTS, ids=range(len(HOSTILE_TEXTS)))
def test_hostile_texts_are_decided_by_the_general_path(raw: bytes) -> None:
    _check(raw)


@pytest.mark.parametrize("minutes", range(-24 * 60 + 1, 24 * 60, 7))
@pytest.mark.parametrize("fraction", ["", ".5", ".123456", ".000001", ".1234567"])
def test_timestamps_parse_to_the_models_instant_and_offset(minutes: int, fraction: str) -> None:
    sign = "-" if minutes < 0 else "+"
    offset = f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    for suffix in (offset, "Z"):
        doc = {**CONTRIBUTION, "occurred_at": f"2026-11-25T10:00:00{fraction}{suffix}"}
        _check(_agent_bytes(doc))


def test_event_time_window_edges() -> None:
    now = datetime.now(UTC)
    for when in ("2000-01-01T00:00:00Z", "1999-12-31T23:59:59.999999Z", "1999-12-31T23:59:59-01:00",
                 (now + timedelta(days=1, minutes=-5)).isoformat(), (now + timedelta(days=1, minutes=5)).isoformat(),
                 "2026-02-29T10:00:00Z", "2028-02-29T10:00:00Z", "2026-11-31T10:00:00Z", "2026-11-25T24:00:00Z",
                 "2026-11-25T23:59:60Z", "2026-11-25T10:00Z", "2026-11-25 10:00:00Z", "2026-11-25T10:00:00z",
                 "2026-11-25T10:00:00", "2026-11-25T10:00:00+24:00", "2026-11-25T10:00:00+0100", "1764064800"):
        _check(_agent_bytes({**CONTRIBUTION, "occurred_at": when}))


# -- property-style: random mutations of valid records ----------------------------------------

INTERESTING = [
    None, True, False, 0, -1, 1, 4, 18, 19, 100_000, 100_001, 10**15, 10**15 + 1, 10**30 - 1, 10**30, 2**63,
    0.0, -0.0, 0.5, 1.0, 1.5, -2.5, 1e-300, 1e308, "", "x", "x" * 128, "x" * 129, "x" * 300, "x" * 301, "USD",
    "EUR", "usd", "US", "USDX", "owner-a", "_unattributed", "-owner", "owner a", "owner:a.b_c-d", "o" * 128,
    "o" * 129, "exact", "permutation", "mixture", "unattributed", "attribution", "reversal", "royalflow.contribution.v1",
    "2026-11-25T10:00:00Z", "2026-11-25T10:00:00.5+05:30", "1999-01-01T00:00:00Z", "2999-01-01T00:00:00Z", [], {},
    [1], {"a": 1}, "caf\u00e9", "\u0661",
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    doc = dict(CONTRIBUTION)
    if draw(st.booleans()):
        doc["amount"] = draw(st.integers(min_value=0, max_value=doc["pool_amount"]))
        doc["shapley_value"] = draw(st.floats(allow_nan=False, allow_infinity=False))
        doc["share"] = draw(st.floats(min_value=0, max_value=1))
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        key = draw(st.sampled_from([*CONTRIBUTION, "extra"]))
        action = draw(st.sampled_from(["set", "set", "set", "drop"]))
        if action == "drop":
            doc.pop(key, None)
        else:
            doc[key] = draw(st.sampled_from(INTERESTING))
    layout = draw(st.sampled_from(["agent", "agent", "spaced", "ascii"]))
    if layout == "agent":
        return _agent_bytes(doc)
    return json.dumps(doc, ensure_ascii=layout == "ascii").encode()


@settings(max_examples=1500, deadline=None)
@given(raw=mutated())
def test_mutated_records_fast_accepts_only_what_general_and_schema_accept(raw: bytes) -> None:
    _check(raw)


@settings(max_examples=1500, deadline=None)
@given(data=st.data())
def test_byte_mutations_never_make_the_fast_path_disagree(data: st.DataObject) -> None:
    raw = bytearray(_agent_bytes(CONTRIBUTION))
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        at = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
        what = data.draw(st.sampled_from(["replace", "insert", "delete"]))
        byte = data.draw(st.sampled_from(list(b'"\\:,{}[] 0123456789.eE+-aznul\x00\xff')))
        if what == "replace":
            raw[at] = byte
        elif what == "insert":
            raw.insert(at, byte)
        elif len(raw) > 1:
            del raw[at]
    _check(bytes(raw))
