"""The photo quality harness (``training/photos.py``, ``training/photo_quality.py``): owners who
hold crops of different sample photographs, captions without owner information, held-out
crops that never share a pixel with training crops; and a small version of the issue #9 table
on it (the full one: ``python benchmarks/photo_quality.py``).

The small version trains a smaller base and shorter adapters than the benchmark (under 2.5
minutes of CPU), so its bars are loose: the style owner must beat chance (1/3) clearly."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from royalflow.training.photos import CAPTIONS, GRID, OWNER_PHOTOS, PUBLIC_PHOTOS, cells, held_out_crops, photo

SMALL = {"per_owner": 16, "public": 64, "pretrain": {"vae_steps": 150, "unet_steps": 400}, "plan": {"steps": 100}}
ITEMS_PER_OWNER = 4
# Measured with SMALL (24 items, 12 held-out crops and 12 edits): with the prompt 79% top-1
# (exact and compositional), without 71%; mean shares 0.66-0.73. Bars sit three to six misses
# under that, for other CPUs' float rounding in training.
TOP1_BAR = 0.55
SHARE_BAR = 0.5


def test_photographs_ship_with_the_packages() -> None:
    for name in [*OWNER_PHOTOS, *PUBLIC_PHOTOS]:
        pixels = photo(name)
        assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3
        assert min(pixels.shape[:2]) >= 128, name  # a cell is big enough for a 32-pixel crop
    with pytest.raises(ValueError, match="unknown photograph"):
        photo("nope")


def test_held_out_cells_never_touch_training_cells() -> None:
    held, train = set(cells(True)), set(cells(False))
    assert not held & train and len(held | train) == GRID * GRID
    assert {r for r, _ in held} == {c for _, c in held} == set(range(GRID))  # every row and column
    a, b = held_out_crops("owner-cat", 3), held_out_crops("owner-cat", 3)
    assert a.shape == (3, 32, 32, 3) and np.array_equal(a, b)  # seeded


def test_captions_carry_no_owner_information(tmp_path: Path) -> None:
    from royalflow.training.images import read_image_folders
    from royalflow.training.photos import write_photo_folders

    public, owners = read_image_folders(write_photo_folders(tmp_path, per_owner=12, public=12), 32)
    assert sorted(owners) == sorted(OWNER_PHOTOS) and len(public) == 12
    for images in [public, *owners.values()]:
        assert set(images.captions) <= set(CAPTIONS)
    rows = [json.loads(line) for line in (tmp_path / "_public" / "metadata.jsonl").read_text().splitlines()]
    assert len(rows) == 12


def test_a_working_folder_made_with_other_settings_is_refused(tmp_path: Path) -> None:
    """The harness reuses a folder's pictures and base; one made with other settings (or before
    they were recorded) would give another harness's figures, so it is refused by name."""
    from royalflow.training.photo_quality import BUILD, SETTINGS_FILE, build_photo_family

    other = tmp_path / "other"
    other.mkdir()
    (other / SETTINGS_FILE).write_text(json.dumps({**BUILD, "public": int(BUILD["public"]) * 2}))
    with pytest.raises(ValueError, match="was made with .*remove it or choose another working folder"):
        build_photo_family(other, "photos")
    old = tmp_path / "old"
    (old / "base").mkdir(parents=True)
    with pytest.raises(ValueError, match="unrecorded"):
        build_photo_family(old, "photos")
    assert not (old / SETTINGS_FILE).exists()
    with pytest.raises(ValueError, match="unknown photo harness settings"):
        build_photo_family(tmp_path / "typo", "photos", build={"publc": 64})


@pytest.fixture(scope="module")
def photo_figures(tmp_path_factory: pytest.TempPathFactory) -> dict:  # type: ignore[type-arg]
    import torch

    from royalflow.training.photo_quality import evaluate_photos

    os.environ["HF_HUB_OFFLINE"] = "1"  # nothing may reach a hub
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models on a shared host
    try:
        return evaluate_photos(tmp_path_factory.mktemp("photos"), per_owner=ITEMS_PER_OWNER, build=SMALL, twins=False,
                               log=lambda line: None)
    finally:
        torch.set_num_threads(threads)


def test_the_photo_owner_wins_its_held_out_crops_and_edits(photo_figures: dict) -> None:  # type: ignore[type-arg]
    q = photo_figures["quality"]
    assert photo_figures["generations"] == 2 * ITEMS_PER_OWNER * len(OWNER_PHOTOS)
    for table in ("exact", "compositional", "exact_content", "compositional_content"):
        assert q[table]["all"]["items"] == photo_figures["generations"]
        assert q[table]["held-out"]["items"] == q[table]["edit"]["items"] == ITEMS_PER_OWNER * len(OWNER_PHOTOS)
        assert q[table]["all"]["top1"] >= TOP1_BAR, (table, q[table])
        assert q[table]["all"]["share"] >= SHARE_BAR, (table, q[table])
    assert 0.0 <= photo_figures["agreement"]["conditioned"] <= 1.0


def test_the_split_defence_merges_no_honest_photo_owner(photo_figures: dict) -> None:  # type: ignore[type-arg]
    """The family trains with the defence on: three honest owners, so every merge is a false one
    (the probe-only rule merged owner-cat and owner-coffee; measured cross-fits 0.04-0.24)."""
    assert photo_figures["clusters"] == [[o] for o in photo_figures["owners"]]
    rows = photo_figures["cluster_evidence"]
    assert len(rows) == 3 and all(not r["merged"] and r["cross_fit"] < 0.5 for r in rows)
