"""A compositional family's cluster components (``training/cluster_components.py``): one owner's
duplicated shells get the owner's own component, bit for bit, and so the owner's shares."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from royalflow.attribution.families.lora import LoraFamily


def test_a_cluster_component_stands_in_for_each_member() -> None:
    samples = torch.arange(6 * 2 * 3, dtype=torch.float64).reshape(6, 2, 3)  # control, 4 owners, 1 cluster
    family = SimpleNamespace(masks=[0, 1, 2, 4, 8], cluster_slots=[([1, 3], 5)])
    out = LoraFamily.components(family, samples)  # type: ignore[arg-type]
    assert out.shape == (5, 2, 3)
    assert torch.equal(out[[0, 1, 3]], samples[[0, 1, 3]])
    assert torch.equal(out[2], samples[5]) and torch.equal(out[4], samples[5])


@pytest.fixture(scope="module")
def families(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from royalflow.attribution.families import load_family
    from royalflow.attribution.registry import read_manifest
    from royalflow.training.images import read_image_folders
    from royalflow.training.lora import LoraPlan, train_lora_family
    from royalflow.training.styles import write_folders
    from royalflow.training.tiny import RESOLUTION, build_tiny_pipeline

    root = tmp_path_factory.mktemp("cluster-components")
    build_tiny_pipeline(root / "base")
    public, owners = read_image_folders(write_folders(root / "images", per_owner=4, public=4), RESOLUTION)
    red, blue = owners["owner-red"], owners["owner-blue"]
    plan = LoraPlan(steps=2, batch=4)
    common = {"mode": "compositional", "resolution": RESOLUTION, "plan": plan, "device": "cpu", "show_progress": False}
    honest = train_lora_family(root / "families", "honest", "1", root / "base", public,
                               {"owner-red": red, "owner-blue": blue}, clusters=False, **common)
    shells = train_lora_family(root / "families", "shells", "1", root / "base", public,
                               {"owner-red-1": red, "owner-red-2": red, "owner-blue": blue}, **common)
    near = train_lora_family(root / "families", "near", "1", root / "base", public,
                             {"owner-red-1": red, "owner-red-2": near_copies(red), "owner-blue": blue}, **common)
    exact = {**common, "mode": "exact"}
    honest_exact = train_lora_family(root / "families", "honest-exact", "1", root / "base", public,
                                     {"owner-red": red, "owner-blue": blue}, clusters=False, **exact)
    near_exact = train_lora_family(root / "families", "near-exact", "1", root / "base", public,
                                   {"owner-red-1": red, "owner-red-2": near_copies(red), "owner-blue": blue}, **exact)
    return {name: (path, read_manifest(path), load_family(read_manifest(path), path, "cpu"))
            for name, path in (("honest", honest), ("shells", shells), ("near", near), ("honest-exact", honest_exact),
                               ("near-exact", near_exact))}


def near_copies(images):  # type: ignore[no-untyped-def]
    """Re-encoded, resized, cropped and noised copies (the split harness's near-copy attack)."""
    from PIL import Image

    from royalflow.training.images import ImageSet
    from royalflow.training.lora_splits import near_copy

    rng = np.random.default_rng(7)
    pixels = np.stack([np.asarray(near_copy(Image.fromarray(p), rng)) for p in images.pixels])
    return ImageSet(pixels, images.captions, images.files)


def test_duplicated_shells_get_the_owners_component_and_shares(families) -> None:  # type: ignore[no-untyped-def]
    from royalflow.attribution.families.content import png
    from royalflow.producer.events import generation_event

    (honest_path, honest_manifest, honest), (shells_path, manifest, shells) = families["honest"], families["shells"]
    assert manifest["clusters"] == [["owner-blue"], ["owner-red-1", "owner-red-2"]]
    assert manifest["cluster_components"][0] is None and manifest["cluster_data_sizes"][1] == 4
    mine = load_file(str(shells_path / manifest["cluster_components"][1]["file"]))
    owners = load_file(str(honest_path / honest_manifest["components"]["owner-red"]["file"]))
    assert mine.keys() == owners.keys() and all(torch.equal(mine[k], owners[k]) for k in mine)
    assert honest.mode == shells.mode == "compositional"
    pixels = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)

    def shares(family: LoraFamily) -> dict[str, float]:
        event = generation_event(event_id="split-1", family_id=family.family_id, family_version=family.version,
                                 revenue_amount=1000, currency="USD", content=png(pixels), prompt="a red circle")
        (a,) = family.attribute([family.prepare(event)], path="full")
        total = float(np.sum(a.shapley_values))
        return {o: float(v) / total for o, v in zip(a.owners, a.shapley_values)}

    before, after = shares(honest), shares(shells)
    assert after["owner-red-1"] + after["owner-red-2"] == pytest.approx(before["owner-red"], abs=1e-9)
    assert after["owner-blue"] == pytest.approx(before["owner-blue"], abs=1e-9)
    assert after["owner-red-1"] == pytest.approx(after["owner-red-2"], abs=1e-12)  # equal data sizes


