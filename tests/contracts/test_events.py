"""The pydantic models and the JSON Schema files in schemas/ are one contract.

For every record type: the models' field names equal the schema's properties, required sets
agree, and a corpus of valid and invalid documents is accepted/rejected identically by both.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from typing import Any

import jsonschema
import pytest
from pydantic import BaseModel, ValidationError
from referencing import Registry, Resource

from royalflow.contracts import AttributionRecord, ContributionEvent, DeadLetter, GenerationEvent
from royalflow.contracts.events import WIRE
from royalflow.contracts.schema_files import SCHEMAS_DIR, schema_path

MODELS: dict[str, type[BaseModel]] = {
    "generation-event.v1": GenerationEvent,
    "contribution-event.v1": ContributionEvent,
    "dead-letter.v1": DeadLetter,
    "attribution-record.v1": AttributionRecord,
}

_REGISTRY = Registry().with_resources(
    (json.loads(p.read_text())["$id"], Resource.from_contents(json.loads(p.read_text())))
    for p in SCHEMAS_DIR.glob("*.json")
)


def _validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads(schema_path(name).read_text())
    return jsonschema.Draft202012Validator(
        schema, registry=_REGISTRY, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def _wire_fields(model: type[BaseModel]) -> set[str]:
    return {f.alias or name for name, f in model.model_fields.items()}


def _required(model: type[BaseModel]) -> set[str]:
    return {f.alias or name for name, f in model.model_fields.items() if f.is_required()}


CONTENT = b"\x89PNG fake bytes"
GENERATION: dict[str, Any] = {
    "schema": "royalflow.generation.v1",
    "event_id": "gen-0001",
    "occurred_at": "2026-11-25T10:00:00+00:00",
    "producer": "studio-1",
    "model_family": {"id": "digits-diffusion", "version": "1"},
    "conditioning": {"class_label": 3, "prompt": "a three"},
    "content": {
        "media_type": "image/png",
        "sha256": hashlib.sha256(CONTENT).hexdigest(),
        "data_base64": base64.b64encode(CONTENT).decode(),
    },
    "revenue": {"amount": 12_000_000, "currency": "USD", "asset_scale": 9},
}
CONTRIBUTION: dict[str, Any] = {
    "schema": "royalflow.contribution.v1",
    "contribution_id": "gen-0001/owner-a/0",
    "generation_id": "gen-0001",
    "owner_id": "owner-a",
    "occurred_at": "2026-11-25T10:00:00+00:00",
    "family_id": "digits-diffusion",
    "family_version": "1",
    "method": "exact",
    "shapley_value": 1.25,
    "std_error": 0.01,
    "share": 0.5,
    "amount": 1_800_000,
    "currency": "USD",
    "asset_scale": 9,
    "pool_amount": 3_600_000,
    "revenue_amount": 12_000_000,
    "parts_total": 4,
    "kind": "attribution",
    "corrects": None,
}
DEAD_LETTER: dict[str, Any] = {
    "schema": "royalflow.deadletter.v1",
    "reason": "malformed_json",
    "detail": "not JSON",
    "source_topic": "royalflow.generations.v1",
    "source_partition": 2,
    "source_offset": 17,
    "original_key_base64": None,
    "original_value_base64": base64.b64encode(b"{oops").decode(),
    "original_size_bytes": 5,
    "consumer": "attribution",
    "dead_lettered_at": "2026-11-25T10:00:01+00:00",
}
ATTRIBUTION: dict[str, Any] = {
    "schema": "royalflow.attribution.v1",
    "generation_id": "gen-0001",
    "occurred_at": "2026-11-25T10:00:00+00:00",
    "family_id": "digits-diffusion",
    "family_version": "1",
    "method": "exact",
    "mode": "exact",
    "owners": ["owner-a", "owner-b"],
    "shapley_values": [1.0, -0.5],
    "std_errors": [0.1, 0.1],
    "coalition_utilities": {"0x0": -40.0, "0x1": -39.0, "0x2": -40.5, "0x3": -39.5},
    "utility_std_errors": {"0x0": 0.2},
    "seed": 12345,
    "revenue_amount": 12_000_000,
    "pool_amount": 3_600_000,
    "currency": "USD",
    "asset_scale": 9,
    "content_sha256": GENERATION["content"]["sha256"],
    "model_evaluations": 4,
    "conditioning": GENERATION["conditioning"],
    "content": GENERATION["content"],
}
VALID = {
    "generation-event.v1": GENERATION,
    "contribution-event.v1": CONTRIBUTION,
    "dead-letter.v1": DEAD_LETTER,
    "attribution-record.v1": ATTRIBUTION,
}


def _mutations(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Invalid variants: each required field dropped, an unknown field added, types broken."""
    out = []
    for key in doc:
        broken = copy.deepcopy(doc)
        del broken[key]
        out.append((f"missing {key}", broken))
        if isinstance(doc[key], str):
            typed = copy.deepcopy(doc)
            typed[key] = 12
            out.append((f"{key} as number", typed))
        if isinstance(doc[key], int) and not isinstance(doc[key], bool):
            typed = copy.deepcopy(doc)
            typed[key] = "12"
            out.append((f"{key} as string", typed))
    extra = copy.deepcopy(doc)
    extra["surprise"] = 1
    out.append(("unknown field", extra))
    return out


