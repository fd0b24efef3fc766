"""Owner pages: the balance, earnings over time, this period's top generations, a generation's
explanation, and statements with downloads.

Every figure the API also serves comes from the API's own route functions, called with the
session's principal: the same 403 matrix (an owner sees only itself, an admin everyone), the
same audit redaction (other owners pseudonymised, content and prompt withheld), the same
numbers."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.responses import RedirectResponse
from markupsafe import Markup

from royalflow.api.portal import charts, data, pages
from royalflow.api.portal.pages import render
from royalflow.api.portal.sessions import Session, current
from royalflow.api.routes import audit as audit_routes
from royalflow.api.routes import owners as owner_routes
from royalflow.ledger import queries
from royalflow.money import currency_for

OWNER_ID = re.compile(owner_routes.OWNER_ID_PATTERN)
GENERATION_ID = re.compile(audit_routes.GENERATION_ID_PATTERN)
PERIOD_ID = re.compile(owner_routes.PERIOD_ID_PATTERN)

router = APIRouter(prefix="/portal", include_in_schema=False)
SignedIn = Annotated[Session, Depends(current)]


def _checked(pattern: re.Pattern[str], value: str, what: str) -> str:
    if not pattern.match(value):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no such {what}")
    return value


@router.get("")
async def home(session: SignedIn) -> Response:
    who = session.principal
    return RedirectResponse("/portal/admin" if who.is_admin else f"/portal/owners/{who.owner_id}", status.HTTP_303_SEE_OTHER)


@router.get("/owners/{owner_id}")
async def owner_page(owner_id: str, session: SignedIn, request: Request) -> Response:
    _checked(OWNER_ID, owner_id, "owner")
    who = session.principal
    balances = await owner_routes.balances(owner_id, who, request)  # 403 for another owner, as the API
    pool = request.app.state.pool

    async def figures() -> tuple[Markup, list[dict[str, Any]]]:
        # The earnings section is rendered here, once per cache period, not on every view.
        earnings = []
        for currency, series in (await data.earnings_by_day(pool, owner_id)).items():
            spec = currency_for(currency)
            cells, families = series["cells"], series["families"]
            rows = [(d.isoformat(), [pages.money(cells.get((d, f), 0), currency) for f in families])  # newest first
                    for d in reversed(series["days"]) if any((d, f) in cells for f in families)]
            earnings.append({"currency": currency, "families": families, "rows": rows,
                             "chart": charts.earnings(series["days"], families, cells, spec.asset_scale, currency)})
        return Markup(pages.ENV.get_template("_earnings.html").render(earnings=earnings)), await data.top_generations(pool, owner_id)

    earnings_html, top = await request.app.state.portal_cache.get(owner_id, figures)
    shown = who.is_admin or request.app.state.settings.portal_show_content_to_owners
    return render(request, "owner.html", {
        "session": session, "owner_id": owner_id, "balances": balances.balances, "earnings_html": earnings_html, "top": top,
        "pictures": await data.pictures(pool, [t["generation_id"] for t in top]) if shown else {},
        "periods": await owner_routes.statements(owner_id, who, request),
    })


@router.get("/generations/{generation_id}")
async def generation_page(generation_id: str, session: SignedIn, request: Request) -> Response:
    _checked(GENERATION_ID, generation_id, "generation")
    who = session.principal
    audit = await audit_routes.audit(generation_id, who, request)  # 403 / 404 and redaction, as the API
    parts = [p.model_dump() for p in audit.parts]
    picture = prompt = label = None
    if who.is_admin or request.app.state.settings.portal_show_content_to_owners:
        record = (await queries.generation_audit(request.app.state.pool, generation_id) or {}).get("attribution") or {}
        picture = data.picture_data_uri(record.get("content"))
        conditioning = record.get("conditioning") or {}
        prompt, label = conditioning.get("prompt"), conditioning.get("class_label")
    attribution = audit.attribution or {}
    return render(request, "generation.html", {
        "session": session, "audit": audit, "parts": parts, "chart": charts.shares(parts), "picture": picture,
        "prompt": prompt, "class_label": label, "content_shown": who.is_admin or request.app.state.settings.portal_show_content_to_owners,
        "mode": attribution.get("mode"), "seed": attribution.get("seed"),
        "clusters": [c for c in attribution.get("clusters") or [] if len(c) > 1],
        "viewer": None if who.is_admin else who.owner_id,
    })


@router.get("/owners/{owner_id}/statements/{period_id:path}")
async def statement_download(owner_id: str, period_id: str, session: SignedIn, request: Request, format: str = "csv") -> Response:
    """The API's statement, as a download: ?format=csv (default) or json."""
    _checked(OWNER_ID, owner_id, "owner")
    _checked(PERIOD_ID, period_id, "period")
    if format not in ("csv", "json"):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "statements come as csv or json")
    result = await owner_routes.owner_statement(owner_id, session.principal, request, period_id, format)
    if isinstance(result, Response):  # CSV: the API's response, with its attachment file name
        return result
    filename = f"statement-{owner_id}-{period_id.replace('/', '-').replace(':', '')}.json"
    return Response(result.model_dump_json(indent=2), media_type="application/json",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})
