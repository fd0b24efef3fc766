"""The API on a real uvicorn server: a 10 MiB chunked body (no Content-Length) is answered 413
long before it is all sent, and an unauthenticated bad body gets 401 over real HTTP."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from royalflow.config import Settings

from tests.api.live import serve_api

pytestmark = pytest.mark.integration

TEN_MEBIBYTES = 10 * 1024 * 1024
CHUNK_BYTES = 64 * 1024
PACE_SECONDS = 0.002  # between chunks: the server gets to answer while we still send


async def _send_chunked(host: str, port: int, authorization: str, total_bytes: int) -> tuple[bytes, int]:
    """POST a chunked body of ``total_bytes``; return (status line, bytes sent before it came)."""
    reader, writer = await asyncio.open_connection(host, port)
    head = (f"POST /v1/admin/periods/close HTTP/1.1\r\nHost: {host}\r\nAuthorization: {authorization}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    writer.write(head.encode())
    status = asyncio.create_task(reader.readline())
    sent = 0
    try:
        while sent < total_bytes and not status.done():
            writer.write(f"{CHUNK_BYTES:x}\r\n".encode() + b" " * CHUNK_BYTES + b"\r\n")
            await writer.drain()
            sent += CHUNK_BYTES
            await asyncio.sleep(PACE_SECONDS)
        if not status.done():
            writer.write(b"0\r\n\r\n")
            await writer.drain()
    except (ConnectionResetError, BrokenPipeError):
        pass  # the server answered and closed: what we want to see
    try:
        line = await asyncio.wait_for(status, 30)
    finally:
        writer.close()
    return line, sent


@pytest.mark.slow
async def test_live_server_cuts_off_a_chunked_body_and_authenticates_first(settings: Settings, tokens, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    async with serve_api(settings, tmp_path / "logs") as (_, base_url):
        port = int(base_url.rsplit(":", 1)[1])
        line, sent = await _send_chunked("127.0.0.1", port, str(tokens["admin"]), TEN_MEBIBYTES)
        assert line.startswith(b"HTTP/1.1 413"), line
        assert sent < TEN_MEBIBYTES, "the answer came only after the whole body"
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
            bad = await client.post("/v1/admin/periods/close", content=b"{not json", headers={"Content-Type": "application/json"})
            assert bad.status_code == 401 and bad.headers["www-authenticate"] == "Bearer"
            ok = await client.post("/v1/admin/periods/close", json={"period_end": "2025-01-01T00:00:00Z"},
                                   headers={"Authorization": str(tokens["admin"])})
            assert ok.status_code == 200, ok.text
    print(f"\n413 after {sent} of {TEN_MEBIBYTES} bytes sent")
