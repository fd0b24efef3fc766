"""Pydantic models of every record on every topic (see ``schemas/*.v1.json``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, model_validator

UNATTRIBUTED_OWNER = "_unattributed"
MAX_REVENUE_AMOUNT = 10**15

_EVENT_ID = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
OWNER_ID_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9._:-]{0,127}$"
# model_family.id / .version (schemas/generation-event.v1.json); the registry, the training and
# import commands check family ids against these too, so no family exists that no event can name.
FAMILY_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"
FAMILY_VERSION_PATTERN = r"^[A-Za-z0-9._-]{1,32}$"
_CURRENCY = r"^[A-Z]{3}$"


# Event times outside this window are refused at the contract (JSON Schema pattern, this model,
# the API): year-1 or year-9999 times overflow PostgreSQL's range after an offset is applied
# and poison every aggregate that reads them.
EARLIEST_EVENT_TIME = datetime(2000, 1, 1, tzinfo=UTC)
MAX_CLOCK_SKEW = timedelta(days=1)


def _iso_text_only(value: Any) -> Any:
    # JSON carries timestamps as RFC 3339 strings; refuse pydantic's lax number -> datetime.
    if isinstance(value, (int, float)):
        raise ValueError("timestamps are RFC 3339 strings, not numbers")
    return value


def check_event_time(value: datetime) -> datetime:
    """The one window every event time must lie in: [2000-01-01T00:00Z, now + 1 day]."""
    if value < EARLIEST_EVENT_TIME:
        raise ValueError(f"event time {value.isoformat()} is before {EARLIEST_EVENT_TIME.isoformat()}")
    latest = datetime.now(UTC) + MAX_CLOCK_SKEW
    if value > latest:
        raise ValueError(f"event time {value.isoformat()} is more than {MAX_CLOCK_SKEW} in the future")
    return value


Timestamp = Annotated[AwareDatetime, BeforeValidator(_iso_text_only), AfterValidator(check_event_time)]
StrictInt = Annotated[int, Field(strict=True)]
Number = Annotated[float, Field(strict=True)]

WIRE = {"wire": True}  # validation context of records read from a topic


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _wire_requires_schema_tag(cls, data: Any, info: ValidationInfo) -> Any:
        # Python callers may omit the tag (it has a default); documents read from a topic must
        # carry it, exactly as the JSON Schema files require.
        if info.context == WIRE and "schema_" in cls.model_fields and isinstance(data, dict) and "schema" not in data:
            raise ValueError("field 'schema' is required")
        return data


class ModelFamilyRef(_Record):
    id: str = Field(pattern=FAMILY_ID_PATTERN)
    version: str = Field(pattern=FAMILY_VERSION_PATTERN)


class Conditioning(_Record):
    class_label: StrictInt | None = Field(default=None, ge=0, le=100_000)
    prompt: str | None = Field(default=None, max_length=4096)


class Content(_Record):
    media_type: Literal["image/png", "application/x-npy"]
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    data_base64: str | None = None
    uri: str | None = Field(default=None, max_length=2048)

    @model_validator(mode="after")
    def _inline_xor_uri(self) -> "Content":
        if (self.data_base64 is None) == (self.uri is None):
            raise ValueError("content needs exactly one of data_base64 or uri")
        return self


class Money(_Record):
    amount: int = Field(ge=0, le=MAX_REVENUE_AMOUNT, strict=True)
    currency: str = Field(pattern=_CURRENCY)
    asset_scale: int = Field(ge=0, le=18, strict=True)


class GenerationEvent(_Record):
    schema_: Literal["royalflow.generation.v1"] = Field(default="royalflow.generation.v1", alias="schema")
    event_id: str = Field(pattern=_EVENT_ID)
    occurred_at: Timestamp
    producer: str = Field(min_length=1, max_length=128)
    model_family: ModelFamilyRef
    conditioning: Conditioning
    content: Content
    revenue: Money

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ContributionEvent(_Record):
    schema_: Literal["royalflow.contribution.v1"] = Field(default="royalflow.contribution.v1", alias="schema")
    contribution_id: str = Field(min_length=1, max_length=300)
    generation_id: str = Field(min_length=1, max_length=128)
    owner_id: str = Field(pattern=OWNER_ID_PATTERN)
    occurred_at: Timestamp
    family_id: str
    family_version: str
    method: Literal["exact", "permutation", "mixture", "unattributed"]
    shapley_value: Number
    std_error: float = Field(ge=0, strict=True)
    share: float = Field(ge=0, le=1, strict=True)
    amount: int = Field(ge=0, strict=True)
    currency: str = Field(pattern=_CURRENCY)
    asset_scale: int = Field(ge=0, le=18, strict=True)
    pool_amount: int = Field(ge=0, strict=True)
    revenue_amount: int = Field(ge=0, strict=True)
    parts_total: int = Field(ge=1, le=100_000, strict=True)
    kind: Literal["attribution", "reversal"] = "attribution"
    corrects: str | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class FairnessRule(_Record):
    """How a diffusion family's control v(∅) and coalition models were trained (royalflow.training.digits)."""

    control: str = Field(max_length=64)  # "random_labels" (fair control) or "base"
    null_dropout: Number = Field(ge=0, le=1)  # P(conditioning -> null) in every fine-tune
    public_mix: Number = Field(ge=0, le=1)  # share of each coalition batch from the control's data
    start: str = Field(max_length=64)  # coalition fine-tunes start from "control" or "base"


