"""Owners' image folders: the imagefolder layout, the resize/crop rule, and clear errors that
name the file (nothing is silently skipped)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from royalflow.attribution.families.content import fit_image
from royalflow.errors import ConfigurationError
from royalflow.training.images import read_image_folders


def _write(folder: Path, name: str, image: Image.Image, caption: str | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    image.save(folder / name)
    if caption is not None:
        with open(folder / "metadata.jsonl", "a") as handle:
            handle.write(json.dumps({"file_name": name, "text": caption}) + "\n")


def test_fit_resizes_the_shorter_side_and_crops_the_centre() -> None:
    # 64 x 32 (w x h): red left quarter, green centre half, blue right quarter.
    pixels = np.zeros((32, 64, 3), np.uint8)
    pixels[:, :16] = (255, 0, 0)
    pixels[:, 16:48] = (0, 255, 0)
    pixels[:, 48:] = (0, 0, 255)
    fitted = fit_image(Image.fromarray(pixels), 16)  # -> 32 x 16, centre 16 x 16 = the green half
    assert fitted.shape == (16, 16, 3)
    assert np.all(fitted[:, 2:-2, 1] > 200) and np.all(fitted[:, 2:-2, 0] < 30)
    gray = fit_image(Image.new("L", (20, 40), 77), 10)  # grayscale -> RGB, tall image
    assert gray.shape == (10, 10, 3) and np.all(gray == 77)
    rgba = fit_image(Image.new("RGBA", (8, 8), (10, 20, 30, 0)), 8)  # alpha dropped, not composited
    assert np.all(rgba == (10, 20, 30))


def test_folders_read_owners_public_and_captions(tmp_path: Path) -> None:
    _write(tmp_path / "alice", "a.png", Image.new("RGB", (40, 30), (200, 0, 0)), "a red thing")
    _write(tmp_path / "alice", "b.jpg", Image.new("RGB", (30, 40), (0, 200, 0)), "a green thing")
    _write(tmp_path / "bob", "c.png", Image.new("RGB", (8, 8), (0, 0, 200)))  # no metadata: empty caption
    (tmp_path / "bob" / "notes.txt").write_text("not an image")
    _write(tmp_path / "_public", "p.png", Image.new("RGB", (16, 16)), "public")
    public, owners = read_image_folders(tmp_path, 16)
    assert sorted(owners) == ["alice", "bob"]
    assert owners["alice"].captions == ("a red thing", "a green thing")
    assert owners["alice"].pixels.shape == (2, 16, 16, 3)
    assert owners["bob"].captions == ("",)
    assert public.captions == ("public",)


def test_a_broken_image_is_an_error_naming_it(tmp_path: Path) -> None:
    _write(tmp_path / "alice", "a.png", Image.new("RGB", (8, 8)))
    (tmp_path / "alice" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(ConfigurationError, match="broken.png"):
        read_image_folders(tmp_path, 8)


def test_captions_must_match_the_images(tmp_path: Path) -> None:
    _write(tmp_path / "alice", "a.png", Image.new("RGB", (8, 8)), "one")
    _write(tmp_path / "alice", "b.png", Image.new("RGB", (8, 8)))  # captioned nowhere
    with pytest.raises(ConfigurationError, match="no caption for .*b.png"):
        read_image_folders(tmp_path, 8)
    (tmp_path / "alice" / "metadata.jsonl").write_text('{"file_name": "a.png", "text": "x"}\n{"file_name": "b.png"\n')
    with pytest.raises(ConfigurationError, match="metadata.jsonl line 2"):
        read_image_folders(tmp_path, 8)
    (tmp_path / "alice" / "metadata.jsonl").write_text(
        '{"file_name": "a.png", "text": "x"}\n{"file_name": "b.png", "text": "y"}\n{"file_name": "gone.png", "text": "z"}\n')
    with pytest.raises(ConfigurationError, match="gone.png"):
        read_image_folders(tmp_path, 8)


def test_an_owner_folder_without_images_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty-owner").mkdir()
    with pytest.raises(ConfigurationError, match="empty-owner holds no"):
        read_image_folders(tmp_path, 8)
