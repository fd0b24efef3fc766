"""A live API for tests that need a real HTTP server: ``royalflow api serve`` (uvicorn) as a
child process on a free port, on the test's settings, stopped at the end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from royalflow.config import Settings
from royalflow.platform.process import free_port
from royalflow.platform.supervisor import ServiceProcess

START_TIMEOUT_SECONDS = 60


@asynccontextmanager
async def serve_api(settings: Settings, log_dir: Path) -> AsyncIterator[tuple[ServiceProcess, str]]:
    """(the server process, its base URL), once /readyz answers 200."""
    port = free_port()
    api = ServiceProcess("api", settings, log_dir, extra_args=("--port", str(port)))
    api.start()
    base_url = f"http://127.0.0.1:{port}"
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT_SECONDS
        async with httpx.AsyncClient(timeout=2) as client:
            while True:
                if not api.alive:
                    raise AssertionError(f"api exited:\n{api.tail()}")
                try:
                    if (await client.get(f"{base_url}/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if loop.time() > deadline:
                    raise AssertionError(f"api not ready within {START_TIMEOUT_SECONDS}s:\n{api.tail()}")
                await asyncio.sleep(0.2)
        yield api, base_url
    finally:
        api.stop()