def test_near_copy_shells_train_the_cluster_on_the_owners_pictures(families) -> None:  # type: ignore[no-untyped-def]
    """Shell 2 holds near-copies (different bytes): the copies are matched and kept once, so the
    cluster's component trains on owner-red's own pictures and equals its component."""
    (honest_path, honest_manifest, _), (near_path, manifest, _) = families["honest"], families["near"]
    assert manifest["clusters"] == [["owner-blue"], ["owner-red-1", "owner-red-2"]]
    assert manifest["cluster_data_sizes"][1] == 4  # 8 pictures, 4 of them copies
    mine = load_file(str(near_path / manifest["cluster_components"][1]["file"]))
    owners = load_file(str(honest_path / honest_manifest["components"]["owner-red"]["file"]))
    assert all(torch.equal(mine[k], owners[k]) for k in mine)


def test_near_copy_shells_coalitions_train_again_in_exact_mode(families) -> None:  # type: ignore[no-untyped-def]
    """Exact mode: every coalition holding both shells trains again on owner-red's pictures
    (copies once), and equals the honest family's coalition with owner-red, bit for bit."""
    (honest_path, honest_manifest, _), (near_path, manifest, _) = families["honest-exact"], families["near-exact"]
    assert manifest["clusters"] == [["owner-blue"], ["owner-red-1", "owner-red-2"]]
    # owners sorted: honest (blue 0x1, red 0x2); near (blue 0x1, red-1 0x2, red-2 0x4)
    for near_mask, honest_mask in (("0x6", "0x2"), ("0x7", "0x3")):
        mine = load_file(str(near_path / manifest["adapters"][near_mask]["file"]))
        owners = load_file(str(honest_path / honest_manifest["adapters"][honest_mask]["file"]))
        assert all(torch.equal(mine[k], owners[k]) for k in mine), near_mask


def test_merged_factors_hold_the_data_weighted_mean_update_exactly() -> None:
    from royalflow.training.cluster_components import merged_factors

    gen = torch.Generator().manual_seed(0)
    first = {"l": (torch.randn(4, 16, generator=gen), torch.randn(12, 4, generator=gen))}
    second = {"l": (torch.randn(4, 16, generator=gen), torch.randn(12, 4, generator=gen)),
              "m": (torch.randn(2, 8, generator=gen), torch.randn(8, 2, generator=gen))}
    merged = merged_factors([first, second], [10, 30])
    a, b = merged["l"]
    assert a.shape == (8, 16) and b.shape == (12, 8)  # stacked: rank 4 + 4, no approximation
    want = 0.25 * first["l"][1] @ first["l"][0] + 0.75 * second["l"][1] @ second["l"][0]
    assert torch.allclose(b @ a, want, atol=1e-5)
    a, b = merged["m"]  # a layer one member lacks: that member adds nothing there
    assert torch.allclose(b @ a, 0.75 * second["m"][1] @ second["m"][0], atol=1e-5)
    same = merged_factors([first, first], [5, 5])["l"]
    assert torch.allclose(same[1] @ same[0], first["l"][1] @ first["l"][0], atol=1e-5)  # duplicates: the adapter


def test_merged_factors_of_many_members_keep_a_bounded_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    import royalflow.training.cluster_components as cc

    monkeypatch.setattr(cc, "MERGED_RANK_FACTOR", 2)
    gen = torch.Generator().manual_seed(1)
    direction = torch.randn(4, 32, generator=gen)
    members = [{"l": (direction + 0.01 * torch.randn(4, 32, generator=gen), torch.randn(24, 4, generator=gen))}
               for _ in range(5)]
    a, b = cc.merged_factors(members, [1] * 5)["l"]
    assert a.shape == (8, 32)  # 5 x rank 4 = 20 > 2 x 4: the best rank-8 approximation
    want = sum(m["l"][1] @ m["l"][0] for m in members) / 5
    assert float((b @ a - want).norm() / want.norm()) < 0.05  # the members share one subspace
    with pytest.raises(ValueError, match="positive data size"):
        cc.merged_factors(members, [1, 1, 1, 1, 0])
