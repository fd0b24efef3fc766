"""One typed manifest model for every family kind, validated when a family loads.

``FamilyManifest`` is a discriminated union on ``kind``: ``categorical`` (walking skeleton),
``diffusion`` (the digits family, ``families/digits.py``) and ``lora``. Every model forbids
unknown fields, so a typo in a hand-written manifest is an error, not a silent default.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from royalflow.contracts.events import OWNER_ID_PATTERN
from royalflow.errors import ConfigurationError

MAX_OWNERS = 10_000  # compositional LoRA families: one component file per owner
EXACT_MAX_OWNERS = 12  # exact LoRA families train 2^n adapters
CONTROL = "_control"  # the components key of v(∅)'s adapter
# How the K Monte-Carlo timesteps are drawn from the proposal (attribution/diffusion/elbo.py):
# "independent" (K i.i.d. draws; every manifest before issue #15) or "stratified" (one per 1/K of
# the proposal's mass). Part of the audit trail: a manifest keeps its rule, so replays repeat.
Timesteps = Literal["independent", "stratified"]
# The rule new LoRA manifests are written with, by training and by import (README, *The rate
# down to SNR 1*): stratified timesteps and v(S) counted down to SNR 1. The Estimator model's
# own defaults stay the rule before, so a manifest written earlier replays bit-for-bit.
LORA_ESTIMATOR_RULE: dict[str, Any] = {"timesteps": "stratified", "snr_cut": 1.0}
# How a digits family scores an event without a class label (families/digits.py, _content).
ContentRule = Literal["null", "class_mixture", "class_posterior"]
HEX_MASK = re.compile(r"^0x[0-9a-f]+$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
_OWNER_ID = re.compile(OWNER_ID_PATTERN)


def owner_id_problem(owner: str) -> str | None:
    """Why ``owner`` cannot be a LoRA family's owner id, or None: the contribution contract's
    pattern (its events carry the id), and no leading '_' (reserved: _base, _control,
    _unattributed). The pattern's first character is never '.', so ``<owner>.safetensors``
    stays inside its folder."""
    if not isinstance(owner, str) or not _OWNER_ID.fullmatch(owner) or owner.startswith("_"):
        return (f"owner id {owner!r} must match {OWNER_ID_PATTERN} (contribution events' owner_id) "
                "and not start with '_' (reserved: _base, _control, _unattributed)")
    return None


def check_owner_ids(owners: list[str]) -> None:
    """ConfigurationError naming the bad owner ids (the first few) and any repeated one."""
    bad = [o for o in owners if owner_id_problem(o) is not None]
    if bad:
        raise ConfigurationError(f"{len(bad)} bad owner id(s) {_few(bad)}: {owner_id_problem(bad[0])}")
    seen: set[str] = set()
    for owner in owners:
        if owner in seen:
            raise ConfigurationError(f"owner {owner!r} appears twice")
        seen.add(owner)


def _check_data_sizes(owners: list[str], sizes: dict[str, int]) -> None:
    """Mixture weights: a positive count for every owner and for the base (``_base``)."""
    for owner in [*owners, "_base"]:
        if sizes.get(owner, 0) <= 0:
            raise ValueError(f"data_sizes[{owner!r}] must be a positive count")


class _Common(BaseModel):
    model_config = ConfigDict(coerce_numbers_to_str=True)

    family_id: str = Field(min_length=1, max_length=200)
    version: str = Field(min_length=1, max_length=64)
    owners: list[str] = Field(min_length=1, max_length=4096)
    pool_fraction: str

    @field_validator("pool_fraction")
    @classmethod
    def _fraction(cls, value: str) -> str:
        try:
            fraction = Fraction(value)
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"pool_fraction {value!r} is not a fraction") from None
        if not 0 <= fraction <= 1:
            raise ValueError(f"pool_fraction {value} must be within [0, 1]")
        return value

    @field_validator("owners")
    @classmethod
    def _unique(cls, owners: list[str]) -> list[str]:
        seen: set[str] = set()
        for owner in owners:
            if owner in seen:
                raise ValueError(f"owners must be distinct: owner {owner!r} appears twice")
            seen.add(owner)
        return owners


class CategoricalManifest(_Common):
    """The walking-skeleton family: per-owner class counts (``families/categorical.py``)."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)
    kind: Literal["categorical"]
    class_counts: dict[str, dict[str, int]]
    base_counts: dict[str, int]
    num_classes: int = Field(default=10, ge=1, le=1_000_000)

    @model_validator(mode="after")
    def _counts(self) -> "CategoricalManifest":
        if set(self.class_counts) != set(self.owners):
            raise ValueError("class_counts must have exactly one entry per owner")
        return self


