"""The typed family manifest: one model per kind, validated on load, with clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from royalflow.attribution.families import LOADERS, load_family
from royalflow.attribution.families.categorical import demo_manifest
from royalflow.attribution.families.manifest import (
    CategoricalManifest, DiffusionManifest, LoraManifest, parse_manifest,
)
from royalflow.errors import ConfigurationError

DIGEST = "0" * 64


def lora(**changes: object) -> dict:  # type: ignore[type-arg]
    doc = {
        "kind": "lora", "family_id": "f", "version": "1", "owners": ["a", "b"], "pool_fraction": "3/10",
        "mode": "exact", "base": "/models/sd", "resolution": 32, "rank": 8, "target_modules": ["to_q"],
        "adapters": {hex(m): {"file": f"adapters/{m}.safetensors", "sha256": DIGEST} for m in range(4)},
        "data_sizes": {"_base": 10, "a": 5, "b": 6}, "estimator": {"samples": 8},
    }
    doc.update(changes)
    return doc


def digits(**changes: object) -> dict:  # type: ignore[type-arg]
    doc = {
        "kind": "diffusion", "family_id": "d", "version": "2", "owners": ["a", "b"], "pool_fraction": "3/10",
        "mode": "exact", "levels": 17, "unet": {"sample_size": 8}, "scheduler": {"num_train_timesteps": 100},
        "estimator": {"samples": 8, "target_std_error": 0.01, "max_permutations": 100},
        "data_sizes": {"_base": 10, "a": 5, "b": 6}, "weights": {"0x0": DIGEST}, "clusters": [["a"], ["b"]],
        "content_only": "class_mixture", "null_class": 10,
    }
    doc.update(changes)
    return doc


def test_kinds_are_one_discriminated_model() -> None:
    assert isinstance(parse_manifest(lora(), "x"), LoraManifest)
    assert isinstance(parse_manifest(demo_manifest(), "x"), CategoricalManifest)
    assert isinstance(parse_manifest(digits(), "x"), DiffusionManifest)
    assert set(LOADERS) == {"categorical", "diffusion", "lora"}
    compositional = lora(mode="compositional", adapters={"0x1": {"file": "a", "sha256": DIGEST},
                                                          "0x2": {"file": "b", "sha256": DIGEST}})
    assert parse_manifest(compositional, "x").mode == "compositional"  # no control: v(∅) = base


@pytest.mark.parametrize(("changes", "message"), [
    ({"kind": "gan"}, "kind"),
    ({"owners": ["a", "a"]}, "distinct"),
    ({"pool_fraction": "3/2"}, "pool_fraction"),
    ({"adapters": {"0x1": {"file": "a", "sha256": DIGEST}}}, "missing masks"),
    ({"adapters": {**lora()["adapters"], "0x9": {"file": "z", "sha256": DIGEST}}}, "unexpected"),
    ({"adapters": {"0x1": {"file": "../etc/passwd", "sha256": DIGEST}}}, "relative"),
    ({"data_sizes": {"a": 5, "b": 6}}, "_base"),
    ({"estimator": {"samples": 1}}, "samples"),
    ({"extra_field": 1}, "extra"),
])
def test_invalid_manifests_are_refused_with_the_reason(changes: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigurationError, match=message):
        parse_manifest(lora(**changes), "families/f/1")


def test_unknown_kind_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="unknown kind"):
        load_family({"kind": "gan"}, tmp_path)


@pytest.mark.parametrize(("changes", "message"), [
    ({"mode": "greedy"}, "mode"),
    ({"clusters": [["a"]]}, "partition"),
    ({"weights": {"0x0": "abc"}}, "sha256"),
    ({"content_only": "guess"}, "content_only"),
    ({"estimator": {"samples": 8}}, "target_std_error"),
    ({"levles": 17}, "levles: Extra inputs are not permitted"),
])
def test_digits_manifests_are_typed_too(changes: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigurationError, match=message):
        parse_manifest(digits(**changes), "families/d/2")
    with pytest.raises(ConfigurationError, match="class_counts"):
        parse_manifest({**demo_manifest(), "class_counts": {}}, "families/c/1")
