"""Owners' image folders, the imagefolder convention:

    <folder>/<owner>/*.png|*.jpg|*.jpeg      one folder per owner (the folder name is the owner id)
    <folder>/<owner>/metadata.jsonl          {"file_name": "x.png", "text": "a caption"} per line
    <folder>/_public/...                     optional public data (the fair control's data)

Images are read as RGB and fitted to the family resolution by the rule of
``attribution/families/content.py`` (shorter side resized to R, bicubic, then the centre R x R
crop). Files with other extensions are not images and are not read. A ``metadata.jsonl`` must
caption every image exactly once; without one, every caption is empty. An image that does not
decode, a caption line that is not JSON, or a caption for a missing file is an error that names
the file: nothing is silently skipped (a skipped file is an owner's data that goes unpaid).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from royalflow.attribution.families.content import MAX_IMAGE_PIXELS, fit_image
from royalflow.errors import ConfigurationError

PUBLIC = "_public"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MAX_IMAGES_PER_OWNER = 100_000  # bound on what one folder loads into memory
MAX_CAPTION_CHARS = 4096


@dataclass(frozen=True)
class ImageSet:
    pixels: np.ndarray  # (N, R, R, 3) uint8
    captions: tuple[str, ...]
    files: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.captions)


def read_image(path: Path, resolution: int) -> np.ndarray:
    try:
        with Image.open(path) as image:
            if image.size[0] * image.size[1] > MAX_IMAGE_PIXELS:
                raise ConfigurationError(f"image {path} has more than {MAX_IMAGE_PIXELS} pixels")
            image.load()
            return fit_image(image, resolution)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ConfigurationError(f"image {path} cannot be read: {type(exc).__name__}: {exc}") from None


def read_captions(folder: Path, images: list[Path]) -> dict[str, str]:
    path = folder / "metadata.jsonl"
    if not path.is_file():
        return {p.name: "" for p in images}
    captions: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            name, text = row["file_name"], row["text"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ConfigurationError(f"{path} line {number}: expected {{\"file_name\", \"text\"}} JSON ({exc})") from None
        if not isinstance(name, str) or not isinstance(text, str) or len(text) > MAX_CAPTION_CHARS:
            raise ConfigurationError(f"{path} line {number}: file_name and text must be strings (text <= {MAX_CAPTION_CHARS} chars)")
        if name in captions:
            raise ConfigurationError(f"{path} line {number}: {name} is captioned twice")
        captions[name] = text
    names = {p.name for p in images}
    for name in captions:
        if name not in names:
            raise ConfigurationError(f"{path}: caption for {folder / name}, which is not an image in {folder}")
    for name in sorted(names - set(captions)):
        raise ConfigurationError(f"{path} has no caption for {folder / name}")
    return captions


def read_image_set(folder: Path, resolution: int) -> ImageSet:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if len(files) > MAX_IMAGES_PER_OWNER:
        raise ConfigurationError(f"{folder} holds {len(files)} images; at most {MAX_IMAGES_PER_OWNER}")
    captions = read_captions(folder, files)
    pixels = np.stack([read_image(p, resolution) for p in files]) if files else np.zeros((0, resolution, resolution, 3), np.uint8)
    return ImageSet(pixels, tuple(captions[p.name] for p in files), tuple(p.name for p in files))


def read_image_folders(root: Path, resolution: int) -> tuple[ImageSet, dict[str, ImageSet]]:
    """(public set, {owner: set}) from ``root``; an owner folder without images is an error."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigurationError(f"source folder {root} does not exist")
    owners: dict[str, ImageSet] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name != PUBLIC):
        images = read_image_set(folder, resolution)
        if not len(images):
            raise ConfigurationError(f"owner folder {folder} holds no .png/.jpg images")
        owners[folder.name] = images
    public = read_image_set(root / PUBLIC, resolution) if (root / PUBLIC).is_dir() else read_image_set_empty(resolution)
    return public, owners


def read_image_set_empty(resolution: int) -> ImageSet:
    return ImageSet(np.zeros((0, resolution, resolution, 3), np.uint8), (), ())
