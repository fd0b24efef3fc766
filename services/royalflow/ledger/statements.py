"""Owner statements per closed period, as JSON-ready dicts and CSV."""

from __future__ import annotations

import csv
import io
from typing import Any

import asyncpg

from royalflow.errors import LedgerError
from royalflow.money import currency_for


async def statement(pool: asyncpg.Pool, owner_id: str, period_id: str) -> dict[str, Any]:
    period = await pool.fetchrow("SELECT period_id, currency, period_end FROM periods WHERE period_id = $1", period_id)
    if period is None:
        raise LedgerError(f"no closed period {period_id!r}")
    previous_end = await pool.fetchval(
        "SELECT max(period_end) FROM periods WHERE currency = $1 AND period_end < $2", period["currency"], period["period_end"]
    )
    currency = period["currency"].strip()
    lines = await pool.fetch(
        "SELECT generation_id, contribution_id, family_id, family_version, share, amount, event_time "
        "FROM contributions WHERE owner_id = $1 AND currency = $2 AND settled_at <= (SELECT closed_at FROM periods WHERE period_id = $3) "
        "AND ($4::timestamptz IS NULL OR settled_at > (SELECT closed_at FROM periods WHERE currency = $2 AND period_end = $4)) "
        "AND amount > 0 ORDER BY ingest_seq",
        owner_id, currency, period_id, previous_end,
    )
    payout = await pool.fetchrow("SELECT amount, carried_forward FROM payouts WHERE period_id = $1 AND owner_id = $2", period_id, owner_id)
    cur = currency_for(currency)
    return {
        "owner_id": owner_id,
        "period_id": period_id,
        "currency": currency,
        "asset_scale": cur.asset_scale,
        "credits": sum(r["amount"] for r in lines),
        "payout": payout["amount"] if payout else 0,
        "carried_forward": payout["carried_forward"] if payout else 0,
        "lines": [{**dict(r), "amount_decimal": cur.format(r["amount"])} for r in lines],
    }


def statement_csv(data: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["owner_id", "period_id", "generation_id", "contribution_id", "family", "share", "amount_units", "amount", "event_time"])
    for line in data["lines"]:
        writer.writerow([
            data["owner_id"], data["period_id"], line["generation_id"], line["contribution_id"],
            f"{line['family_id']}@{line['family_version']}", f"{line['share']:.6f}", line["amount"],
            line["amount_decimal"], line["event_time"].isoformat(),
        ])
    writer.writerow([data["owner_id"], data["period_id"], "TOTAL", "", "", "", data["credits"], "", ""])
    writer.writerow([data["owner_id"], data["period_id"], "PAYOUT", "", "", "", data["payout"], "", ""])
    writer.writerow([data["owner_id"], data["period_id"], "CARRIED_FORWARD", "", "", "", data["carried_forward"], "", ""])
    return out.getvalue()
