"""decode_generation / decode_contribution turn bytes into events or reasoned ContractErrors."""

from __future__ import annotations

import json

import pytest

from royalflow.contracts import decode_contribution, decode_generation
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
