"""Content decoding and quantisation.

Images travel as 8-bit grayscale PNG (``image/png``) or as a NumPy array (``application/x-npy``:
shape (H, W), (H, W, 1) or (1, H, W); integer dtypes are 8-bit intensities 0..255, float dtypes
intensities in [0, 1]). The bytes come inline (``data_base64``) or from a ``file://`` URI, and
must hash to ``content.sha256``. A family quantises images to ``levels`` intensity levels
(digits: 17, i.e. 0..16) and works in [-1, 1], where level k maps to -1 + 2k/(levels-1).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
from PIL import Image, UnidentifiedImageError

from royalflow.contracts.events import Content
from royalflow.errors import ContractError

MAX_CONTENT_BYTES = 4 * 2**20  # bound on one item's bytes: a tiny family never needs more


def content_bytes(content: Content) -> bytes:
    """The item's bytes, inline or from a ``file://`` URI, checked against ``content.sha256``."""
    if content.data_base64 is not None:
        if len(content.data_base64) > MAX_CONTENT_BYTES * 4 // 3 + 4:
            raise ContractError("bad_content", f"inline content exceeds {MAX_CONTENT_BYTES} bytes")
        try:
            raw = base64.b64decode(content.data_base64, validate=True)
        except (binascii.Error, ValueError):
            raise ContractError("bad_content", "content.data_base64 is not valid base64") from None
    else:
        uri = urlparse(content.uri or "")
        if uri.scheme != "file":
            raise ContractError("bad_content", f"content.uri must be inline or file://, got scheme {uri.scheme!r}")
        path = Path(unquote(uri.path))
        try:
            if path.stat().st_size > MAX_CONTENT_BYTES:
                raise ContractError("bad_content", f"{path} exceeds {MAX_CONTENT_BYTES} bytes")
            raw = path.read_bytes()
        except OSError as exc:
            raise ContractError("bad_content", f"cannot read content.uri: {exc.strerror or exc}") from None
    if hashlib.sha256(raw).hexdigest() != content.sha256:
        raise ContractError("bad_content", "content bytes do not match content.sha256")
    return raw


def decode_content(content: Content, *, size: int, levels: int) -> np.ndarray:
    """Checked bytes -> quantised level indices (size, size) int64; ContractError('bad_content')."""
    raw = content_bytes(content)
    if content.media_type == "image/png":
        return decode_png(raw, size=size, levels=levels)
    if content.media_type == "application/x-npy":
        return decode_npy(raw, size=size, levels=levels)
    raise ContractError("bad_content", f"unsupported media type {content.media_type}")


def decode_npy(raw: bytes, *, size: int, levels: int) -> np.ndarray:
    try:
        array = np.load(io.BytesIO(raw), allow_pickle=False)  # never unpickle untrusted bytes
    except (ValueError, OSError, EOFError) as exc:
        raise ContractError("bad_content", f"undecodable npy array: {exc}") from None
    if array.ndim == 3 and 1 in (array.shape[0], array.shape[-1]):
        channels_first = array.shape[0] == 1 and array.shape[-1] != 1
        array = array[0] if channels_first else array[..., 0]
    elif array.ndim == 3:
        raise ContractError("bad_content", f"expected 1 channel, got array of shape {array.shape}")
    if array.ndim != 2 or array.shape != (size, size):
        raise ContractError("bad_content", f"expected a {size}x{size} image, got array of shape {array.shape}")
    if np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_:
        intensity = array.astype(np.float64) / 255.0
    elif np.issubdtype(array.dtype, np.floating):
        intensity = array.astype(np.float64)
    else:
        raise ContractError("bad_content", f"unsupported npy dtype {array.dtype}")
    if not np.all(np.isfinite(intensity)) or intensity.min() < 0 or intensity.max() > 1:
        raise ContractError("bad_content", "npy intensities must be finite and within [0, 255] (int) or [0, 1] (float)")
    return np.rint(intensity * (levels - 1)).astype(np.int64)


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
