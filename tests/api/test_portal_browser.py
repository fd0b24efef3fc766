"""The portal in a real browser: playwright drives Debian's chromium (never a downloaded one)
against ``royalflow api serve`` on the API fixtures' ledger. Skipped, with the reason, where no
chromium is installed (``python3 dev.py test`` installs it where it can, as it does promtool); in
CI (CI=true) a missing chromium fails instead.

Set PORTAL_SCREENSHOTS=DIR to also save the README's screenshots there."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from royalflow.api.auth import create_token, revoke_token
from royalflow.config import Settings
from royalflow.platform.broker import EmbeddedBroker
from royalflow.platform.database import EmbeddedPostgres, create_database, create_pool

from tests.api.conftest import seed_ledger
from tests.api.live import serve_api
from tests.api.portal import PICTURE_GENERATION, SCRIPT_PROMPT, seed_portal

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.integration
playwright_api = pytest.importorskip("playwright.async_api", reason="playwright is in the test extras")
SCREENSHOTS = os.environ.get("PORTAL_SCREENSHOTS")
EXPECTED_REFUSALS = (401, 403)


@dataclass
class Live:
    base_url: str
    browser: Any
    pool: Any
    period_id: str
    tokens: dict[str, str]


def _families(folder: Path) -> None:
    """One family in the registry, with a cluster, for the admin page."""
    path = folder / "digits-demo" / "1"
    path.mkdir(parents=True)
    path.joinpath("manifest.json").write_text(json.dumps({
        "family_id": "digits-demo", "version": "1", "kind": "digits", "mode": "exact",
        "owners": ["owner-a", "owner-b", "owner-c", "owner-d"], "clusters": [["owner-a"], ["owner-b"], ["owner-c", "owner-d"]],
    }))


@pytest.fixture(scope="module")
async def live(postgres: EmbeddedPostgres, broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Live]:
    if CHROMIUM is None:
        message = "no chromium on PATH: install the Debian package 'chromium' (python3 dev.py test does, as root)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI must run the browser tests")
        pytest.skip(message)
    tmp = tmp_path_factory.mktemp("portal")
    dsn = await create_database(postgres.dsn, f"t_{uuid.uuid4().hex[:12]}")
    pool = await create_pool(dsn, max_size=2)
    await seed_ledger(pool)
    period_id = await seed_portal(pool)
    tokens = {kind: (await create_token(pool, role="admin" if kind == "admin" else "owner",
                                        owner_id=None if kind == "admin" else kind))[1]
              for kind in ("owner-a", "owner-b", "admin")}
    _families(tmp / "families")
    settings = Settings(database_url=dsn, kafka_bootstrap_servers=broker.bootstrap_servers, topic_prefix=f"t{uuid.uuid4().hex[:10]}",
                        state_dir=tmp / "state", families_dir=tmp / "families", portal_show_content_to_owners=True)
    try:
        async with serve_api(settings, tmp / "logs") as (_, base_url):
            async with playwright_api.async_playwright() as pw:
                browser = await pw.chromium.launch(
                    executable_path=CHROMIUM, headless=True, args=["--no-sandbox"] if os.geteuid() == 0 else [])
                try:
                    yield Live(base_url, browser, pool, period_id, tokens)
                finally:
                    await browser.close()
    finally:
        await pool.close()


@pytest.fixture
async def page(live: Live) -> AsyncIterator[Any]:
    """A fresh browser context (no cookies) whose page must raise no dialog and no console error
    (a CSP violation is a console error)."""
    context = await live.browser.new_context(base_url=live.base_url, accept_downloads=True, viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    trouble: list[str] = []
    page.on("dialog", lambda d: trouble.append(f"dialog: {d.message}"))
    # A 401/403 page is logged as a failed resource load: expected where a test asks for one.
    page.on("console", lambda m: trouble.append(f"console {m.type}: {m.text}")
            if m.type == "error" and not any(f"status of {s}" in m.text for s in EXPECTED_REFUSALS) else None)
    yield page
    await context.close()
    assert trouble == []


async def sign_in(page: Any, token: str) -> None:
    await page.goto("/portal")
    assert page.url.endswith("/portal/signin")  # no session: the sign-in page
    await page.fill("#token", token)
    await page.click("button[type=submit]")
    # The click returns once the redirect's URL is committed, not once its page has loaded: a
    # reload or goto issued before that raced the load ("Not attached to an active page").
    await page.wait_for_load_state("load")


async def test_sign_in_shows_the_balance_the_api_returns(live: Live, page: Any) -> None:
    await sign_in(page, live.tokens["owner-a"])
    assert page.url.endswith("/portal/owners/owner-a")
    async with httpx.AsyncClient(base_url=live.base_url) as api:
        body = (await api.get("/v1/owners/owner-a/balances", headers={"Authorization": f"Bearer {live.tokens['owner-a']}"})).json()
    cells = page.locator("table.balance td.amount")
    shown = [await cells.nth(i).inner_text() for i in range(await cells.count())]
    expected = [a["decimal"] for b in body["balances"] for a in (b["lifetime"], b["available"], *b["windows"].values())]
    assert shown == expected and expected
    assert await page.locator("svg.chart").count() >= 1 and await page.locator("table.series").count() >= 1
    if SCREENSHOTS:
        await page.screenshot(path=str(Path(SCREENSHOTS) / "portal-owner.png"), full_page=True)


async def test_open_a_generations_explanation_and_its_prompt_is_text(live: Live, page: Any) -> None:
    await sign_in(page, live.tokens["owner-a"])
    await page.click(f"a[href='/portal/generations/{PICTURE_GENERATION}']")
    assert page.url.endswith(f"/portal/generations/{PICTURE_GENERATION}")
    picture = page.locator("img.generated")
    assert (await picture.get_attribute("src") or "").startswith("data:image/png;base64,")
    assert await picture.evaluate("img => img.naturalWidth") == 8  # the picture decoded
    assert await page.locator("svg.chart rect").count() == 2 and await page.locator("table.parts tbody tr").count() == 2
    assert await page.locator("q.prompt").inner_text() == SCRIPT_PROMPT  # shown as text...
    assert await page.title() != "pwned" and await page.locator("q.prompt b").count() == 0  # ...and never run
    if SCREENSHOTS:
        await page.screenshot(path=str(Path(SCREENSHOTS) / "portal-generation.png"), full_page=True)


async def test_download_a_statement(live: Live, page: Any) -> None:
    await sign_in(page, live.tokens["owner-a"])
    async with page.expect_download() as info:
        await page.click("#statements a:text('CSV')")
    download = await info.value
    text = Path(await download.path()).read_bytes().decode()  # byte for byte: CSV lines end in CRLF
    async with httpx.AsyncClient(base_url=live.base_url) as api:
        expected = (await api.get(f"/v1/owners/owner-a/statements/{live.period_id}", params={"format": "csv"},
                                  headers={"Authorization": f"Bearer {live.tokens['owner-a']}"})).text
    assert text == expected and "TOTAL" in text
    assert download.suggested_filename.startswith("statement-owner-a-") and download.suggested_filename.endswith(".csv")


async def test_another_owners_url_is_403(live: Live, page: Any) -> None:
    await sign_in(page, live.tokens["owner-a"])
    for path in ("/portal/owners/owner-b", "/portal/admin", "/portal/generations/gen-cd"):
        response = await page.goto(path)
        assert response.status == 403, path
        assert await page.locator("h1").inner_text() == "Not yours to see"


async def test_a_revoked_tokens_session_is_refused(live: Live, page: Any) -> None:
    token_id, token = await create_token(live.pool, role="owner", owner_id="owner-b")
    await sign_in(page, token)
    assert page.url.endswith("/portal/owners/owner-b")
    await revoke_token(live.pool, token_id)
    await page.goto("/portal/owners/owner-b")  # the same page again, with the revoked token's session
    assert page.url.endswith("/portal/signin")
    await page.fill("#token", token)
    await page.click("button[type=submit]")
    assert "unknown, revoked or malformed" in await page.locator("[role=alert]").inner_text()


async def test_logout(live: Live, page: Any) -> None:
    await sign_in(page, live.tokens["admin"])
    assert page.url.endswith("/portal/admin")
    assert "owner-c + owner-d" in await page.locator("#families").inner_text()
    await page.click("text=Sign out")
    assert page.url.endswith("/portal/signin")
    await page.goto("/portal/admin")
    assert page.url.endswith("/portal/signin")
