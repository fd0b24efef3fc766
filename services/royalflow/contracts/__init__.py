"""Event contracts: pydantic models that mirror the JSON Schema files in ``schemas/``.

The JSON files are the contract for producers in any language; these models are how the
services read and write them. ``tests/contracts`` proves the two agree.
"""

from royalflow.contracts.events import (
    AttributionRecord,
    Conditioning,
    Content,
    ContributionEvent,
    DeadLetter,
    GenerationEvent,
    ModelFamilyRef,
    Money,
    UNATTRIBUTED_OWNER,
)
from royalflow.contracts.decode import decode_attribution, decode_contribution, decode_generation, decode_ledger_record

__all__ = [
    "AttributionRecord",
    "Conditioning",
    "Content",
    "ContributionEvent",
    "DeadLetter",
    "GenerationEvent",
    "ModelFamilyRef",
    "Money",
    "UNATTRIBUTED_OWNER",
    "decode_attribution",
    "decode_contribution",
    "decode_generation",
    "decode_ledger_record",
]
