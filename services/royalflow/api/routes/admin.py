"""Admin-only operations: closing a settlement period and running reconciliation."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status

from royalflow.api.auth import Principal, authenticate_admin
from royalflow.api.models import Amount, ClosedPeriod, ClosePeriod, Error, Reconciliation
from royalflow.api.routes import AUTH_ERRORS
from royalflow.contracts.events import MAX_CLOCK_SKEW
from royalflow.errors import LedgerError
from royalflow.ledger.payouts import close_period, list_periods, period_id
from royalflow.ledger.reconcile import reconcile, record_run

router = APIRouter(prefix="/v1/admin", tags=["admin"], responses=AUTH_ERRORS)
Admin = Annotated[Principal, Depends(authenticate_admin)]


@router.post(
    "/periods/close", response_model=ClosedPeriod, summary="Close a settlement period",
    responses={409: {"model": Error, "description": "That period is already closed, or it has not ended yet "
                                                 "(period_end more than 1 day after the server's clock)."},
               400: {"model": Error, "description": "The ledger refused (e.g. unsupported currency)."}},
)
async def close(body: ClosePeriod, who: Admin, request: Request) -> ClosedPeriod:
    """Pay out every owner's positive balance in the currency, rounded down to the minor unit
    (whole cents for USD); the sub-unit remainder stays on the account and is carried forward.
    Closing the same period_end and currency twice is refused with 409, and so is a period that
    has not ended yet (period_end later than the server's clock plus 1 day of clock skew)."""
    who.require_admin()
    # The request is well formed (the schema's pattern said so); whether its period is over is a
    # question of the current time, the state a 409 describes, not of the body (422).
    latest = datetime.now(UTC) + MAX_CLOCK_SKEW
    if body.period_end > latest:
        raise HTTPException(status.HTTP_409_CONFLICT, f"period ending {body.period_end.isoformat()} has not ended yet "
                            f"(the latest end that can be closed now is {latest.isoformat(timespec='seconds')})")
    pool = request.app.state.pool
    try:
        result = await close_period(pool, body.period_end, currency=body.currency)
    except LedgerError as exc:
        pid = period_id(body.period_end, body.currency)
        closed = any(p["period_id"] == pid for p in await list_periods(pool))
        raise HTTPException(status.HTTP_409_CONFLICT if closed else status.HTTP_400_BAD_REQUEST, str(exc)) from None
    cur = result["currency"]
    return ClosedPeriod(
        period_id=result["period_id"], currency=cur, owners=result["owners"],
        paid=Amount.of(result["paid"], cur), carried_forward=Amount.of(result["carried_forward"], cur),
    )


@router.post("/reconcile", response_model=Reconciliation, summary="Check every ledger invariant")
async def run_reconcile(who: Admin, request: Request) -> Reconciliation:
    """Parts sum to pools, the journal balances, balances equal postings, payouts plus open
    balances equal credits. Always 200 when the check ran: `ok` is false and `problems` names
    the offending records when any invariant fails (a failed check is a finding, not a failed
    request; the CLI `royalflow ledger reconcile` exits non-zero instead)."""
    who.require_admin()
    problems = await reconcile(request.app.state.pool)
    await record_run(request.app.state.pool, "api", problems)
    return Reconciliation(ok=not problems, problems=problems)
