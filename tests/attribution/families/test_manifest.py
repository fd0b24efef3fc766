"""The typed family manifest: one model per kind, validated on load, with clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from royalflow.attribution.families import LOADERS, load_family
from royalflow.attribution.families.categorical import demo_manifest
from royalflow.attribution.families.manifest import (
    MAX_OWNERS, AdapterFile, CategoricalManifest, DiffusionManifest, LoraManifest, component_file, parse_manifest,
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


def composed(owners: list[str], *, control: bool = True, **changes: object) -> dict:  # type: ignore[type-arg]
    keys = (["_control"] if control else []) + owners
    return lora(mode="compositional", owners=owners, adapters={},
                components={k: {"file": component_file(i + (not control)), "sha256": DIGEST} for i, k in enumerate(keys)},
                data_sizes={"_base": 10, **{o: 1 + i for i, o in enumerate(owners)}}, **changes)


def test_compositional_files_are_keyed_by_owner_and_slot_files_put_the_control_first() -> None:
    manifest = parse_manifest(composed(["zed", "amy", "bob"]), "x")
    assert isinstance(manifest, LoraManifest) and manifest.adapters == {}
    slots = manifest.slot_files()
    assert [s.file if s else None for s in slots] == [component_file(i) for i in range(4)]
    assert component_file(0) == "components/00000.safetensors" and component_file(12) == "components/00012.safetensors"
    without = parse_manifest(composed(["zed", "amy"], control=False), "x")
    assert isinstance(without, LoraManifest) and without.slot_files()[0] is None  # v(∅) is the plain base
    assert [s.file for s in without.slot_files()[1:] if s] == [component_file(1), component_file(2)]


def test_legacy_compositional_masks_load_as_components() -> None:
    legacy = lora(mode="compositional", owners=["a", "b", "c"], data_sizes={"_base": 1, "a": 1, "b": 1, "c": 1},
                  adapters={m: {"file": f"adapters/{m}/w.safetensors", "sha256": DIGEST}
                            for m in ("0x0", "0x1", "0x2", "0x4")})
    manifest = parse_manifest(legacy, "x")
    assert isinstance(manifest, LoraManifest) and manifest.adapters == {}
    assert manifest.components == {k: AdapterFile(file=f"adapters/{m}/w.safetensors", sha256=DIGEST)
                                   for k, m in (("_control", "0x0"), ("a", "0x1"), ("b", "0x2"), ("c", "0x4"))}
    assert [s.file for s in manifest.slot_files() if s] == [f"adapters/{m}/w.safetensors"
                                                            for m in ("0x0", "0x1", "0x2", "0x4")]
    with pytest.raises(ConfigurationError, match="0x3.*unexpected"):
        parse_manifest({**legacy, "adapters": {**legacy["adapters"], "0x3": {"file": "z", "sha256": DIGEST}}}, "x")


def test_exact_slot_files_follow_the_masks() -> None:
    manifest = parse_manifest(lora(), "x")
    assert isinstance(manifest, LoraManifest)
    assert [s.file for s in manifest.slot_files() if s] == [f"adapters/{m}.safetensors" for m in range(4)]
    no_control = parse_manifest(lora(adapters={k: v for k, v in lora()["adapters"].items() if k != "0x0"}), "x")
    assert isinstance(no_control, LoraManifest) and no_control.slot_files()[0] is None


def test_thousands_of_owners_compositional_but_not_exact() -> None:
    owners = [f"owner-{i:05d}" for i in range(MAX_OWNERS)]
    manifest = parse_manifest(composed(owners), "x")
    assert isinstance(manifest, LoraManifest) and len(manifest.slot_files()) == MAX_OWNERS + 1
    with pytest.raises(ConfigurationError, match="at most 10000"):
        parse_manifest({**composed(owners), "owners": [*owners, "one-more"]}, "x")
    with pytest.raises(ConfigurationError, match="too many"):
        parse_manifest(lora(owners=owners[:13], adapters={}), "x")


@pytest.mark.parametrize(("changes", "message"), [
    ({"owners": ["a", "b", "a"]}, "owner 'a' appears twice"),
    ({"owners": ["a", "b", "c"]}, r"missing for owners \['c'\]"),
    ({"owners": ["a", "_base"]}, "owner id '_base'"),
    ({"owners": ["a", "../x"]}, "owner id '../x'"),
    ({"adapters": {"0x1": {"file": "a", "sha256": DIGEST}}}, "adapters must be empty"),
])
def test_bad_compositional_manifests_name_the_owner(changes: dict, message: str) -> None:  # type: ignore[type-arg]
    doc = composed(["a", "b"])
    with pytest.raises(ConfigurationError, match=message):
        parse_manifest({**doc, **changes, "data_sizes": {"_base": 1, "a": 1, "b": 1, "c": 1}}, "x")


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
    ({"clusters": [["a"]]}, "partition"),
    ({"clusters": [["a", "b"], ["b"]]}, "partition"),
    ({"clusters": [["a", "b"], []]}, "partition"),
    ({"clusters": [["a", "b"]], "cluster_data_sizes": [3, 4]}, "one positive image count per cluster"),
    ({"cluster_data_sizes": [3]}, "needs clusters"),
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


def test_lora_clusters_are_typed_and_optional() -> None:
    m = parse_manifest(lora(clusters=[["b", "a"]], cluster_data_sizes=[7],
                            cluster_evidence=[{"owners": ["a", "b"], "reasons": ["near_copies"], "merged": True}]), "x")
    assert m.clusters == [["b", "a"]] and m.cluster_data_sizes == [7] and m.cluster_evidence
    assert parse_manifest(lora(), "x").clusters is None


def test_cluster_components_follow_the_owners_slots_in_compositional_mode_only() -> None:
    from royalflow.attribution.families.manifest import cluster_component_file

    entry = {"file": cluster_component_file(1), "sha256": DIGEST}
    m = parse_manifest(composed(["a", "b", "c"], clusters=[["a"], ["b", "c"]], cluster_components=[None, entry]), "x")
    assert isinstance(m, LoraManifest)
    assert [s.file if s else None for s in m.slot_files()] == [*[component_file(i) for i in range(4)],
                                                               "components/clusters/00001.safetensors"]
    for changes, message in [({"clusters": [["a"], ["b", "c"]], "cluster_components": [entry]}, "one entry per cluster"),
                             ({"cluster_components": [entry]}, "one entry per cluster"),
                             ({"clusters": [["a"], ["b", "c"]], "cluster_components": [entry, None]}, "single-owner")]:
        with pytest.raises(ConfigurationError, match=message):
            parse_manifest(composed(["a", "b", "c"], **changes), "x")
    with pytest.raises(ConfigurationError, match="compositional mode only"):
        parse_manifest(lora(clusters=[["a", "b"]], cluster_components=[entry]), "x")