class DigitsEstimator(BaseModel):
    model_config = ConfigDict(extra="forbid")
    samples: int = Field(ge=2, le=1024)
    target_std_error: float = Field(gt=0)
    max_permutations: int = Field(ge=1, le=1_000_000)
    timestep_proposal: list[float] | None = None  # q(s), sums to 1 (absent: uniform)
    timesteps: Timesteps = "independent"  # how the K timesteps are drawn from q (elbo.py)


class DiffusionManifest(_Common):
    """The digits family: one class-conditioned UNet2DModel per coalition (``families/digits.py``)."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)
    kind: Literal["diffusion"]
    mode: Literal["exact", "compositional"]
    levels: int = Field(ge=2, le=65536)
    unet: dict[str, Any]  # UNet2DModel config
    scheduler: dict[str, Any]  # DDPMScheduler config
    estimator: DigitsEstimator
    data_sizes: dict[str, int]
    weights: dict[str, str] | None = None  # hex mask -> sha256 of coalition-<mask>.safetensors
    null_class: int | None = None  # absent: a pre-v2 family, events need a class label
    content_only: ContentRule | None = None
    clusters: list[list[str]] | None = None
    cluster_evidence: list[Any] | None = None
    cluster_data_sizes: list[int] | None = None
    training: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _shape(self) -> "DiffusionManifest":
        for key, digest in (self.weights or {}).items():
            if not HEX_MASK.match(key) or not SHA256.match(digest):
                raise ValueError(f"weights entry {key!r}: keys are hex masks, values sha256 hex digests")
        if self.clusters is not None and sorted(o for c in self.clusters for o in c) != sorted(self.owners):
            raise ValueError("clusters must partition the owners")
        _check_data_sizes(self.owners, self.data_sizes)
        return self


class AdapterFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    file: str = Field(min_length=1, max_length=255)  # relative to the family folder
    sha256: str

    @field_validator("file")
    @classmethod
    def _relative(cls, value: str) -> str:
        if value.startswith("/") or ".." in value.split("/"):
            raise ValueError(f"adapter file {value!r} must be relative, inside the family folder")
        return value

    @field_validator("sha256")
    @classmethod
    def _digest(cls, value: str) -> str:
        if not SHA256.match(value):
            raise ValueError("sha256 must be 64 lowercase hex digits")
        return value


class Screen(BaseModel):
    """Screen + refine for compositional LoRA families (attribution/families/screen.py)."""

    model_config = ConfigDict(extra="forbid")
    # Fewer owners: every likelihood in full. The screen trades accuracy for cost (README,
    # *Catalogue scale*): below a few hundred owners the full path is affordable and more accurate.
    min_owners: int = Field(default=256, ge=1, le=1_000_000)
    tolerance: float = Field(default=0.02, gt=0, le=1)  # rule (3): what the unrefined may hold together
    gradient_rows: int = Field(default=1, ge=1, le=1024)  # rows of the control linearised (1), per event
    candidates: int = Field(default=16, ge=1, le=256)  # owners the screen passes to the stage (6)
    candidate_rows: int = Field(default=1, ge=1, le=1024)  # rows each candidate runs in the stage
    min_refined: int = Field(default=1, ge=1, le=256)  # the first round, which calibrates the screen
    max_refined: int = Field(default=4, ge=1, le=256)  # owners refined per event, at most
    # UNet passes per event, in units of one likelihood's rows (K + 1; K under a cut (elbo.py (6)))
    max_passes: float = Field(default=4.0, gt=1, le=1024)
    bound_nats: float = Field(default=0.5, ge=0, le=1000)  # the screen's stated error bound

    @model_validator(mode="after")
    def _order(self) -> "Screen":
        if self.min_refined > self.max_refined:
            raise ValueError("min_refined must not exceed max_refined")
        if self.min_refined > self.candidates:
            raise ValueError("min_refined must not exceed candidates")
        if self.gradient_rows > self.candidate_rows:
            raise ValueError("gradient_rows must not exceed candidate_rows")
        return self


class Estimator(BaseModel):
    model_config = ConfigDict(extra="forbid")
    samples: int = Field(ge=2, le=1024)  # K Monte-Carlo timesteps per likelihood
    timesteps: Timesteps = "independent"  # how the K timesteps are drawn (elbo.py); absent: as before
    timestep_proposal: list[float] | None = None  # q(s) over s = 2..T (absent: uniform)
    # v(S) as the rate down to the noise level where SNR = snr_cut (elbo.py (6)); absent: the
    # full bound, as every manifest before issue #15's cut.
    snr_cut: float | None = Field(default=None, gt=0, le=1e6)
    max_rows_per_forward: int = Field(default=4096, ge=1, le=1 << 20)
    target_std_error: float = Field(default=0.01, gt=0)  # permutation sampling (compositional, many owners)
    max_permutations: int = Field(default=2000, ge=1, le=1_000_000)
    screen: Screen = Field(default_factory=Screen)


class LoraManifest(_Common):
    """A family of LoRA adapters over one pretrained latent text-to-image pipeline.

    exact: ``adapters`` maps every hex coalition mask 0x1 .. 2^n - 1 (and optionally 0x0, the
    control v(∅)) to its file; n <= EXACT_MAX_OWNERS. compositional: ``components`` maps every
    owner id (and optionally ``_control``) to its file, ``adapters`` is empty; n <= MAX_OWNERS.
    Without a control, v(∅) is the plain base (imported families without one). Compositional
    manifests written before ``components`` existed (single-owner masks in ``adapters``) are
    read into ``components`` on load. ``slot_files()`` is the runtime's view of either form.
    """

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)
    kind: Literal["lora"]
    mode: Literal["exact", "compositional"]
    owners: list[str] = Field(min_length=1, max_length=MAX_OWNERS)
    base: str = Field(min_length=1)  # the local diffusers folder (absolute, or relative to the family folder)
    resolution: int = Field(ge=8, le=4096)
    rank: int = Field(ge=1, le=1024)
    target_modules: list[str] = Field(min_length=1)
    adapters: dict[str, AdapterFile] = Field(default_factory=dict)  # exact: hex coalition mask -> file
    components: dict[str, AdapterFile] = Field(default_factory=dict)  # compositional: owner id / "_control" -> file
    data_sizes: dict[str, int]  # images per owner and "_base" (compositional mixture weights)
    estimator: Estimator
    training: dict[str, Any] | None = None  # provenance, the fair-control rule, the cluster check
    # Same-source owners (training/lora_clusters.py): players of the quotient game, the evidence
    # per owner pair, and each cluster's distinct image count (its compositional mixture weight).
    clusters: list[list[str]] | None = None
    cluster_evidence: list[Any] | None = Field(default=None, max_length=10_000)
    cluster_data_sizes: list[int] | None = None
    # Compositional: one adapter per multi-owner cluster, trained on the cluster's distinct rows
    # (training/rows.py): the cluster's component in the mixture (None: singletons, or the
    # members' mixture). Aligned with ``clusters``.
    cluster_components: list[AdapterFile | None] | None = None

    @model_validator(mode="before")
    @classmethod
    def _legacy_components(cls, data: Any) -> Any:
        # Compositional families written before ``components``: adapters 0x0 (control) and
        # 1 << i (owner i). Anything malformed is left for the field validators to report.
        if not isinstance(data, dict) or data.get("mode") != "compositional" or not data.get("adapters"):
            return data
        owners, adapters = data.get("owners"), data["adapters"]
        if data.get("components") or not isinstance(owners, list) or not isinstance(adapters, dict):
            return data  # both forms at once: refused after (adapters must be empty)
        components: dict[str, Any] = {}
        for key, entry in adapters.items():
            mask = int(key, 16) if isinstance(key, str) and HEX_MASK.match(key) else -1
            if mask == 0:
                components[CONTROL] = entry
            elif mask > 0 and mask & (mask - 1) == 0 and mask.bit_length() <= len(owners):
                components[str(owners[mask.bit_length() - 1])] = entry
            else:
                raise ValueError(f"compositional adapter key {key!r}: expected 0x0 or a single-owner mask "
                                 f"1 << i below 1 << {len(owners)} (unexpected coalition)")
        return {**data, "adapters": {}, "components": components}

    @field_validator("owners")
    @classmethod
    def _owner_ids(cls, owners: list[str]) -> list[str]:
        for owner in owners:
            problem = owner_id_problem(owner)
            if problem is not None:
                raise ValueError(problem)
        return owners

    @model_validator(mode="after")
    def _files(self) -> "LoraManifest":
        n = len(self.owners)
        if self.mode == "exact":
            if n > EXACT_MAX_OWNERS:
                raise ValueError(f"exact mode trains 2^n adapters; {n} owners is too many "
                                 f"(at most {EXACT_MAX_OWNERS}; use compositional)")
            if self.components:
                raise ValueError("exact mode lists its files in adapters (hex coalition masks), not components")
            for key in self.adapters:
                if not HEX_MASK.match(key):
                    raise ValueError(f"adapter key {key!r} must be a lowercase hex coalition mask like 0x5")
            masks = {int(k, 16) for k in self.adapters}
            wanted = set(range(1, 1 << n))
            if not wanted <= masks or not masks <= wanted | {0}:
                missing = sorted(wanted - masks)
                extra = sorted(masks - wanted - {0})
                raise ValueError(f"exact mode adapters: missing masks {_few([hex(m) for m in missing])}, "
                                 f"unexpected {_few([hex(m) for m in extra])}")
        else:
            if self.adapters:
                raise ValueError("compositional mode lists its files in components (owner id -> file); "
                                 "adapters must be empty")
            missing = [o for o in self.owners if o not in self.components]
            extra = sorted(set(self.components) - set(self.owners) - {CONTROL})
            if missing or extra:
                raise ValueError(f"compositional components: missing for owners {_few(missing)}, "
                                 f"unexpected keys {_few(extra)}")
        _check_data_sizes(self.owners, self.data_sizes)
        _check_clusters(self.owners, self.clusters, self.cluster_data_sizes)
        if self.cluster_components is not None:
            if self.mode != "compositional" or self.clusters is None or len(self.cluster_components) != len(self.clusters):
                raise ValueError("cluster_components: compositional mode only, one entry per cluster")
            if any(e is not None and len(c) < 2 for c, e in zip(self.clusters, self.cluster_components)):
                raise ValueError("cluster_components: a single-owner cluster's component is its owner's")
        return self

    def slot_files(self) -> list[AdapterFile | None]:
        """The adapter file of every slot, in the runtime's slot order; None: the plain base.
        exact: coalition masks 0x0 .. 2^n - 1; compositional: the control, the owners, then the
        clusters' components (those given, in cluster order)."""
        if self.mode == "exact":
            return [self.adapters.get(hex(m)) for m in range(1 << len(self.owners))]
        clusters = [e for e in self.cluster_components or [] if e is not None]
        return [self.components.get(CONTROL), *[self.components[o] for o in self.owners], *clusters]


