"""Training families into the on-disk registry: manifest, checksums, resumability, data-seeded
determinism (identical data -> identical models), folder corpora."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from royalflow.attribution.families.digits import weight_file
from royalflow.training.digits import Dataset, TrainingPlan, digits_corpus, folder_corpus, train_family

PLAN = TrainingPlan(steps_base=3, steps_finetune=2, batch=8, samples=4)


def dataset(seed: int, label: int, count: int = 12) -> Dataset:
    rng = np.random.default_rng(seed)
    return Dataset(rng.integers(0, 17, (count, 8, 8)), np.full(count, label, dtype=np.int64))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("families")
    owners = {"alice": dataset(1, 0), "bob": dataset(1, 0), "carol": dataset(2, 1)}  # alice and bob: same data
    path = train_family(root, "tiny", "1", dataset(0, 10), owners, mode="exact", plan=PLAN, device="cpu", progress=False)
    return root, path


def test_manifest_records_everything_needed_to_serve_and_audit(trained) -> None:  # type: ignore[no-untyped-def]
    _, path = trained
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["kind"] == "diffusion" and manifest["mode"] == "exact"
    assert manifest["owners"] == ["alice", "bob", "carol"]
    assert manifest["pool_fraction"] == "3/10"
    assert manifest["data_sizes"] == {"_base": 12, "alice": 12, "bob": 12, "carol": 12}
    assert manifest["estimator"]["samples"] == 4
    assert len(manifest["estimator"]["timestep_proposal"]) == manifest["scheduler"]["num_train_timesteps"] - 1
    # alice and bob hold the same data: one cluster, so exact mode needs only the 2^2 unions of
    # clusters (plus the single-owner models the evidence is read from).
    assert manifest["clusters"] == [["alice", "bob"], ["carol"]]
    assert sorted(manifest["weights"]) == sorted(hex(m) for m in (0, 1, 2, 3, 4, 7))
    assert set(manifest["training"]["data_digests"]) == {"_base", "alice", "bob", "carol"}
    assert manifest["training"]["fairness"] == TrainingPlan().fairness()
    assert manifest["training"]["fairness"]["control"] == "random_labels"
    assert manifest["null_class"] == manifest["unet"]["num_class_embeds"] - 1
    assert (path / "base.safetensors").is_file()
    for m in (0, 1, 2, 3, 4, 7):
        assert (path / weight_file(m)).is_file()


def test_owners_with_identical_data_get_identical_models(trained) -> None:  # type: ignore[no-untyped-def]
    _, path = trained
    weights = json.loads((path / "manifest.json").read_text())["weights"]
    assert weights["0x1"] == weights["0x2"]  # {alice} and {bob}
    assert weights["0x3"] == weights["0x1"]  # {alice, bob}: duplicates dropped, the same data
    assert weights["0x1"] != weights["0x4"]
    assert weights["0x0"] != weights["0x1"]  # the control saw no owner's data


def test_rerun_resumes_and_reproduces_bit_for_bit(trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, path = trained
    before = json.loads((path / "manifest.json").read_text())["weights"]
    # A finished rerun trains nothing: files stay untouched.
    stamps = {m: (path / weight_file(m)).stat().st_mtime_ns for m in (0, 1, 2, 3, 4, 7)}
    owners = {"alice": dataset(1, 0), "bob": dataset(1, 0), "carol": dataset(2, 1)}
    train_family(root, "tiny", "1", dataset(0, 10), owners, mode="exact", plan=PLAN, device="cpu", progress=False)
    assert {m: (path / weight_file(m)).stat().st_mtime_ns for m in (0, 1, 2, 3, 4, 7)} == stamps
    # Interrupted after some models, without a cache: the rerun trains the rest to the same bytes.
    again = train_family(tmp_path, "tiny", "1", dataset(0, 10), owners, mode="exact", plan=PLAN, device="cpu",
                         progress=False, cache_dir=tmp_path / "cache-1")
    for m in (3, 4, 7):
        (again / weight_file(m)).unlink()
    (again / "manifest.json").unlink()
    train_family(tmp_path, "tiny", "1", dataset(0, 10), owners, mode="exact", plan=PLAN, device="cpu",
                 progress=False, cache_dir=tmp_path / "cache-2")
    assert json.loads((again / "manifest.json").read_text())["weights"] == before


def test_compositional_family_has_base_plus_one_model_per_owner(tmp_path: Path) -> None:
    owners = {"alice": dataset(1, 0), "carol": dataset(2, 1)}
    path = train_family(tmp_path, "tiny-comp", "1", dataset(0, 10), owners, mode="compositional", plan=PLAN,
                        device="cpu", progress=False)
    assert sorted(json.loads((path / "manifest.json").read_text())["weights"]) == ["0x0", "0x1", "0x2"]
    with pytest.raises(ValueError):
        train_family(tmp_path, "bad", "1", dataset(0, 10), owners, mode="both", plan=PLAN, progress=False)


def test_folder_corpus_reads_owner_folders(tmp_path: Path) -> None:
    from PIL import Image

    for owner, label in (("alice", 3), ("bob", 7)):
        (tmp_path / owner / str(label)).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((8, 8), 16 * i, np.uint8)).save(tmp_path / owner / str(label) / f"{i}.png")
    (tmp_path / "_public").mkdir()
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "_public" / "p.png")  # resized to 8x8
    public, owners = folder_corpus(tmp_path)
    assert sorted(owners) == ["alice", "bob"]
    assert owners["bob"].labels.tolist() == [7, 7] and owners["alice"].images.shape == (2, 8, 8)
    assert public.images.shape == (1, 8, 8)


def test_demo_corpus_gives_each_owner_only_its_classes() -> None:
    public, owners = digits_corpus({"owner-a": (0, 1, 2), "owner-d": (8, 9)})
    assert set(owners["owner-a"].labels.tolist()) == {0, 1, 2}
    assert set(owners["owner-d"].labels.tolist()) == {8, 9}
    assert set(public.labels.tolist()) == {10}  # the base model never sees a class label
    assert owners["owner-a"].images.max() <= 16


def test_split_and_reordered_data_train_the_same_model(tmp_path: Path) -> None:
    """Canonical unions: a coalition of two shells holding halves of one owner's data trains
    exactly that owner's model (the cluster is valued as the honest owner)."""
    whole = dataset(3, 2, count=16)
    halves = {"s1": Dataset(whole.images[::2], whole.labels[::2]), "s2": Dataset(whole.images[1::2], whole.labels[1::2])}
    honest = train_family(tmp_path, "honest", "1", dataset(0, 10), {"o": whole}, plan=PLAN, device="cpu",
                          progress=False, cache_dir=tmp_path / "cache")
    split = train_family(tmp_path, "split", "1", dataset(0, 10), halves, plan=PLAN, device="cpu", progress=False,
                         cache_dir=tmp_path / "cache", clusters=False)
    assert json.loads((split / "manifest.json").read_text())["weights"]["0x3"] == \
        json.loads((honest / "manifest.json").read_text())["weights"]["0x1"]


