"""Read-side queries only the portal needs (the rest come from the API's routes and
``royalflow.ledger.queries``): earnings by day and family, this period's top generations, the
picture of a generation, families with their clusters, dead letters by reason."""

from __future__ import annotations

import base64
import binascii
import io
import json
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg

from royalflow.config import Settings

EARNINGS_DAYS = 30
TOP_GENERATIONS = 10
MAX_PICTURE_BYTES = 4 * 1024 * 1024  # the agent's own limit on inline content
MAX_PICTURE_SIDE_PIXELS = 4096
DEAD_LETTER_CACHE_SECONDS = 30.0  # reading the topic takes seconds: one read per half minute
DEAD_LETTER_READ_SECONDS = 3.0
DEAD_LETTER_LIMIT = 10_000
MAX_FAMILIES_SHOWN = 200


async def earnings_by_day(pool: asyncpg.Pool, owner_id: str, *, days: int = EARNINGS_DAYS) -> dict[str, dict[str, Any]]:
    """Per currency: {"days": [date...], "families": [name...], "cells": {(day, family): units}}
    over the last ``days`` UTC days by event time, including today."""
    today = datetime.now(UTC).date()
    first = today - timedelta(days=days - 1)
    rows = await pool.fetch(
        """
        SELECT currency, (event_time AT TIME ZONE 'UTC')::date AS day, family_id || '@' || family_version AS family,
               sum(amount)::int8 AS amount
        FROM contributions
        WHERE owner_id = $1 AND event_time >= $2::date AT TIME ZONE 'UTC' AND amount > 0
        GROUP BY 1, 2, 3
        """,
        owner_id, first,
    )
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        cur = out.setdefault(r["currency"].strip(), {"cells": {}, "families": set()})
        cur["cells"][(r["day"], r["family"])] = r["amount"]
        cur["families"].add(r["family"])
    span: list[date] = [first + timedelta(days=i) for i in range(days)]
    for cur in out.values():
        cur["days"] = span
        cur["families"] = sorted(cur["families"])
    return dict(sorted(out.items()))


async def top_generations(pool: asyncpg.Pool, owner_id: str, *, limit: int = TOP_GENERATIONS) -> list[dict[str, Any]]:
    """The owner's best-paid generations of the open period (settled after the last close of
    their currency), highest amount first."""
    rows = await pool.fetch(
        """
        SELECT c.generation_id, c.family_id, c.family_version, c.share, c.std_error, c.amount, c.currency, c.event_time
        FROM contributions c
        LEFT JOIN (SELECT currency, max(closed_at) AS since FROM periods GROUP BY currency) p USING (currency)
        WHERE c.owner_id = $1 AND c.amount > 0 AND c.settled_at > COALESCE(p.since, '-infinity')
        ORDER BY c.amount DESC, c.generation_id LIMIT $2
        """,
        owner_id, limit,
    )
    return [{**dict(r), "currency": r["currency"].strip()} for r in rows]


def picture_data_uri(content: dict[str, Any] | None) -> str | None:
    """A data: URI of a PNG of the generation's inline content (PNG re-encoded, .npy drawn), or
    None when there is no inline picture or it does not decode. Re-encoding means only pixels
    ever reach the page, whatever bytes the record carried."""
    import numpy as np
    from PIL import Image

    if not content or not isinstance(content.get("data_base64"), str):
        return None
    try:
        raw = base64.b64decode(content["data_base64"], validate=True)
        if len(raw) > MAX_PICTURE_BYTES:
            return None
        if content.get("media_type") == "image/png":
            image = Image.open(io.BytesIO(raw))
            if max(image.size) > MAX_PICTURE_SIDE_PIXELS:
                return None
            image = image.convert("RGB" if image.mode not in ("L", "LA", "I", "I;16") else "L")
        elif content.get("media_type") == "application/x-npy":
            array = np.squeeze(np.load(io.BytesIO(raw), allow_pickle=False))
            if array.ndim != 2 or max(array.shape) > MAX_PICTURE_SIDE_PIXELS:
                return None
            if array.dtype.kind == "f":
                array = np.clip(array, 0.0, 1.0) * 255.0
            image = Image.fromarray(np.clip(array, 0, 255).astype(np.uint8), mode="L")
        else:
            return None
    except (binascii.Error, ValueError, OSError, TypeError):
        return None
    out = io.BytesIO()
    image.save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


