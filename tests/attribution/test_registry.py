"""The versioned on-disk registry: families load once and stay resident, unknown pairs and
tampered weights are refused, manifests pick the implementation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from royalflow.attribution.families.digits import DiffusionFamily, weight_file
from royalflow.attribution.registry import DiskFamilyRegistry
from royalflow.errors import ConfigurationError, UnknownFamilyError
from royalflow.training.digits import Dataset, TrainingPlan, train_family


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("families")
    rng = np.random.default_rng(0)
    data = {o: Dataset(rng.integers(0, 17, (8, 8, 8)), np.full(8, i, np.int64)) for i, o in enumerate(["a", "b"])}
    public = Dataset(rng.integers(0, 17, (8, 8, 8)), np.full(8, 10, np.int64))
    train_family(root, "fam", "1", public, data, mode="compositional", device="cpu", progress=False,
                 plan=TrainingPlan(steps_base=2, steps_finetune=1, batch=4, samples=2))
    return root


def test_get_loads_once_and_keeps_the_family_resident(root: Path) -> None:
    registry = DiskFamilyRegistry(root, device="cpu")
    family = registry.get("fam", "1")
    assert isinstance(family, DiffusionFamily)
    assert registry.get("fam", "1") is family
    assert family.owners == ("a", "b") and family.mode == "compositional"
    assert all(p.device.type == "cpu" for m in family.models.values() for p in m.parameters())


def test_unknown_family_or_version_is_refused(root: Path) -> None:
    registry = DiskFamilyRegistry(root, device="cpu")
    for family_id, version in (("fam", "2"), ("nope", "1")):
        with pytest.raises(UnknownFamilyError) as caught:
            registry.get(family_id, version)
        assert caught.value.reason == "unknown_model_family"


@pytest.mark.parametrize(("family_id", "version"), [
    ("../../etc", "1"), ("BAD_ID", "1"), ("fam", ".."), ("fam", "a/b"), ("", "1"),
])
def test_ids_no_event_can_name_are_refused_before_any_path_is_built(root: Path, family_id: str,
                                                                       version: str) -> None:
    registry = DiskFamilyRegistry(root, device="cpu")
    with pytest.raises(ConfigurationError, match="must match"):
        registry.path(family_id, version)
    with pytest.raises(UnknownFamilyError):  # from an event: a dead letter, never a crash
        registry.get(family_id, version)


def test_tampered_weights_are_refused(root: Path, tmp_path: Path) -> None:
    import shutil

    shutil.copytree(root / "fam", tmp_path / "fam")
    with open(tmp_path / "fam" / "1" / weight_file(1), "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ConfigurationError, match="checksum"):
        DiskFamilyRegistry(tmp_path, device="cpu").get("fam", "1")


def test_list_and_categorical_dispatch(root: Path, tmp_path: Path) -> None:
    from royalflow.attribution.families.categorical import demo_manifest, write_manifest

    listed = DiskFamilyRegistry(root).list()
    assert [(f["family_id"], f["version"], f["kind"], f["mode"]) for f in listed] == [("fam", "1", "diffusion", "compositional")]
    manifest = demo_manifest()
    write_manifest(tmp_path, manifest)
    family = DiskFamilyRegistry(tmp_path).get(manifest["family_id"], str(manifest["version"]))
    assert type(family).__name__ == "CategoricalFamily"


def test_kinds_on_disk_are_what_an_agent_preloads(tmp_path: Path) -> None:
    import json

    from royalflow.attribution.agents import preload_kinds
    from royalflow.attribution.families import preload
    from royalflow.attribution.registry import kinds_on_disk
    from royalflow.config import Settings

    for family_id, kind in (("a", "diffusion"), ("b", "categorical"), ("c", "diffusion")):
        (tmp_path / family_id / "1").mkdir(parents=True)
        (tmp_path / family_id / "1" / "manifest.json").write_text(json.dumps({"kind": kind}))
    (tmp_path / "d" / "1").mkdir(parents=True)
    (tmp_path / "d" / "1" / "manifest.json").write_text("{not json")  # skipped: its load reports it
    assert kinds_on_disk(tmp_path) == ["categorical", "diffusion"]
    assert preload_kinds(Settings(families_dir=tmp_path)) == ["categorical", "diffusion"]
    assert preload_kinds(Settings(families_dir=tmp_path, attribution_preload="")) == []
    assert preload_kinds(Settings(families_dir=tmp_path, attribution_preload="lora, diffusion")) == ["lora", "diffusion"]
    assert preload(["categorical", "no-such-kind"]) == ["categorical"]
