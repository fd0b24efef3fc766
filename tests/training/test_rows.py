"""A coalition's training rows in canonical order (``training/rows.py``): equal data are equal
rows whoever holds them, so shells of one owner train that owner's adapter bit for bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from royalflow.training.images import ImageSet
from royalflow.training.rows import RowTable, build_rows, row_key


@pytest.fixture(scope="module")
def base_and_owners(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from royalflow.attribution.families.base import load_base
    from royalflow.training.images import read_image_folders
    from royalflow.training.styles import write_folders
    from royalflow.training.tiny import RESOLUTION, build_tiny_pipeline

    root = tmp_path_factory.mktemp("rows")
    build_tiny_pipeline(root / "base")
    base = load_base(root / "base", device=torch.device("cpu"))
    _, owners = read_image_folders(write_folders(root / "images", per_owner=6, public=2), RESOLUTION)
    return base, owners


def _part(images: ImageSet, part: slice) -> ImageSet:
    return ImageSet(images.pixels[part], images.captions[part], images.files[part])


def _split(owners: dict[str, ImageSet], how: str) -> dict[str, ImageSet]:
    """owner-red's data over two shells: every other image each (disjoint) or all of it each."""
    red = owners["owner-red"]
    parts = [slice(0, None, 2), slice(1, None, 2)] if how == "disjoint" else [slice(None), slice(None)]
    return {"shell-1": _part(red, parts[0]), "shell-2": _part(red, parts[1]), "owner-blue": owners["owner-blue"]}


def test_row_keys_tell_pixels_captions_and_layouts_apart() -> None:
    pixels = np.zeros((4, 4, 3), dtype=np.uint8)
    assert row_key(pixels, "a") == row_key(pixels.copy(), "a")
    assert row_key(pixels, "a") != row_key(pixels, "b")
    other = pixels.copy()
    other[0, 0, 0] = 1
    assert row_key(pixels, "a") != row_key(other, "a")
    assert row_key(pixels, "a") != row_key(pixels.reshape(2, 8, 3), "a")


@pytest.mark.parametrize("how", ["disjoint", "duplicated"])
def test_shells_union_is_the_owners_rows(base_and_owners, how: str) -> None:  # type: ignore[no-untyped-def]
    base, owners = base_and_owners
    honest = build_rows(base, {o: owners[o] for o in ("owner-red", "owner-blue")})
    attacked = build_rows(base, _split(owners, how))
    for a, b in [(honest.coalition(["owner-red"]), attacked.coalition(["shell-1", "shell-2"])),
                 (honest.coalition(["owner-red", "owner-blue"]), attacked.coalition(["shell-1", "shell-2", "owner-blue"]))]:
        assert torch.equal(a.latents, b.latents) and torch.equal(a.text, b.text)
    # An owner's own rows do not depend on who else is in the family (each image encoded alone).
    alone = build_rows(base, {"owner-blue": owners["owner-blue"]})
    assert torch.equal(alone.coalition(["owner-blue"]).latents, honest.coalition(["owner-blue"]).latents)


def test_exact_copies_count_once_and_empty_coalitions_are_refused(base_and_owners) -> None:  # type: ignore[no-untyped-def]
    base, owners = base_and_owners
    table: RowTable = build_rows(base, _split(owners, "duplicated"))
    assert len(table.coalition(["shell-1", "shell-2"]).latents) == len(owners["owner-red"])
    # Chosen pictures: shell-1's first two and shell-2's copy of the first: two rows.
    chosen = table.pictures({"shell-1": [0, 1], "shell-2": [0]})
    assert torch.equal(chosen.latents, table.pictures({"shell-1": [0, 1]}).latents) and len(chosen.latents) == 2
    with pytest.raises(ValueError, match="at least one owner with a picture"):
        table.coalition([])


def test_shells_train_the_owners_adapter_bit_for_bit(base_and_owners) -> None:  # type: ignore[no-untyped-def]
    """What the split defence relies on: the cluster's adapter is the honest owner's adapter."""
    from royalflow.training.lora import LoraPlan, train_adapter

    base, owners = base_and_owners
    empty = base.encode_prompts([""]).float()[0]
    plan = LoraPlan(steps=3, batch=4)
    honest = build_rows(base, {o: owners[o] for o in ("owner-red", "owner-blue")})
    attacked = build_rows(base, _split(owners, "disjoint"))
    first = train_adapter(base, honest.coalition(["owner-red"]), None, empty, "honest", plan, public_mix=0.0)
    second = train_adapter(base, attacked.coalition(["shell-1", "shell-2"]), None, empty, "shells", plan, public_mix=0.0)
    assert first.keys() == second.keys() and len(first) > 0
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_the_owner_order_stays_available(tmp_path: Path, base_and_owners) -> None:  # type: ignore[no-untyped-def]
    from royalflow.errors import ConfigurationError
    from royalflow.training.lora import LoraPlan, coalition_rows, train_lora_family

    base, owners = base_and_owners
    rows, pictures = coalition_rows(base, owners, ["owner-blue", "owner-red"], "owners")
    old = rows(["owner-blue", "owner-red"])
    assert len(old.latents) == len(owners["owner-blue"]) + len(owners["owner-red"]) and pictures is None
    with pytest.raises(ConfigurationError, match="data_order"):
        train_lora_family(tmp_path, "f", "1", tmp_path, owners["owner-blue"], owners, resolution=32,
                          plan=LoraPlan(data_order="shuffled"))
