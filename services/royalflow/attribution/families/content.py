"""RGB images for pretrained text-to-image families: one rule for training data and events.

The rule (documented in the README): convert to RGB (palette, grayscale and alpha images are
converted by PIL; alpha is dropped, not composited), resize so the SHORTER side equals the
family resolution R (bicubic), then crop the centre R x R (the offset rounds down). Pixels map
to [-1, 1] as 2 * value / 255 - 1, the range diffusers' VAEs are trained on.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from royalflow.attribution.diffusion.images import content_bytes
from royalflow.contracts.events import Content
from royalflow.errors import ContractError

MAX_IMAGE_PIXELS = 4096 * 4096  # bound on one decoded image (a PNG bomb is small on the wire)


def fit_image(image: Image.Image, resolution: int) -> np.ndarray:
    """PIL image -> (R, R, 3) uint8 by the rule above."""
    rgb = image.convert("RGB")
    width, height = rgb.size
    scale = resolution / min(width, height)
    new_size = (max(resolution, round(width * scale)), max(resolution, round(height * scale)))
    if new_size != rgb.size:
        rgb = rgb.resize(new_size, Image.Resampling.BICUBIC)
    left = (new_size[0] - resolution) // 2
    top = (new_size[1] - resolution) // 2
    return np.asarray(rgb.crop((left, top, left + resolution, top + resolution)), dtype=np.uint8)


def to_unit(pixels: np.ndarray) -> np.ndarray:
    """(..., R, R, 3) uint8 -> (..., 3, R, R) float32 in [-1, 1]."""
    return np.moveaxis(pixels.astype(np.float32) / 127.5 - 1.0, -1, -3)


def from_unit(x: np.ndarray) -> np.ndarray:
    """(3, R, R) float in [-1, 1] -> (R, R, 3) uint8."""
    return np.clip(np.rint((np.moveaxis(x, 0, -1) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def decode_rgb(content: Content, resolution: int) -> np.ndarray:
    """An event's content -> (R, R, 3) uint8; ContractError('bad_content') if unusable."""
    if content.media_type != "image/png":
        raise ContractError("bad_content", f"this family takes image/png content, got {content.media_type}")
    raw = content_bytes(content)
    try:
        with Image.open(io.BytesIO(raw)) as image:
            if image.size[0] * image.size[1] > MAX_IMAGE_PIXELS:
                raise ContractError("bad_content", f"image of {image.size[0]}x{image.size[1]} exceeds {MAX_IMAGE_PIXELS} pixels")
            image.load()
            return fit_image(image, resolution)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ContractError("bad_content", f"undecodable image: {exc}") from None
