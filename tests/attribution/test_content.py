"""file:// content comes only from under the configured content root, only from regular files,
bounded in size and time, and every refusal reads the same: a dead letter never tells a producer
whether some path exists."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from royalflow.attribution.diffusion import images
from royalflow.attribution.diffusion.images import (
    MAX_CONTENT_BYTES, URI_DISABLED, URI_REFUSED, configure_content_root, content_bytes, read_under_root,
)
from royalflow.contracts.events import Content
from royalflow.errors import ConfigurationError, ContractError

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(200))


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    served = tmp_path / "served"
    served.mkdir()
    configure_content_root(served)
    yield served
    configure_content_root(None)


def _by_uri(uri: str, data: bytes = PNG) -> Content:
    return Content(media_type="image/png", sha256=hashlib.sha256(data).hexdigest(), uri=uri)


def _refusal(content: Content) -> str:
    with pytest.raises(ContractError) as caught:
        content_bytes(content)
    assert caught.value.reason == "bad_content"
    return caught.value.detail


def test_a_regular_file_under_the_root_is_served(root: Path) -> None:
    (root / "a").mkdir()
    (root / "a" / "x.png").write_bytes(PNG)
    assert content_bytes(_by_uri((root / "a" / "x.png").as_uri())) == PNG
    assert content_bytes(_by_uri("file://localhost" + str(root / "a" / "x.png"))) == PNG
    (root / "inner-link.png").symlink_to(root / "a" / "x.png")  # a symlink that stays inside is fine
    assert content_bytes(_by_uri((root / "inner-link.png").as_uri())) == PNG


def test_without_a_root_every_file_uri_is_refused(tmp_path: Path) -> None:
    assert images._content_root is None  # the default: ROYALFLOW_CONTENT_ROOT unset
    path = tmp_path / "x.png"
    path.write_bytes(PNG)
    assert _refusal(_by_uri(path.as_uri())) == URI_DISABLED
    assert _refusal(_by_uri((tmp_path / "missing.png").as_uri())) == URI_DISABLED


def test_every_refusal_under_a_root_has_one_detail(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.png"
    outside.write_bytes(PNG)
    (root / "escape.png").symlink_to(outside)
    (root / "zero.png").symlink_to("/dev/zero")
    (root / "dir.png").mkdir()
    (root / "big.png").write_bytes(b"\0" * (MAX_CONTENT_BYTES + 1))
    (root / "wrong-hash.png").write_bytes(PNG + b"tampered")
    os.mkfifo(root / "pipe.png")
    uris = {
        "missing": (root / "missing.png").as_uri(),
        "outside the root": outside.as_uri(),
        "dot-dot out of the root": f"file://{root}/../outside.png",
        "symlink out of the root": (root / "escape.png").as_uri(),
        "/dev/zero": "file:///dev/zero",
        "symlink to /dev/zero": (root / "zero.png").as_uri(),
        "directory": (root / "dir.png").as_uri(),
        "oversized": (root / "big.png").as_uri(),
        "hash mismatch": (root / "wrong-hash.png").as_uri(),
        "/etc/passwd": "file:///etc/passwd",
        "the root itself": root.as_uri(),
        "a NUL byte": (root / "x.png").as_uri() + "%00",
    }
    for what, uri in uris.items():
        started = time.monotonic()
        assert _refusal(_by_uri(uri)) == URI_REFUSED, what
        assert time.monotonic() - started < 1.0, what
    # The FIFO: nobody writes to it; opening and refusing it must not block.
    done = threading.Event()
    details: list[str] = []

    def probe() -> None:
        details.append(_refusal(_by_uri((root / "pipe.png").as_uri())))
        done.set()

    threading.Thread(target=probe, daemon=True).start()
    assert done.wait(timeout=5.0), "a FIFO under the content root blocked the reader"
    assert details == [URI_REFUSED]


def test_an_unreadable_file_reads_like_a_missing_one() -> None:
    # Checked as an unprivileged user (root reads files whatever their mode), in a forked child.
    served = Path(tempfile.mkdtemp(prefix="content-root-", dir="/tmp"))
    try:
        served.chmod(0o755)
        secret = served / "secret.png"
        secret.write_bytes(PNG)
        secret.chmod(0)
        reader, writer = os.pipe()
        child = os.fork()
        if child == 0:  # pragma: no cover - the child reports through the pipe
            try:
                if os.geteuid() == 0:
                    os.setgid(65534)
                    os.setuid(65534)
                configure_content_root(served)
                details = [_detail_or_ok(_by_uri(secret.as_uri())), _detail_or_ok(_by_uri((served / "absent.png").as_uri()))]
                os.write(writer, "\n".join(details).encode())
            finally:
                os._exit(0)
        os.close(writer)
        with os.fdopen(reader, "rb") as pipe:
            reported = pipe.read().decode().split("\n")
        os.waitpid(child, 0)
        assert reported == [URI_REFUSED, URI_REFUSED]
    finally:
        shutil.rmtree(served)


def _detail_or_ok(content: Content) -> str:
    try:
        content_bytes(content)
    except ContractError as exc:
        return exc.detail
    return "read"


def test_reads_are_bounded_in_size_and_time(root: Path) -> None:
    path = root / "x.png"
    path.write_bytes(PNG)
    assert read_under_root(str(path), str(root)) == PNG
    assert read_under_root(str(path), str(root), max_bytes=len(PNG) - 1) is None
    assert read_under_root(str(path), str(root), timeout_seconds=-1.0) is None
    assert read_under_root("x.png", str(root)) is None  # relative paths are never resolved


def test_a_content_root_that_is_not_a_directory_is_refused_at_start(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    for root in (tmp_path / "missing", tmp_path / "file"):
        with pytest.raises(ConfigurationError, match="ROYALFLOW_CONTENT_ROOT"):
            configure_content_root(root)
    assert images._content_root is None


def test_other_schemes_are_refused_with_their_own_reason(root: Path) -> None:
    assert "got scheme 'https'" in _refusal(_by_uri("https://example.com/x.png"))
    assert "local file" in _refusal(_by_uri("file://otherhost/x.png"))