@pytest.mark.parametrize("name", sorted(MODELS))
def test_fields_agree(name: str) -> None:
    schema = json.loads(schema_path(name).read_text())
    assert _wire_fields(MODELS[name]) == set(schema["properties"])
    assert set(schema["required"]) >= _required(MODELS[name])


@pytest.mark.parametrize("name", sorted(MODELS))
def test_valid_document_accepted_by_both(name: str) -> None:
    doc = VALID[name]
    _validator(name).validate(doc)
    model = MODELS[name].model_validate(doc)
    # Round trip: what the services write is valid under the schema.
    _validator(name).validate(json.loads(model.model_dump_json(by_alias=True)))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_invalid_documents_rejected_by_both(name: str) -> None:
    validator = _validator(name)
    for label, doc in _mutations(VALID[name]):
        schema_ok = validator.is_valid(doc)
        try:
            MODELS[name].model_validate(doc, context=WIRE)
            model_ok = True
        except ValidationError:
            model_ok = False
        assert schema_ok == model_ok, f"{name}: {label}: schema says {schema_ok}, model says {model_ok}"


@pytest.mark.parametrize(
    "patch",
    [
        {"content": {"media_type": "image/png", "sha256": "0" * 64}},  # neither bytes nor uri
        {"content": {"media_type": "image/png", "sha256": "0" * 64, "data_base64": "AA==", "uri": "s3://b/k"}},
        {"revenue": {"amount": -1, "currency": "USD", "asset_scale": 9}},
        {"revenue": {"amount": 10**16, "currency": "USD", "asset_scale": 9}},
        {"event_id": "has space"},
        {"occurred_at": "2026-11-25T10:00:00"},  # no offset
        {"model_family": {"id": "Bad_Id", "version": "1"}},
    ],
)
def test_generation_edge_cases_agree(patch: dict[str, Any]) -> None:
    doc = {**copy.deepcopy(GENERATION), **patch}
    schema_ok = _validator("generation-event.v1").is_valid(doc)
    try:
        GenerationEvent.model_validate(doc, context=WIRE)
        model_ok = True
    except ValidationError:
        model_ok = False
    assert schema_ok is False and model_ok is False


def test_attribution_clusters_and_fairness_are_optional_and_checked_by_both() -> None:
    """Additive fields: records without them stay valid; with them, both sides agree."""
    with_fields = {**copy.deepcopy(ATTRIBUTION), "clusters": [["owner-a", "owner-b"]],
                   "fairness": {"control": "random_labels", "null_dropout": 0.15, "public_mix": 0.25, "start": "control"}}
    _validator("attribution-record.v1").validate(with_fields)
    record = AttributionRecord.model_validate(with_fields, context=WIRE)
    _validator("attribution-record.v1").validate(json.loads(record.model_dump_json(by_alias=True)))
    for bad in ({"clusters": [[1]]}, {"fairness": {"control": "x"}}, {"fairness": {**with_fields["fairness"], "null_dropout": 2}}):
        doc = {**with_fields, **bad}
        schema_ok = _validator("attribution-record.v1").is_valid(doc)
        try:
            AttributionRecord.model_validate(doc, context=WIRE)
            model_ok = True
        except ValidationError:
            model_ok = False
        assert schema_ok is False and model_ok is False, bad


@pytest.mark.parametrize(("name", "methods"), [
    ("attribution-record.v1", ("exact", "permutation", "mixture")),
    ("contribution-event.v1", ("exact", "permutation", "mixture", "unattributed")),
])
def test_every_shapley_method_is_accepted_and_no_other_by_both(name: str, methods: tuple[str, ...]) -> None:
    """The method enum is one list in the schema and one Literal in the model: they must agree
    (royalflow.shapley's "mixture" quadrature included), and an unknown method is refused by both."""
    for method, expected in [*((m, True) for m in methods), ("sampling", False), ("unattributed-ish", False)]:
        doc = {**copy.deepcopy(VALID[name]), "method": method}
        schema_ok = _validator(name).is_valid(doc)
        try:
            MODELS[name].model_validate(doc, context=WIRE)
            model_ok = True
        except ValidationError:
            model_ok = False
        assert schema_ok is model_ok is expected, (name, method)
