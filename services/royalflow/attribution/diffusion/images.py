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
import os
import stat
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
from PIL import Image, UnidentifiedImageError

from royalflow.contracts.events import Content
from royalflow.errors import ConfigurationError, ContractError

MAX_CONTENT_BYTES = 4 * 2**20  # bound on one item's bytes: a tiny family never needs more
CONTENT_READ_TIMEOUT_SECONDS = 2.0  # bound on reading one file:// item (a slow or hung mount)
READ_CHUNK_BYTES = 256 * 1024

# The one detail for every file:// failure under a configured root: missing, unreadable, not a
# regular file, a symlink out of the root, too large, too slow, or bytes that do not hash to
# content.sha256. A producer must not learn from a dead letter whether some path exists.
URI_REFUSED = "content.uri is not readable content under the content root"
URI_DISABLED = "file:// content is disabled: the agent has no content root (ROYALFLOW_CONTENT_ROOT)"

# Where file:// content may come from; None (the default) refuses every file:// URI. Set once at
# start by the agent (``configure_content_root``) from Settings.content_root: one root per process.
_content_root: str | None = None


def configure_content_root(root: Path | str | None) -> None:
    """Serve ``file://`` content from under ``root`` only (None: refuse every ``file://`` URI).
    A root that is not a directory is a configuration error: it would refuse everything quietly."""
    global _content_root
    if root is not None and not os.path.isdir(root):
        raise ConfigurationError(f"ROYALFLOW_CONTENT_ROOT {str(root)!r} is not a directory")
    _content_root = os.path.realpath(root) if root is not None else None


def content_bytes(content: Content) -> bytes:
    """The item's bytes, inline or from a ``file://`` URI, checked against ``content.sha256``."""
    if content.data_base64 is not None:
        if len(content.data_base64) > MAX_CONTENT_BYTES * 4 // 3 + 4:
            raise ContractError("bad_content", f"inline content exceeds {MAX_CONTENT_BYTES} bytes")
        try:
            raw = base64.b64decode(content.data_base64, validate=True)
        except (binascii.Error, ValueError):
            raise ContractError("bad_content", "content.data_base64 is not valid base64") from None
        if hashlib.sha256(raw).hexdigest() != content.sha256:
            raise ContractError("bad_content", "content bytes do not match content.sha256")
        return raw
    uri = urlparse(content.uri or "")
    if uri.scheme != "file":
        raise ContractError("bad_content", f"content.uri must be inline or file://, got scheme {uri.scheme!r}")
    if _content_root is None:
        raise ContractError("bad_content", URI_DISABLED)
    if uri.netloc not in ("", "localhost"):
        raise ContractError("bad_content", "content.uri must name a local file (file:///path)")
    raw = read_under_root(unquote(uri.path), _content_root)
    if raw is None or hashlib.sha256(raw).hexdigest() != content.sha256:
        raise ContractError("bad_content", URI_REFUSED)
    return raw


def read_under_root(path: str, root: str, *, max_bytes: int = MAX_CONTENT_BYTES,
                    timeout_seconds: float = CONTENT_READ_TIMEOUT_SECONDS) -> bytes | None:
    """The bytes of the regular file ``path`` if it lies under ``root`` (both after resolving
    symlinks), is at most ``max_bytes`` and reads within ``timeout_seconds``; else None.

    Why each step: realpath + commonpath keeps symlinks and ``..`` inside the root; O_NOFOLLOW
    refuses a last component swapped for a symlink after the check; O_NONBLOCK makes opening a
    FIFO return at once instead of waiting for a writer; fstat on the open descriptor (not the
    path, which could change) refuses FIFOs, devices (/dev/zero) and directories, and oversized
    files before a byte is read; /proc/self/fd names what was actually opened."""
    if "\x00" in path or not os.path.isabs(path):
        return None
    real = os.path.realpath(path)
    if not _inside(real, root):
        return None
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError:
        return None
    try:
        opened = _opened_path(fd)
        if opened is not None and not _inside(opened, root):
            return None
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > max_bytes:
            return None
        return _read_bounded(fd, max_bytes, time.monotonic() + timeout_seconds)
    except OSError:
        return None
    finally:
        os.close(fd)


def _inside(path: str, root: str) -> bool:
    return path != root and os.path.commonpath([path, root]) == root


def _opened_path(fd: int) -> str | None:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:  # no /proc (not Linux): the realpath check above stands alone
        return None


def _read_bounded(fd: int, max_bytes: int, deadline: float) -> bytes | None:
    # The file may grow after fstat: never read more than max_bytes + 1, in chunks, and give
    # up at the deadline (a regular file on a stalled network mount).
    chunks: list[bytes] = []
    total = 0
    while True:
        if time.monotonic() > deadline:
            return None
        try:
            chunk = os.read(fd, min(READ_CHUNK_BYTES, max_bytes + 1 - total))
        except BlockingIOError:
            return None
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
        if total > max_bytes:
            return None


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
