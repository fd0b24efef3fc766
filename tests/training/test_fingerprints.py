"""Perceptual fingerprints: near-copies (re-encoded, resized, cropped, noisy) are found across
owners, pictures of other styles are not, and the duplicate fraction and distinct counts."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from royalflow.errors import ConfigurationError
from royalflow.training import fingerprints as fingerprints_module
from royalflow.training.fingerprints import (
    distinct_count, duplicate_fractions, fingerprints, matching, near_pairs, remainder_pairs, representatives,
)
from royalflow.training.styles import owner_image


def near_copy(image: Image.Image, rng: np.random.Generator) -> np.ndarray:
    """JPEG q75 of a resized (28 and back), 1-pixel-cropped, noisy (sigma 4) copy."""
    w, h = image.size
    x = image.resize((28, 28), Image.Resampling.BICUBIC).resize((w, h), Image.Resampling.BICUBIC)
    x = x.crop((1, 0, w, h - 1)).resize((w, h), Image.Resampling.BICUBIC)
    noisy = np.clip(np.asarray(x, float) + rng.normal(0, 4, (h, w, 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noisy).save(buffer, "JPEG", quality=75)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def pictures(owner: str, count: int, seed: int) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [owner_image(owner, rng) for _ in range(count)]


def test_near_copies_across_owners_are_found_and_counted_once() -> None:
    rng = np.random.default_rng(1)
    red = pictures("owner-red", 30, 0)
    originals = np.stack([np.asarray(p) for p in red])
    copies = np.stack([near_copy(p, rng) for p in red])
    owner_of = np.repeat([0, 1], 30)
    pairs = matching(*near_pairs(fingerprints(np.concatenate([originals, copies])), owner_of), owner_of)
    assert len({i for i, j in pairs.tolist() if j == 30 + i}) >= 27  # at least 90% of the copies found
    assert len(set(pairs[:, 0].tolist())) == len(pairs) == len(set(pairs[:, 1].tolist()))  # one-to-one
    fraction = duplicate_fractions(owner_of, pairs, 2)[(0, 1)]
    assert fraction >= 0.9
    assert 30 <= distinct_count([0, 1], owner_of, pairs) <= 33  # 60 pictures, 30 of them copies
    assert distinct_count([0], owner_of, pairs) == 30


def test_three_copies_count_once() -> None:
    red = np.stack([np.asarray(p) for p in pictures("owner-red", 12, 7)])
    owner_of = np.repeat([0, 1, 2], 12)
    pairs = matching(*near_pairs(fingerprints(np.concatenate([red, red, red])), owner_of), owner_of)
    assert distinct_count([0, 1, 2], owner_of, pairs) == 12


def _copied(owner: str, count: int, copies: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` pictures of ``owner`` and ``copies`` near-copied sets of them (own noise each)."""
    originals = pictures(owner, count, 3)
    sets = [np.stack([np.asarray(p) for p in originals])]
    for c in range(copies):
        rng = np.random.default_rng(10 + c)
        sets.append(np.stack([near_copy(p, rng) for p in originals]))
    return np.concatenate(sets), np.repeat(np.arange(copies + 1), count)


def _with_remainder(images: np.ndarray, owner_of: np.ndarray) -> np.ndarray:
    prints = fingerprints(images)
    matched = matching(*near_pairs(prints, owner_of), owner_of)
    owners = int(owner_of.max()) + 1
    more = [remainder_pairs(prints, owner_of, matched, a, b) for a in range(owners) for b in range(a + 1, owners)]
    return np.concatenate([matched, *more])


def test_the_remainder_finds_the_copies_the_hashes_missed() -> None:
    # Blue stripes: the hashes miss about a quarter of the near-copies (module docstring).
    images, owner_of = _copied("owner-blue", 30, 1)
    prints = fingerprints(images)
    matched = matching(*near_pairs(prints, owner_of), owner_of)
    assert distinct_count([0, 1], owner_of, matched) > 30  # the hashes alone leave copies in
    more = remainder_pairs(prints, owner_of, matched, 0, 1)
    assert more is not None and len(more) > 0
    pairs = np.concatenate([matched, more])
    assert sorted(pairs.tolist()) == [[i, 30 + i] for i in range(30)]  # each copy with its own original
    assert distinct_count([0, 1], owner_of, pairs) == 30
    assert distinct_count([0], owner_of, pairs) == 30


def test_three_sets_of_near_copies_count_once_with_the_remainder() -> None:
    images, owner_of = _copied("owner-blue", 16, 2)
    assert distinct_count([0, 1, 2], owner_of, _with_remainder(images, owner_of)) == 16


def test_a_look_alike_between_two_copies_does_not_chain_two_originals() -> None:
    """Shell 1 holds pictures 0-2, shells 2 and 3 a copy of each. One wrong match between the
    copies (copy of 0 ~ copy of 1) would put two originals in one group; a group holds one
    picture per owner, so every original stays. As measured (k = 3 near-copies): a copy lies
    closer to its original than to another shell's copy of it (both noisy), and a look-alike
    falls in between."""
    owner_of = np.repeat([0, 1, 2], 3)
    to_original = [(k, 3 + k) for k in range(3)] + [(k, 6 + k) for k in range(3)]
    between_copies = [(3 + k, 6 + k) for k in range(3)]
    pairs = np.array([(3, 7), *between_copies, *to_original])
    distances = np.array([3.0, *[4.0] * 3, *[2.0] * 6])
    assert representatives([0, 1, 2], owner_of, pairs, distances).tolist() == [0, 1, 2]
    assert distinct_count([0, 1, 2], owner_of, pairs[::-1]) == 3  # in the order given, the same


def test_the_remainder_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    images, owner_of = _copied("owner-blue", 30, 1)
    prints = fingerprints(images)
    matched = matching(*near_pairs(prints, owner_of), owner_of)
    monkeypatch.setattr(fingerprints_module, "MAX_REMAINDER_PAIRS", 1)
    assert remainder_pairs(prints, owner_of, matched, 0, 1) is None  # reported as not checked, never guessed


def test_other_styles_and_same_owner_pairs_are_not_near_copies() -> None:
    images = np.stack([np.asarray(p) for owner in ("owner-red", "owner-blue", "owner-green")
                       for p in pictures(owner, 40, 2)])
    owner_of = np.repeat([0, 1, 2], 40)
    assert len(near_pairs(fingerprints(images), owner_of)[0]) == 0
    assert len(near_pairs(fingerprints(images[:40]), np.zeros(40))[0]) == 0  # one group: nothing compared


def test_distinct_pictures_of_one_style_stay_below_the_merge_fraction() -> None:
    a, b = (np.stack([np.asarray(p) for p in pictures("owner-red", 24, seed)]) for seed in (3, 4))
    owner_of = np.repeat([0, 1], 24)
    pairs = matching(*near_pairs(fingerprints(np.concatenate([a, b])), owner_of), owner_of)
    assert duplicate_fractions(owner_of, pairs, 2).get((0, 1), 0.0) < 0.5


def test_fingerprints_refuse_other_shapes() -> None:
    with pytest.raises(ConfigurationError, match="uint8"):
        fingerprints(np.zeros((2, 8, 8), np.uint8))
    assert len(fingerprints(np.zeros((0, 32, 32, 3), np.uint8))) == 0
