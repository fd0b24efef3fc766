"""Portal test data and helpers: the API fixtures' ledger (tests/api/conftest.py) plus a closed
period, and, in the open period, a generation with an inline picture and a hostile prompt and
a generation whose id and family carry markup. Signing in with httpx, as a browser would."""

from __future__ import annotations

import base64
import io
import re
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import numpy as np
from PIL import Image

from royalflow.contracts.events import Conditioning, Content
from royalflow.ledger.journal import apply_batch
from royalflow.ledger.payouts import close_period

from tests.api.conftest import attribution
from tests.ledger.factory import generation_parts

SCRIPT_PROMPT = '<script>document.title="pwned"</script>a "quoted" & <b>bold</b> prompt'
HOSTILE_GENERATION = '"><img src=x onerror=alert(1)>'
HOSTILE_FAMILY = "fam</td><script>alert(2)</script>"
PICTURE_GENERATION = "gen-pic"
XSS_MARKERS = ("<script", "onerror=", "<img src=x", "</td><script")
CSRF_FIELD = re.compile(r'name="csrf" value="([A-Za-z0-9_-]+)"')


def png_base64() -> str:
    """An 8x8 grayscale 'one', as the digits family's events carry it."""
    pixels = np.zeros((8, 8), dtype=np.uint8)
    pixels[1:7, 3:5] = 255
    out = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


async def seed_portal(pool: asyncpg.Pool) -> str:
    """Close a USD period over the fixture's generations, then settle two more in the open one;
    returns the closed period's id."""
    closed = await close_period(pool, datetime.now(UTC) - timedelta(minutes=1), currency="USD")
    now = datetime.now(UTC) - timedelta(minutes=5)
    picture = generation_parts(PICTURE_GENERATION, seed=5, owners=("owner-a", "owner-b"), occurred_at=now)
    hostile = [p.model_copy(update={"family_id": HOSTILE_FAMILY})
               for p in generation_parts(HOSTILE_GENERATION, seed=6, owners=("owner-a", "owner-b"), occurred_at=now)]
    record = attribution(picture).model_copy(update={
        "owners": ["owner-a", "owner-b"], "std_errors": [0.05, 0.02],
        "conditioning": Conditioning(prompt=SCRIPT_PROMPT),
        "content": Content(media_type="image/png", sha256="0" * 64, data_base64=png_base64()),
    })
    async with pool.acquire() as conn, conn.transaction():
        await apply_batch(conn, picture + hostile, [record], {("t2", 0): 4}, group_id="g", shard=0)
    return str(closed["period_id"])


def bare(token: str | None) -> str:
    """'Bearer rf_...' (the API fixtures' header value) -> 'rf_...'."""
    return (token or "").removeprefix("Bearer ")


async def sign_in(client: httpx.AsyncClient, token: str) -> httpx.Response:
    """GET the form, POST the token with the form's CSRF value; the client keeps the cookie."""
    page = await client.get("/portal/signin")
    csrf = CSRF_FIELD.search(page.text)
    if csrf is None:
        raise AssertionError(f"no csrf field on the sign-in page:\n{page.text}")
    return await client.post("/portal/signin", data={"token": token, "csrf": csrf.group(1)})


def csrf_of(html: str) -> str:
    found = CSRF_FIELD.search(html)
    if found is None:
        raise AssertionError("no csrf field on the page")
    return found.group(1)
