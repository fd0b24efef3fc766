"""Content decoding and quantisation.

Images are stored as 8-bit grayscale PNG; a family quantises them to ``levels`` intensity
levels (digits: 17, i.e. 0..16) and works in [-1, 1], where level k maps to -1 + 2k/(levels-1).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from royalflow.errors import ContractError


def decode_png(raw: bytes, *, size: int, levels: int) -> np.ndarray:
    """PNG bytes -> quantised level indices (size, size) int64; ContractError('bad_content')."""
    try:
        image = Image.open(io.BytesIO(raw))
        image.load()
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ContractError("bad_content", f"undecodable image: {exc}") from None
    if image.mode not in ("L", "1", "P"):
        raise ContractError("bad_content", f"expected 1 grayscale channel, got mode {image.mode} ({len(image.getbands())} channels)")
    if image.size != (size, size):
        raise ContractError("bad_content", f"expected a {size}x{size} image, got {image.size[0]}x{image.size[1]}")
    pixels = np.asarray(image.convert("L"), dtype=np.float64)
    return np.rint(pixels * (levels - 1) / 255.0).astype(np.int64)


def levels_to_unit(levels_img: np.ndarray, levels: int) -> np.ndarray:
    """Level indices -> float32 in [-1, 1]."""
    return (levels_img.astype(np.float32) / (levels - 1)) * 2.0 - 1.0


def unit_to_png(x: np.ndarray, levels: int) -> bytes:
    """[-1, 1] float image -> quantised 8-bit PNG bytes."""
    indices = np.clip(np.rint((x + 1.0) / 2.0 * (levels - 1)), 0, levels - 1)
    pixels = np.rint(indices * 255.0 / (levels - 1)).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()