def _check_clusters(owners: list[str], clusters: list[list[str]] | None, sizes: list[int] | None) -> None:
    """Clusters partition the owners (each exactly once, none empty); one positive size each."""
    if clusters is None:
        if sizes is not None:
            raise ValueError("cluster_data_sizes needs clusters")
        return
    flat = [o for c in clusters for o in c]
    if any(not c for c in clusters) or len(flat) != len(set(flat)) or set(flat) != set(owners):
        raise ValueError("clusters must partition the owners (each owner in exactly one, none empty)")
    if sizes is not None and (len(sizes) != len(clusters) or any(s <= 0 for s in sizes)):
        raise ValueError("cluster_data_sizes must give one positive image count per cluster")


def component_file(index: int) -> str:
    """Where a compositional family keeps slot ``index`` (0: the control, i + 1: owner i),
    relative to its folder: short names whatever the owner ids (a hex mask of 1,024 owners
    is 257 digits, too long for a file name)."""
    if not 0 <= index <= MAX_OWNERS:
        raise ValueError(f"component index {index} outside [0, {MAX_OWNERS}]")
    return f"components/{index:05d}.safetensors"


def cluster_component_file(index: int) -> str:
    """Where a compositional family keeps cluster ``index``'s component (training/lora.py)."""
    if not 0 <= index < MAX_OWNERS:
        raise ValueError(f"cluster index {index} outside [0, {MAX_OWNERS})")
    return f"components/clusters/{index:05d}.safetensors"


def _few(names: list[str], shown: int = 5) -> str:
    """A list for an error message: the first ``shown`` names and how many more."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return f"{names[:shown]}{more}"


AnyManifest = CategoricalManifest | DiffusionManifest | LoraManifest
FamilyManifest = Annotated[AnyManifest, Field(discriminator="kind")]
_ADAPTER: TypeAdapter[AnyManifest] = TypeAdapter(FamilyManifest)


def parse_manifest(document: dict[str, Any], where: str) -> AnyManifest:
    """Validate a manifest document; ConfigurationError naming ``where`` and the first problems."""
    try:
        return _ADAPTER.validate_python(document)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
        raise ConfigurationError(f"family manifest {where} is invalid: {problems}") from None