def families(settings: Settings) -> list[dict[str, Any]]:
    """Every family in the registry with its owners and clusters (from the manifests; no model
    is loaded). A manifest that does not parse is listed with the reason."""
    out: list[dict[str, Any]] = []
    for path in sorted(settings.families_dir.glob("*/*/manifest.json"))[:MAX_FAMILIES_SHOWN]:
        try:
            manifest = json.loads(path.read_text())
            clusters = manifest.get("clusters") or [[o] for o in manifest.get("owners") or []]
            out.append({"family_id": str(manifest.get("family_id", path.parent.parent.name)),
                        "version": str(manifest.get("version", path.parent.name)),
                        "kind": str(manifest.get("kind", "")), "mode": str(manifest.get("mode", "")),
                        "owners": [str(o) for o in manifest.get("owners") or []],
                        "clusters": [[str(o) for o in c] for c in clusters], "error": None})
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            out.append({"family_id": path.parent.parent.name, "version": path.parent.name, "kind": "", "mode": "",
                        "owners": [], "clusters": [], "error": f"unreadable manifest: {type(exc).__name__}"})
    return out


async def ledger_families(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    """Families the ledger has settled generations of, with counts."""
    rows = await pool.fetch(
        "SELECT family_id, family_version, count(*) AS generations FROM generations "
        "GROUP BY 1, 2 ORDER BY 1, 2 LIMIT $1", MAX_FAMILIES_SHOWN,
    )
    return [dict(r) for r in rows]


class DeadLetterCounts:
    """Dead letters by reason, read from the dead-letter topic at most every 30 s. The API
    process reads Kafka only for this page, and only where it is given a broker."""

    def __init__(self) -> None:
        self._at = -DEAD_LETTER_CACHE_SECONDS
        self._value: dict[str, Any] = {}

    async def get(self, settings: Settings) -> dict[str, Any]:
        if not settings.kafka_bootstrap_servers:
            return {"available": False, "why": "this API process has no Kafka broker configured (KAFKA_BOOTSTRAP_SERVERS)"}
        if time.monotonic() - self._at < DEAD_LETTER_CACHE_SECONDS:
            return self._value
        from royalflow.platform.deadletter import read_dead_letters

        try:
            letters = await read_dead_letters(settings, timeout_seconds=DEAD_LETTER_READ_SECONDS, limit=DEAD_LETTER_LIMIT)
        except Exception as exc:  # noqa: BLE001 - an unreachable broker is a line on the page, not a 500
            return {"available": False, "why": f"the dead-letter topic could not be read: {type(exc).__name__}"}
        by_reason = Counter(str(letter.reason) for letter in letters)
        self._value = {"available": True, "total": len(letters), "capped": len(letters) >= DEAD_LETTER_LIMIT,
                       "by_reason": sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0]))}
        self._at = time.monotonic()
        return self._value


async def pictures(pool: asyncpg.Pool, generation_ids: list[str]) -> dict[str, str]:
    """generation id -> data: URI of its picture, for those with inline content (one query)."""
    rows = await pool.fetch("SELECT generation_id, record->'content' AS content FROM attributions WHERE generation_id = ANY($1::text[])",
                            generation_ids)
    out = {}
    for r in rows:
        uri = picture_data_uri(json.loads(r["content"]) if r["content"] else None)
        if uri:
            out[r["generation_id"]] = uri
    return out
