"""What the attribution agent needs from a model family, whatever its kind.

A *family* is a versioned set of models over one fixed list of owners. The agent asks it to
``prepare`` each event (decode and check the content, cheap, per event) and then to
``attribute`` a batch of prepared items (the expensive, batched part). Families are looked up
in a :class:`FamilyRegistry` by (id, version); an unknown pair raises ``UnknownFamilyError``.

Implementations, one module per kind under :mod:`royalflow.attribution.families` (its
``LOADERS`` table maps kind to loader): ``categorical`` (walking-skeleton utility), ``digits``
(diffusion-model likelihoods, the embedded demo) and ``lora`` (LoRA adapters).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from royalflow.contracts import GenerationEvent


def seed_for(event_id: str) -> int:
    """Deterministic 63-bit seed from an event id: every random draw for an event derives from it."""
    return int.from_bytes(hashlib.sha256(event_id.encode()).digest()[:8], "big") & (2**63 - 1)


@dataclass(frozen=True)
class Prepared:
    """An event whose content decoded and passed the family's checks."""

    event: GenerationEvent
    item: Any  # family-specific decoded content (e.g. a float tensor image)
    seed: int


@dataclass(frozen=True)
class Attribution:
    """Shapley values over the family's owners for one generation, with its audit trail."""

    owners: tuple[str, ...]
    shapley_values: np.ndarray  # phi_i in nats, shape (n,)
    std_errors: np.ndarray  # shape (n,), >= 0
    method: Literal["exact", "permutation"]
    mode: Literal["exact", "compositional", "categorical"]
    coalition_utilities: dict[str, float]
    utility_std_errors: dict[str, float] = field(default_factory=dict)
    model_evaluations: int = 0
    # The players the values were computed over: clusters of owners (quotient game), and the
    # family's fair-control rule. None: every owner its own player / no rule recorded.
    clusters: tuple[tuple[str, ...], ...] | None = None
    fairness: dict[str, Any] | None = None
    # Screen + refine (families/screen.py): the owners refined, the tolerance, the screen's
    # bound, the unrefined remainder R and the cost in UNet passes. None: every likelihood full.
    screen: dict[str, Any] | None = None


@runtime_checkable
class Family(Protocol):
    family_id: str
    version: str
    owners: tuple[str, ...]
    pool_fraction: Fraction  # share of revenue that goes to the royalty pool

    def prepare(self, event: GenerationEvent) -> Prepared:
        """Decode and check the content; raise ``ContractError('bad_content', ...)`` if unusable."""
        ...

    def attribute(self, batch: Sequence[Prepared]) -> list[Attribution]:
        """Attribute a batch in as few model passes as possible; same order as ``batch``."""
        ...


class FamilyRegistry(Protocol):
    def get(self, family_id: str, version: str) -> Family:
        """Return the resident family, loading it once; raise ``UnknownFamilyError``."""
        ...
