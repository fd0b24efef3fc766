"""The split-attack harness's arithmetic and data: shells' holdings, near-copies that the
duplicate evidence finds, gains on owner-red's and the others' items, false merges, and the
temporary players. No training: the figures come from ``benchmarks/lora_quality.py``."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from royalflow.training.fingerprints import fingerprints, matching, near_pairs
from royalflow.training.lora_splits import (
    false_merges, gains, holdings, make_near, near_copy, playing, shell_names, spread,
)
from royalflow.training.styles import owner_image


def test_holdings_per_attack() -> None:
    assert shell_names(3) == ("owner-red-shell1", "owner-red-shell2", "owner-red-shell3")
    disjoint = holdings(3, "disjoint")
    assert disjoint["owner-red-shell2"] == ("owner-red", slice(1, None, 3))
    assert disjoint["owner-blue"] == ("owner-blue", slice(None))
    assert holdings(2, "near")["owner-red-shell2"] == ("owner-red", slice(None))
    with pytest.raises(ValueError):
        holdings(1, "disjoint")
    with pytest.raises(ValueError):
        holdings(2, "flipped")


def test_near_copies_differ_in_bytes_and_are_found(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    originals = [owner_image("owner-green", rng) for _ in range(12)]
    for i, image in enumerate(originals):
        image.save(tmp_path / f"{i:02d}.png")
    make_near(tmp_path, 5)
    copies = [np.asarray(Image.open(tmp_path / f"{i:02d}.png").convert("RGB")) for i in range(12)]
    assert all(not np.array_equal(c, np.asarray(o)) for c, o in zip(copies, originals))
    owner_of = np.repeat([0, 1], 12)
    pairs = matching(*near_pairs(fingerprints(np.stack([*map(np.asarray, originals), *copies])), owner_of), owner_of)
    assert len(pairs) >= 10
    assert near_copy(originals[0], np.random.default_rng(1)).size == originals[0].size


def test_gains_on_own_and_other_items() -> None:
    items = [SimpleNamespace(owner=o) for o in ("owner-red", "owner-red", "owner-blue")]
    honest = np.array([[0.8, 0.2], [0.6, 0.4], [0.1, 0.9]])  # owners: red, blue
    attacked = np.array([[0.4, 0.4, 0.2], [0.3, 0.4, 0.3], [0.1, 0.1, 0.8]])  # shell1, shell2, blue
    got = gains(honest, ("owner-red", "owner-blue"), attacked, ("owner-red-shell1", "owner-red-shell2", "owner-blue"),
                items, shell_names(2))
    assert got["own"] == pytest.approx(0.75 / 0.7) and got["others"] == pytest.approx(2.0)


def test_false_merges_count_pairs_that_are_not_both_shells() -> None:
    shells = shell_names(2)
    assert false_merges([list(shells), ["owner-blue"]], shells) == 0
    assert false_merges([[*shells, "owner-blue"]], shells) == 2
    assert false_merges([["owner-blue", "owner-green"]], []) == 1
    assert spread([1.0, 0.5])["min"] == 0.5 and spread([1.0, 0.5])["per_seed"] == [1.0, 0.5]


def test_playing_swaps_the_players_and_restores_them() -> None:
    manifest = SimpleNamespace(data_sizes={"_base": 10, "a": 2, "b": 2})
    family = SimpleNamespace(owners=("a", "b"), manifest=manifest, players="before", log_weights="before")
    with playing(family, [["a", "b"]], [2]) as f:
        assert f.players.indices == [[0, 1]]
        assert np.exp(f.log_weights) == pytest.approx([10.0, 1.0, 1.0])  # the cluster weighs its 2 distinct
    assert family.players == "before" and family.log_weights == "before"
