"""Owners who hold natural photographs: crops of different sample photographs that ship inside
installed packages (scikit-image's ``skimage.data``, scikit-learn's ``load_sample_images``,
matplotlib's sample data), so nothing is downloaded. The data of the photo quality harness
(``photo_quality.py``), laid out as the image folders ``royalflow families train`` reads.

  * each owner holds crops of ONE photograph (``OWNER_PHOTOS``); the public images are crops of
    every other photograph (``PUBLIC_PHOTOS``), on which the base is pre-trained;
  * captions carry no owner information: every image, an owner's or a public one, gets a caption
    drawn at random from the same generic ``CAPTIONS``;
  * held-out pictures never share a pixel with training crops: each photograph is cut into a
    ``GRID`` x ``GRID`` grid of cells, training crops lie inside the cells off the diagonal and
    held-out crops inside the diagonal cells (one per row and column, so every part of the
    photograph is represented in both).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 32  # pixels: the tiny pipeline's resolution
GRID = 4
CAPTIONS = ("a photo", "a picture", "an image")  # the same for everyone: no owner information
MIN_CROP = 0.6  # a crop's side is 60-100% of its cell's shorter side


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        return np.asarray(getattr(skimage.data, name)())
    return load


def _sklearn(index: int) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_images

        return np.asarray(load_sample_images().images[index])
    return load


def _matplotlib(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from matplotlib import cbook

        with cbook.get_sample_data(name) as handle:
            return np.asarray(Image.open(handle).convert("RGB"))
    return load


OWNER_PHOTOS = {"owner-cat": _skimage("chelsea"), "owner-coffee": _skimage("coffee"), "owner-rocket": _skimage("rocket")}
PUBLIC_PHOTOS = {
    "astronaut": _skimage("astronaut"), "hubble": _skimage("hubble_deep_field"),
    "ihc": _skimage("immunohistochemistry"), "camera": _skimage("camera"), "brick": _skimage("brick"),
    "grass": _skimage("grass"), "gravel": _skimage("gravel"), "coins": _skimage("coins"), "moon": _skimage("moon"),
    "china": _sklearn(0), "flower": _sklearn(1), "hopper": _matplotlib("grace_hopper.jpg"),
}


@cache
def photo(name: str) -> np.ndarray:
    """(H, W, 3) uint8 of an owner's or a public photograph (grey ones as three equal channels)."""
    load = OWNER_PHOTOS.get(name) or PUBLIC_PHOTOS.get(name)
    if load is None:
        raise ValueError(f"unknown photograph {name!r}; known: {sorted(OWNER_PHOTOS) + sorted(PUBLIC_PHOTOS)}")
    pixels = load()
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[:, :, None], 3, axis=2)
    pixels = pixels[:, :, :3]
    if pixels.dtype != np.uint8:  # every listed photograph is uint8; refuse a silent rescale
        raise ValueError(f"photograph {name!r} is {pixels.dtype}, expected uint8")
    return pixels


def cells(held_out: bool) -> list[tuple[int, int]]:
    """(row, column) of the held-out cells (the diagonal) or of the training cells (the rest)."""
    return [(r, c) for r in range(GRID) for c in range(GRID) if (r == c) == held_out]


def crop(pixels: np.ndarray, rng: np.random.Generator, where: list[tuple[int, int]] | None) -> Image.Image:
    """A random square crop inside one random cell of ``where`` (None: anywhere), resized to SIZE."""
    height, width = pixels.shape[:2]
    if where is None:
        top, left, bottom, right = 0, 0, height, width
        side = int(min(height, width) * rng.uniform(0.15, 0.35))  # public: about a cell's size too
    else:
        r, c = where[int(rng.integers(len(where)))]
        top, bottom = r * height // GRID, (r + 1) * height // GRID
        left, right = c * width // GRID, (c + 1) * width // GRID
        side = int(min(bottom - top, right - left) * rng.uniform(MIN_CROP, 1.0))
    y = int(rng.integers(top, bottom - side + 1))
    x = int(rng.integers(left, right - side + 1))
    return Image.fromarray(pixels[y:y + side, x:x + side]).resize((SIZE, SIZE), Image.Resampling.LANCZOS)


def held_out_crops(owner: str, count: int, *, seed: int = 1000) -> np.ndarray:
    """(count, SIZE, SIZE, 3) uint8 crops of ``owner``'s photograph from the held-out cells."""
    rng = np.random.default_rng([seed, sorted(OWNER_PHOTOS).index(owner)])
    return np.stack([np.asarray(crop(photo(owner), rng, cells(True))) for _ in range(count)])


def caption(rng: np.random.Generator) -> str:
    return str(CAPTIONS[int(rng.integers(len(CAPTIONS)))])


def write_photo_folders(root: Path, *, per_owner: int, public: int, seed: int = 0) -> Path:
    """<root>/<owner>/*.png + metadata.jsonl for each owner (training cells of its photograph)
    and <root>/_public (crops of the public photographs, in turn)."""
    rng = np.random.default_rng(seed)
    names = sorted(PUBLIC_PHOTOS)
    groups: dict[str, list[tuple[Image.Image, str]]] = {
        owner: [(crop(photo(owner), rng, cells(False)), caption(rng)) for _ in range(per_owner)]
        for owner in sorted(OWNER_PHOTOS)}
    groups["_public"] = [(crop(photo(names[i % len(names)]), rng, None), caption(rng)) for i in range(public)]
    for folder_name, images in groups.items():
        folder = Path(root) / folder_name
        folder.mkdir(parents=True, exist_ok=True)
        rows = []
        for i, (image, text) in enumerate(images):
            image.save(folder / f"{i:04d}.png")
            rows.append({"file_name": f"{i:04d}.png", "text": text})
        (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return Path(root)
