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

from royalflow.errors import ConfigurationError

MAX_OWNERS = 64
HEX_MASK = re.compile(r"^0x[0-9a-f]+$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")


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
        if len(set(owners)) != len(owners):
            raise ValueError("owners must be distinct")
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
    content_only: Literal["null", "class_mixture"] | None = None
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
    min_owners: int = Field(default=16, ge=1, le=1_000_000)  # fewer owners: every likelihood in full
    tolerance: float = Field(default=0.02, gt=0, le=1)  # rule (3): what the unrefined may hold together
    min_refined: int = Field(default=2, ge=1, le=256)  # the first round, which calibrates the screen
    max_refined: int = Field(default=4, ge=1, le=256)  # owners refined per event, at most
    bound_nats: float = Field(default=0.5, ge=0, le=1000)  # the screen's stated error bound

    @model_validator(mode="after")
    def _order(self) -> "Screen":
        if self.min_refined > self.max_refined:
            raise ValueError("min_refined must not exceed max_refined")
        return self


class Estimator(BaseModel):
    model_config = ConfigDict(extra="forbid")
    samples: int = Field(ge=2, le=1024)  # K Monte-Carlo timesteps per likelihood
    max_rows_per_forward: int = Field(default=4096, ge=1, le=1 << 20)
    target_std_error: float = Field(default=0.01, gt=0)  # permutation sampling (compositional, many owners)
    max_permutations: int = Field(default=2000, ge=1, le=1_000_000)
    screen: Screen = Field(default_factory=Screen)


class LoraManifest(_Common):
    """A family of LoRA adapters over one pretrained latent text-to-image pipeline."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)
    kind: Literal["lora"]
    mode: Literal["exact", "compositional"]
    base: str = Field(min_length=1)  # the local diffusers folder (absolute, or relative to the family folder)
    resolution: int = Field(ge=8, le=4096)
    rank: int = Field(ge=1, le=1024)
    target_modules: list[str] = Field(min_length=1)
    # hex coalition mask -> file. exact: every mask 0x0 .. 2^n - 1; compositional: 0x0 and 1 << i.
    # 0x0 is the control v(∅); absent, v(∅) is the plain base (imported families without a control).
    adapters: dict[str, AdapterFile]
    data_sizes: dict[str, int]  # images per owner and "_base" (compositional mixture weights)
    estimator: Estimator
    training: dict[str, Any] | None = None  # provenance and the fair-control rule

    @model_validator(mode="after")
    def _masks(self) -> "LoraManifest":
        n = len(self.owners)
        if self.mode == "exact" and n > 12:
            raise ValueError(f"exact mode trains 2^n adapters; {n} owners is too many (use compositional)")
        if n > MAX_OWNERS:
            raise ValueError(f"at most {MAX_OWNERS} owners per LoRA family")
        for key in self.adapters:
            if not HEX_MASK.match(key):
                raise ValueError(f"adapter key {key!r} must be a lowercase hex coalition mask like 0x5")
        masks = {int(k, 16) for k in self.adapters}
        wanted = set(range(1, 1 << n)) if self.mode == "exact" else {1 << i for i in range(n)}
        if not wanted <= masks or not masks <= wanted | {0}:
            missing = sorted(wanted - masks)
            extra = sorted(masks - wanted - {0})
            raise ValueError(f"{self.mode} mode adapters: missing masks {[hex(m) for m in missing]}, "
                             f"unexpected {[hex(m) for m in extra]}")
        _check_data_sizes(self.owners, self.data_sizes)
        return self


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
