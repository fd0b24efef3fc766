"""Admin pages: every owner's balance, the last reconciliation and its problems (and a button to
run one now), dead letters by reason, families with their clusters. Admin sessions only: an
owner's session gets 403, as an owner token does on /v1/admin."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.responses import RedirectResponse

from royalflow.api.portal import data
from royalflow.api.portal.pages import render
from royalflow.api.portal.sessions import Session, check_csrf, current, form
from royalflow.ledger import queries
from royalflow.ledger.reconcile import last_run, reconcile, record_run

router = APIRouter(prefix="/portal/admin", include_in_schema=False)


async def admin_session(session: Annotated[Session, Depends(current)]) -> Session:
    session.principal.require_admin()
    return session


AdminSession = Annotated[Session, Depends(admin_session)]


@router.get("")
async def admin_page(session: AdminSession, request: Request) -> Response:
    pool = request.app.state.pool
    settings = request.app.state.settings
    return render(request, "admin.html", {
        "session": session,
        "balances": await queries.all_balances(pool),
        "totals": await queries.settlement_totals(pool),
        "incomplete": await queries.incomplete_generations(pool, limit=20),
        "reconciliation": await last_run(pool),
        "dead_letters": await request.app.state.portal_dead_letters.get(settings),
        "families": data.families(settings),
        "ledger_families": await data.ledger_families(pool),
    })


@router.post("/reconcile")
async def reconcile_now(session: AdminSession, request: Request) -> Response:
    """Run every reconciliation check now and keep the outcome (CSRF-protected)."""
    check_csrf(session.csrf, (await form(request)).get("csrf"))
    problems = await reconcile(request.app.state.pool, attribution_grace_seconds=request.app.state.settings.attribution_grace_seconds)
    await record_run(request.app.state.pool, "portal", problems)
    return RedirectResponse("/portal/admin#reconciliation", status.HTTP_303_SEE_OTHER)
