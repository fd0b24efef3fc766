#!/usr/bin/env python3
"""The README's two portal screenshots, taken with playwright on Debian's chromium.

    python docs/portal_screenshots.py      # writes docs/portal-owner.png and docs/portal-generation.png

Settles 300 demo-like generations (scikit-learn's handwritten digits as the pictures, owners
a-d holding digit classes as in the demo, shares favouring the class's owner) into a fresh
embedded PostgreSQL, closes a period two thirds of the way through, serves the API with the
portal (content shown to owners), signs owner-a in and photographs its page and the
explanation of its best-paid generation of the open period.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import os
import random
import shutil
import sys
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "services"))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

from royalflow.api.auth import create_token  # noqa: E402
from royalflow.attribution.royalty import contribution_id  # noqa: E402
from royalflow.config import Settings  # noqa: E402
from royalflow.contracts import AttributionRecord, ContributionEvent  # noqa: E402
from royalflow.contracts.events import Conditioning, Content  # noqa: E402
from royalflow.ledger.journal import apply_batch  # noqa: E402
from royalflow.ledger.migrate import migrate  # noqa: E402
from royalflow.ledger.payouts import close_period  # noqa: E402
from royalflow.money import apportion  # noqa: E402
from royalflow.platform.database import EmbeddedPostgres, create_database, create_pool  # noqa: E402

sys.path.insert(0, str(ROOT))
from benchmarks.portal import start_api  # noqa: E402

OWNERS = ("owner-a", "owner-b", "owner-c", "owner-d")
HOLDER = {0: 0, 1: 0, 2: 0, 3: 1, 4: 1, 5: 1, 6: 2, 7: 2, 8: 3, 9: 3}  # digit -> owner index, as in the demo
GENERATIONS = 300
OUT = ROOT / "docs"


def generation(g: int, digits, rng: random.Random, when: datetime) -> tuple[list[ContributionEvent], AttributionRecord]:  # type: ignore[no-untyped-def]
    k = rng.randrange(len(digits.images))
    label = int(digits.target[k])
    pixels = (255 - digits.images[k] / 16.0 * 255).astype(np.uint8)  # dark ink on white, as `attribution explain` draws it
    png = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(png, format="PNG")
    family, version = ("digits-demo", "1") if g % 3 else ("digits-demo", "2")
    phi = [rng.uniform(0.0, 0.4) + (2.0 if i == HOLDER[label] else 0.0) for i in range(len(OWNERS))]
    revenue = rng.randint(1_000_000, 50_000_000)
    pool = revenue * 3 // 10
    amounts = apportion(pool, phi, list(OWNERS))
    gid = f"gen-{g:04d}"
    parts = [
        ContributionEvent(
            contribution_id=contribution_id(gid, o), generation_id=gid, owner_id=o, occurred_at=when, family_id=family,
            family_version=version, method="exact", shapley_value=v, std_error=rng.uniform(0.05, 0.2), share=v / sum(phi),
            amount=a, currency="USD", asset_scale=9, pool_amount=pool, revenue_amount=revenue, parts_total=len(OWNERS),
        )
        for o, v, a in zip(OWNERS, phi, amounts)
    ]
    record = AttributionRecord(
        generation_id=gid, occurred_at=when, family_id=family, family_version=version, method="exact", mode="exact",
        owners=list(OWNERS), shapley_values=phi, std_errors=[p.std_error for p in parts],
        coalition_utilities={"0": -3.0, "f": -3.0 + sum(phi)}, utility_std_errors={"0": 0.0, "f": 0.0}, seed=g,
        revenue_amount=revenue, pool_amount=pool, currency="USD", asset_scale=9,
        content_sha256=hashlib.sha256(png.getvalue()).hexdigest(), model_evaluations=16,
        conditioning=Conditioning(class_label=label),
        content=Content(media_type="image/png", sha256=hashlib.sha256(png.getvalue()).hexdigest(),
                        data_base64=base64.b64encode(png.getvalue()).decode()),
    )
    return parts, record


async def main() -> None:
    from playwright.async_api import async_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("needs Debian's chromium (apt-get install chromium)")
    digits, rng = load_digits(), random.Random(7)
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="royalflow-shots-") as tmp:
        postgres = EmbeddedPostgres(Path(tmp) / "postgres")
        try:
            dsn = await create_database(postgres.start(), f"shots_{uuid.uuid4().hex[:8]}")
            pool = await create_pool(dsn, max_size=2)
            await migrate(pool)
            made = [generation(g, digits, rng, now - timedelta(days=29.5 * (1 - g / GENERATIONS), minutes=5)) for g in range(GENERATIONS)]
            for chunk, close in ((made[: GENERATIONS * 2 // 3], True), (made[GENERATIONS * 2 // 3:], False)):
                async with pool.acquire() as conn, conn.transaction():
                    await apply_batch(conn, [p for parts, _ in chunk for p in parts], [r for _, r in chunk],
                                      {("shots", 0): len(chunk)}, group_id="shots", shard=0)
                if close:
                    await close_period(pool, now - timedelta(days=10), currency="USD")
            _, token = await create_token(pool, role="owner", owner_id="owner-a")
            settings = Settings(database_url=dsn, kafka_bootstrap_servers="127.0.0.1:9", state_dir=Path(tmp) / "state",
                                portal_show_content_to_owners=True)
            api, base = await start_api(settings, Path(tmp) / "logs")
            try:
                async with async_playwright() as pw:
                    browser = await pw.chromium.launch(executable_path=chromium, headless=True,
                                                       args=["--no-sandbox"] if os.geteuid() == 0 else [])
                    page = await browser.new_page(base_url=base, viewport={"width": 1280, "height": 900})
                    await page.goto("/portal/signin")
                    await page.fill("#token", token)
                    await page.click("button[type=submit]")
                    await page.screenshot(path=str(OUT / "portal-owner.png"), full_page=True)
                    await page.click("#top tbody tr:first-child a")
                    await page.screenshot(path=str(OUT / "portal-generation.png"), full_page=True)
                    await browser.close()
            finally:
                api.stop()
            await pool.close()
        finally:
            postgres.stop()
    print(f"wrote {OUT / 'portal-owner.png'} and {OUT / 'portal-generation.png'}")


if __name__ == "__main__":
    asyncio.run(main())
