"""decode_generation / decode_contribution turn bytes into events or reasoned ContractErrors."""

from __future__ import annotations

import json

import pytest

from royalflow.contracts import decode_contribution, decode_generation
from royalflow.contracts.bounded_json import load_bounded_json
from royalflow.errors import ContractError

from tests.contracts.test_events import CONTRIBUTION, GENERATION


def _raw(doc: object) -> bytes:
    return json.dumps(doc).encode()


def _reason(raw: bytes, **kwargs: int) -> str:
    with pytest.raises(ContractError) as info:
        decode_generation(raw, **kwargs)
    return info.value.reason


def test_valid_generation_decodes() -> None:
    event = decode_generation(_raw(GENERATION))
    assert event.event_id == "gen-0001" and event.revenue.amount == 12_000_000


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "malformed_json"),
        (b"\xff\xfe", "malformed_json"),
        (_raw({**GENERATION, "producer": ""}), "schema_violation"),
        (_raw({**GENERATION, "revenue": {"amount": -5, "currency": "USD", "asset_scale": 9}}), "invalid_amount"),
        (_raw({**GENERATION, "revenue": {"amount": 10**18, "currency": "USD", "asset_scale": 9}}), "invalid_amount"),
        (_raw({**GENERATION, "revenue": {"amount": 1.5, "currency": "USD", "asset_scale": 9}}), "invalid_amount"),
        (_raw({**GENERATION, "revenue": {"amount": 5, "currency": "XXX", "asset_scale": 9}}), "invalid_amount"),
        (_raw({**GENERATION, "revenue": {"amount": 5, "currency": "USD", "asset_scale": 2}}), "invalid_amount"),
    ],
)
def test_bad_generation_has_reason(raw: bytes, reason: str) -> None:
    assert _reason(raw) == reason


def test_oversized_payload_is_refused_before_parsing() -> None:
    assert _reason(b"x" * 2048, max_record_bytes=1024) == "oversized_payload"


def test_contribution_amount_above_pool_is_inconsistent() -> None:
    with pytest.raises(ContractError) as info:
        decode_contribution(_raw({**CONTRIBUTION, "amount": CONTRIBUTION["pool_amount"] + 1}))
    assert info.value.reason == "inconsistent_contribution"


# -- hostile JSON: every bound is a reasoned ContractError, never a crash ------------------------

def _detail(raw: bytes) -> str:
    with pytest.raises(ContractError) as info:
        decode_generation(raw)
    assert info.value.reason == "malformed_json"
    return info.value.detail


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        (b'{"a": ' + b"1" * 5000 + b"}", "integer literal of 5000 digits"),
        (b'{"a": -' + b"9" * 31 + b"}", "integer literal of 31 digits"),
        (b"[" * 100_000 + b"]" * 100_000, "nesting deeper than 32"),
        (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "nesting deeper than 32"),
        (b"[" * 33 + b"]" * 33, "nesting deeper than 32"),
        (b"[" * 200_000, "nesting deeper than 32"),  # unterminated as well as deep
        (b'{"a": NaN}', "NaN is not a JSON number"),
        (b'{"a": -Infinity}', "-Infinity is not a JSON number"),
        (b'{"a": 1e400}', "out of range"),
        (b'{"a": 1.' + b"5" * 100 + b"}", "number literal of 102 characters"),
        ('{"a": "caf\u00e9"}'.encode("utf-16"), "not valid UTF-8"),
        (b'{"revenue": {"amount": 1, "currency": "USD", "amount": 10}}', "key 'amount' appears twice"),
    ],
)
def test_hostile_json_is_malformed_with_the_bound_named(raw: bytes, detail: str) -> None:
    assert detail in _detail(raw)


def test_depth_limit_is_exact_and_ignores_brackets_in_strings() -> None:
    assert _reason(b"[" * 32 + b"]" * 32) == "schema_violation"  # 32 levels parse; not an event
    quoted = json.dumps({**GENERATION, "producer": "[{" * 1000 + '\\"' + "]}" * 1000}).encode()
    assert _reason(quoted) == "schema_violation"  # producer too long, but the JSON itself is fine
    escaped = json.dumps({**GENERATION, "conditioning": {"prompt": '"[[[[' * 40}}).encode()
    assert decode_generation(escaped).conditioning.prompt == '"[[[[' * 40


def test_quadratic_string_input_is_scanned_in_linear_time() -> None:
    import time

    # Unterminated strings full of escaped quotes and brackets: a backtracking scanner is O(n^2).
    for raw in (b'"' + b'\\"[' * 300_000, b'["\\' * 300_000, b'["' * 300_000):
        started = time.perf_counter()
        assert _reason(raw, max_record_bytes=2**21) == "malformed_json"
        assert time.perf_counter() - started < 5.0  # measured: about 0.04 s each


def test_largest_allowed_literals_still_decode() -> None:
    doc = {**GENERATION, "revenue": {"amount": 10**15, "currency": "USD", "asset_scale": 9}}
    assert decode_generation(_raw(doc)).revenue.amount == 10**15
    assert load_bounded_json(b"[1.7976931348623157e308, -123456789012345678901234567890]", 64) == [
        1.7976931348623157e308, -123456789012345678901234567890
    ]


@pytest.mark.parametrize("escape", ["\\ud800", "\\udfff", "x\\ud83dy", "\\ude00\\ud83d"])
def test_an_unpaired_surrogate_escape_is_malformed_in_every_record(escape: str) -> None:
    # Such a string is not Unicode text: PostgreSQL and the payload digests would fail to
    # encode it later, outside the contract checks, on every redelivery of a signed record.
    for decode, doc, field in ((decode_generation, GENERATION, "producer"), (decode_contribution, CONTRIBUTION, "owner_id")):
        raw = _raw(doc).replace(f'"{field}": "'.encode(), f'"{field}": "{escape}'.encode(), 1)
        with pytest.raises(ContractError) as info:
            decode(raw)
        assert info.value.reason == "malformed_json" and "surrogate" in info.value.detail
    with pytest.raises(ContractError, match="surrogate"):
        load_bounded_json(f'{{"{escape}": 1}}'.encode(), 1024)  # in a key too


def test_a_paired_surrogate_escape_is_text() -> None:
    assert load_bounded_json(b'{"note": "\\ud83d\\ude00"}', 1024) == {"note": "\U0001F600"}
