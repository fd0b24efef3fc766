"""The arithmetic of the LoRA quality harness (shares, holder rates, agreement, identical-owner
gap, split gain) on hand-made attributions, and the variant image folders. No training: the
measured figures come from ``python benchmarks/lora_quality.py``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from royalflow.attribution.family import Attribution
from royalflow.training.lora_quality import (
    Generation, agreement, by_kind, holder_stats, identical_gap, ratio, shares, split_gain, write_variant,
)

OWNERS = ("owner-blue", "owner-green", "owner-red")


def attribution(values: list[float], owners: tuple[str, ...] = OWNERS) -> Attribution:
    return Attribution(owners=owners, shapley_values=np.array(values, dtype=float), std_errors=np.zeros(len(values)),
                       method="exact", mode="exact", coalition_utilities={})


def test_shares_clip_negative_values_and_normalise() -> None:
    assert shares(attribution([3.0, -1.0, 1.0])) == pytest.approx([0.75, 0.0, 0.25])
    assert shares(attribution([-1.0, -2.0, 0.0])) == pytest.approx([0.0, 0.0, 0.0])  # nothing positive: nobody paid


def test_holder_stats_per_kind_and_ties_miss() -> None:
    table = np.stack([shares(attribution(v)) for v in ([1, 0, 3], [2, 2, 0], [0, 1, 1], [0, 0, 5])])
    items = [Generation("owner-red", "drawing", np.zeros((1, 1, 3), np.uint8), f"e{i}") for i in range(4)]
    items[1] = Generation("owner-blue", "edit", items[1].pixels, "e1")  # tied with green: a miss
    stats = by_kind(table, OWNERS, items)
    assert stats["all"] == {"items": 4, "top1": 0.5, "share": pytest.approx((0.75 + 0.5 + 0.5 + 1.0) / 4)}
    assert stats["edit"] == {"items": 1, "top1": 0.0, "share": 0.5}
    assert stats["drawing"]["top1"] == pytest.approx(2 / 3)  # [0, 1, 1]: red tied with green
    assert math.isnan(holder_stats(table[:0], OWNERS, [])["top1"])


def test_agreement_and_identical_owner_gap() -> None:
    a = np.array([[0.1, 0.2, 0.7], [0.6, 0.3, 0.1]])
    b = np.array([[0.0, 0.4, 0.6], [0.2, 0.7, 0.1]])
    assert agreement(a, b) == 0.5
    twins = ("owner-blue", "owner-red", "owner-twin")
    table = np.stack([shares(attribution(v, twins)) for v in ([0, 1, 1], [0, 3, 1], [2, 1, 1])])
    assert identical_gap(table, twins, "owner-red", "owner-twin") == {"mean": pytest.approx(0.5 / 3), "max": 0.5}


def test_split_gain_is_a_ratio_of_mean_shares() -> None:
    honest = np.array([[0.2, 0.2, 0.6], [0.0, 0.6, 0.4]])  # owner-red: mean 0.5
    shells = ("owner-blue", "owner-green", "owner-red-shell1", "owner-red-shell2")
    attacked = np.array([[0.1, 0.1, 0.4, 0.4], [0.0, 0.4, 0.3, 0.3]])  # shells together: mean 0.7
    got = split_gain(honest, OWNERS, attacked, shells, "owner-red", shells[2:])
    assert got == {"gain": pytest.approx(1.4), "shells_share": pytest.approx(0.7), "honest_share": pytest.approx(0.5)}
    assert ratio(0.0, 0.0) == 1.0 and ratio(0.1, 0.0) == math.inf


def test_variant_folders_split_an_owner_and_keep_captions_consistent(tmp_path: Path) -> None:
    from royalflow.training.images import read_image_folders
    from royalflow.training.styles import write_folders

    source = write_folders(tmp_path / "images", per_owner=4, public=3)
    target = write_variant(source, tmp_path / "variant", {"a": ("owner-red", slice(None, 2)), "b": ("owner-red", slice(2, None)),
                                                         "twin": ("owner-red", slice(None))})
    public, owners = read_image_folders(target, 32)
    assert len(public) == 3 and sorted(owners) == ["a", "b", "twin"]
    assert [len(owners[o]) for o in ("a", "b", "twin")] == [2, 2, 4]
    assert np.array_equal(np.concatenate([owners["a"].pixels, owners["b"].pixels]), owners["twin"].pixels)
    rows = [json.loads(line) for line in (target / "b" / "metadata.jsonl").read_text().splitlines()]
    assert [r["file_name"] for r in rows] == ["0002.png", "0003.png"] and {r["text"] for r in rows} == {"a red circle"}