class ScreenRecord(_Record):
    """How a large compositional family screened its owners (attribution/families/screen.py):
    the owners whose likelihoods were computed in full, the tolerance of rule (3), the screen's
    error bound in nats (in every unrefined owner's standard error), the remainder R of (3) and
    the cost in UNet passes (a backward counted as two)."""

    refined: list[str] = Field(max_length=4096)
    tolerance: Number = Field(gt=0, le=1)
    bound_nats: Number = Field(ge=0)
    remainder: Number = Field(ge=0)
    unet_passes: int = Field(ge=0, strict=True)


class AttributionRecord(_Record):
    schema_: Literal["royalflow.attribution.v1"] = Field(default="royalflow.attribution.v1", alias="schema")
    generation_id: str
    occurred_at: Timestamp
    family_id: str
    family_version: str
    method: Literal["exact", "permutation", "mixture"]
    mode: Literal["exact", "compositional", "categorical"]
    owners: list[str]
    shapley_values: list[Number]
    std_errors: list[Number]
    coalition_utilities: dict[str, Number]
    utility_std_errors: dict[str, Number]
    seed: int = Field(ge=0, strict=True)
    revenue_amount: int = Field(ge=0, strict=True)
    pool_amount: int = Field(ge=0, strict=True)
    currency: str = Field(pattern=_CURRENCY)
    asset_scale: int = Field(strict=True)
    content_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    model_evaluations: int = Field(ge=0, strict=True)
    conditioning: Conditioning
    content: Content
    # Optional (absent in older records): the players the Shapley values were computed over,
    # as clusters of owners (quotient game; an owner in a cluster of one is paid for itself),
    # and the family's fair-control rule (how v(∅) was trained).
    clusters: list[list[str]] | None = None
    fairness: FairnessRule | None = None
    screen: ScreenRecord | None = None  # absent: every likelihood was computed in full

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


DeadLetterReason = Literal[
    "malformed_json",
    "schema_violation",
    "unknown_model_family",
    "invalid_amount",
    "oversized_payload",
    "bad_content",
    "inconsistent_contribution",
    "processing_error",
    "bad_signature",  # a money record without a valid signature from a known key
    "conflicting_duplicate",  # an id seen before with a different payload (the first one wins)
    "unknown_contribution",  # a reversal whose contribution did not arrive within the bounded wait
    "invalid_timestamp",  # an event time outside [EARLIEST_EVENT_TIME, now + MAX_CLOCK_SKEW]
]


class DeadLetter(_Record):
    schema_: Literal["royalflow.deadletter.v1"] = Field(default="royalflow.deadletter.v1", alias="schema")
    reason: DeadLetterReason
    detail: str = Field(max_length=4096)
    source_topic: str
    source_partition: int = Field(ge=0, strict=True)
    source_offset: int = Field(ge=0, strict=True)
    original_key_base64: str | None = None
    original_value_base64: str
    original_size_bytes: int = Field(default=0, ge=0, strict=True)
    consumer: str
    dead_lettered_at: Timestamp

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def to_json_bytes(record: BaseModel) -> bytes:
    """Serialise with the wire field names (``schema``, not ``schema_``)."""
    return record.model_dump_json(by_alias=True).encode()
