"""The portal without a browser (httpx on the ASGI app, real PostgreSQL): a scripted probe that
must find nothing (XSS in every rendered field, CSRF, cross-owner access, security headers,
bad sessions), and the session rules (fresh ids, logout, revocation, expiry)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import httpx
import pytest

from royalflow.api.app import create_app
from royalflow.api.auth import revoke_token
from royalflow.config import Settings

from tests.api.portal import (
    HOSTILE_FAMILY, HOSTILE_GENERATION, PICTURE_GENERATION, SCRIPT_PROMPT, bare, csrf_of, seed_portal, sign_in,
)

pytestmark = pytest.mark.integration

PAYLOADS = (SCRIPT_PROMPT, HOSTILE_GENERATION, HOSTILE_FAMILY, "<script", "<img src=x")
REQUIRED_HEADERS = {
    "content-security-policy": ("default-src 'none'", "frame-ancestors 'none'", "base-uri 'none'", "form-action 'self'"),
    "x-content-type-options": ("nosniff",), "referrer-policy": ("no-referrer",), "x-frame-options": ("DENY",),
}


@pytest.fixture
async def portal(pool: asyncpg.Pool) -> AsyncIterator[str]:
    yield await seed_portal(pool)


@asynccontextmanager
async def _client(pool: asyncpg.Pool, *, show_content: bool = False, https: bool = False,
                  families_dir: Path = Path("no-families")) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(database_url="postgresql://unused", portal_show_content_to_owners=show_content, families_dir=families_dir)
    app = create_app(settings, pool=pool)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://api" if https else "http://api") as c:
            yield c


def _use(client: httpx.AsyncClient, session_id: str) -> None:
    """Send exactly this session cookie from now on (a browser that kept an old one)."""
    client.cookies.clear()
    client.cookies.set("rf_session", session_id)


def _header_findings(response: httpx.Response) -> list[str]:
    findings = []
    for name, needles in REQUIRED_HEADERS.items():
        value = response.headers.get(name, "")
        findings += [f"{response.request.url.path}: {name} lacks {n!r}" for n in needles if n not in value]
    return findings


def _xss_findings(response: httpx.Response) -> list[str]:
    return [f"{response.request.url.path}: raw {p[:20]!r}" for p in PAYLOADS if p in response.text]


async def test_scripted_probe_finds_nothing(pool: asyncpg.Pool, portal: str, tokens, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    findings: list[str] = []
    hostile = tmp_path / "x" / "1"  # a family whose manifest carries markup in every name
    hostile.mkdir(parents=True)
    hostile.joinpath("manifest.json").write_text(json.dumps({
        "family_id": HOSTILE_FAMILY, "version": "<img src=x>", "kind": "<script", "mode": "exact",
        "owners": [HOSTILE_GENERATION, "owner-b"], "clusters": [[HOSTILE_GENERATION, "owner-b"]]}))
    async with _client(pool, show_content=True) as owner, _client(pool, families_dir=tmp_path) as admin, _client(pool) as anon:
        # 1. Every page, as the owner (content shown to owners) and as the admin.
        assert (await sign_in(owner, bare(tokens["owner"]))).status_code == 303
        assert (await sign_in(admin, bare(tokens["admin"]))).status_code == 303
        pages = [await owner.get(p) for p in ("/portal/owners/owner-a", f"/portal/generations/{PICTURE_GENERATION}",
                                             f"/portal/owners/owner-a/statements/{portal}?format=csv", "/portal/static/portal.css")]
        pages += [await admin.get(p) for p in ("/portal/admin", "/portal/owners/owner-a", f"/portal/generations/{PICTURE_GENERATION}",
                                              "/portal/owners/owner-b")]
        pages += [await anon.get("/portal/signin")]
        assert all(p.status_code == 200 for p in pages), [(p.request.url.path, p.status_code) for p in pages]
        assert "pwned" in pages[1].text and "pwned" in pages[6].text  # the prompt is there, as text
        assert HOSTILE_FAMILY.replace("<", "&lt;").replace(">", "&gt;") in pages[0].text
        assert pages[4].text.count(HOSTILE_FAMILY.replace("<", "&lt;").replace(">", "&gt;")) == 2  # the registry and the ledger
        for page in pages:
            findings += _header_findings(page) + (_xss_findings(page) if "html" in page.headers["content-type"] else [])

        # 2. Cross-owner access and admin pages with an owner's session: 403, with the headers.
        for path in ("/portal/owners/owner-b", f"/portal/owners/owner-b/statements/{portal}?format=csv",
                     "/portal/generations/gen-cd", "/portal/generations/no-such-generation", "/portal/admin"):
            refused = await owner.get(path)
            findings += [] if refused.status_code == 403 else [f"{path}: owner-a got {refused.status_code}"]
            findings += _header_findings(refused)
        for path in ("/portal/owners/%3Cscript%3E", "/portal/generations/%22%3E%3Cx", "/portal/nowhere"):
            missing = await owner.get(path)
            findings += [] if missing.status_code == 404 else [f"{path}: {missing.status_code}"]
            findings += _header_findings(missing) + _xss_findings(missing)

        # 3. CSRF: missing and wrong tokens are refused on every state-changing form.
        for client, path in ((owner, "/portal/logout"), (admin, "/portal/admin/reconcile")):
            for form in ({}, {"csrf": "x" * 43}, {"csrf": ""}):
                refused = await client.post(path, data=form)
                findings += [] if refused.status_code == 403 else [f"POST {path} {form}: {refused.status_code}"]
        signin_page = await anon.get("/portal/signin")
        for form, cookie in (({"token": bare(tokens["owner"])}, True), ({"token": bare(tokens["owner"]), "csrf": "y" * 43}, True),
                             ({"token": bare(tokens["owner"]), "csrf": csrf_of(signin_page.text)}, False)):
            if not cookie:
                anon.cookies.clear()
            refused = await anon.post("/portal/signin", data=form)
            findings += [] if refused.status_code == 403 else [f"POST /portal/signin {sorted(form)}: {refused.status_code}"]
        still = await owner.get("/portal/owners/owner-a")
        findings += [] if still.status_code == 200 else ["a refused logout ended the session"]

        # 4. No session, or a bad one: back to sign-in, never an error.
        for cookie in (None, "garbage", "A" * 43, "<script>"):
            anon.cookies.clear()
            if cookie:
                _use(anon, cookie)
            for path in ("/portal", "/portal/owners/owner-a", "/portal/admin", f"/portal/generations/{PICTURE_GENERATION}"):
                sent = await anon.get(path)
                if sent.status_code != 303 or sent.headers.get("location") != "/portal/signin":
                    findings.append(f"{path} with cookie {cookie!r}: {sent.status_code}")
    assert findings == []


async def test_sign_in_shows_the_balance_the_api_returns(client: httpx.AsyncClient, portal: str, tokens) -> None:  # type: ignore[no-untyped-def]
    api = (await client.get("/v1/owners/owner-a/balances", headers={"Authorization": tokens["owner"]})).json()
    signed = await sign_in(client, bare(tokens["owner"]))
    assert signed.status_code == 303 and signed.headers["location"] == "/portal/owners/owner-a"
    cookie = signed.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/portal" in cookie and "Secure" not in cookie
    page = (await client.get("/portal/owners/owner-a")).text
    for balance in api["balances"]:
        for amount in (balance["lifetime"], balance["available"], *balance["windows"].values()):
            assert f'data-units="{amount["units"]}">{amount["decimal"]}<' in page
    assert "a secret prompt" not in page  # owners never see the prompt by default


async def test_cookie_is_secure_over_tls(pool: asyncpg.Pool, tokens) -> None:  # type: ignore[no-untyped-def]
    async with _client(pool, https=True) as client:
        signed = await sign_in(client, bare(tokens["owner"]))
        assert "Secure" in signed.headers["set-cookie"]


async def test_sessions_are_fresh_end_at_logout_and_with_their_token(pool: asyncpg.Pool, portal: str, tokens) -> None:  # type: ignore[no-untyped-def]
    from royalflow.api.auth import create_token

    async with _client(pool) as client:
        first = (await sign_in(client, bare(tokens["owner"]))).cookies["rf_session"]
        second = (await sign_in(client, bare(tokens["owner"]))).cookies["rf_session"]
        assert first != second  # a fresh id at every sign-in; the one brought along is ended
        _use(client, first)
        assert (await client.get("/portal/owners/owner-a")).status_code == 303
        _use(client, second)
        page = await client.get("/portal/owners/owner-a")
        out = await client.post("/portal/logout", data={"csrf": csrf_of(page.text)})
        assert out.status_code == 303 and out.headers["location"] == "/portal/signin"
        _use(client, second)
        assert (await client.get("/portal/owners/owner-a")).status_code == 303

        token_id, token = await create_token(pool, role="owner", owner_id="owner-b")
        client.cookies.clear()
        await sign_in(client, token)
        assert (await client.get("/portal/owners/owner-b")).status_code == 200
        await revoke_token(pool, token_id)
        assert (await client.get("/portal/owners/owner-b")).headers["location"] == "/portal/signin"
        assert (await sign_in(client, token)).status_code == 401  # and it cannot sign in again

        client.cookies.clear()
        await sign_in(client, bare(tokens["owner"]))
        await pool.execute("UPDATE portal_sessions SET created_at = now() - interval '2 days', expires_at = now() - interval '1 second'")
        assert (await client.get("/portal/owners/owner-a")).headers["location"] == "/portal/signin"
    assert await pool.fetchval("SELECT count(*) FROM portal_sessions WHERE length(session_hash) <> 64") == 0


async def test_owner_explanation_is_redacted_like_the_api(client: httpx.AsyncClient, portal: str, tokens) -> None:  # type: ignore[no-untyped-def]
    await sign_in(client, bare(tokens["other_owner"]))
    page = (await client.get(f"/portal/generations/{PICTURE_GENERATION}")).text
    assert "owner#1" in page and "owner-a" not in page and "pwned" not in page and "data:image/png" not in page
    assert "withheld from owners" in page and "<svg" in page


async def test_admin_runs_reconciliation_with_csrf(client: httpx.AsyncClient, portal: str, tokens) -> None:  # type: ignore[no-untyped-def]
    await sign_in(client, bare(tokens["admin"]))
    page = await client.get("/portal/admin")
    assert "No reconciliation recorded yet" in page.text and "no Kafka broker configured" in page.text
    ran = await client.post("/portal/admin/reconcile", data={"csrf": csrf_of(page.text)})
    assert ran.status_code == 303
    page = await client.get("/portal/admin")
    assert "(portal, " in page.text and "owner-a" in page.text