def test_plan_can_restore_the_pre_v2_control(tmp_path: Path) -> None:
    """control='base': v(∅) is the base itself (the ablation's starting point)."""
    plan = TrainingPlan(steps_base=3, steps_finetune=2, batch=8, samples=4, control="base", null_dropout=0.0,
                        public_mix=0.0, start="base")
    path = train_family(tmp_path, "old", "1", dataset(0, 10), {"o": dataset(1, 0)}, plan=plan, device="cpu",
                        progress=False)
    assert (path / weight_file(0)).read_bytes() == (path / "base.safetensors").read_bytes()


def test_public_mix_and_start_from_control_are_recorded(tmp_path: Path) -> None:
    """The ablation's other arms still train, and the manifest says which rule made them."""
    plan = TrainingPlan(steps_base=3, steps_finetune=2, batch=8, samples=4, public_mix=0.25, start="control")
    path = train_family(tmp_path, "mix", "1", dataset(0, 10), {"o": dataset(1, 0)}, plan=plan, device="cpu",
                        progress=False)
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["training"]["fairness"] == {"control": "random_labels", "null_dropout": 0.15, "public_mix": 0.25,
                                                "start": "control"}
    assert set(manifest["training"]["seconds"]) >= {"base", "control", "coalition_models", "cluster_evidence"}
