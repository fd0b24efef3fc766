"""An owner's own data: balances, contributions (cursor-paginated) and statements."""

from __future__ import annotations

from typing import Annotated, Literal

import asyncpg
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, status
from fastapi.responses import PlainTextResponse

from royalflow.api.auth import Principal, authenticate
from royalflow.api.models import Amount, Balance, Balances, Contribution, ContributionPage, Error, Period, Statement, StatementLine
from royalflow.api.routes import AUTH_ERRORS
from royalflow.errors import LedgerError
from royalflow.ledger import queries
from royalflow.ledger.payouts import list_periods
from royalflow.ledger.queries import CURSOR_LENGTH, CURSOR_PATTERN
from royalflow.ledger.statements import statement, statement_csv
from royalflow.money import currency_for

OWNER_ID_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9._:@-]{0,127}$"
PERIOD_ID_PATTERN = r"^[0-9A-Za-z:+._-]{1,64}/[A-Z]{3}$"  # "<period_end ISO 8601>/<currency>"
PAGE_LIMIT_MAX = 500
PAGE_LIMIT_DEFAULT = 100

OwnerId = Annotated[str, Path(pattern=OWNER_ID_PATTERN, description="Owner id, as in contribution events.")]
Auth = Annotated[Principal, Depends(authenticate)]

router = APIRouter(prefix="/v1/owners/{owner_id}", tags=["owners"], responses=AUTH_ERRORS)


@router.get("/balances", response_model=Balances, summary="Lifetime and rolling balances")
async def balances(owner_id: OwnerId, who: Auth, request: Request) -> Balances:
    """Per currency: lifetime credits, the available balance, and credits in the rolling
    1h / 24h / 7d / 30d windows by event time (hour buckets, so a window reaches back up to one
    extra hour). Amounts are exact integers plus exact decimal strings."""
    who.require_owner(owner_id)
    rows = await queries.owner_balances(request.app.state.pool, owner_id)
    return Balances(owner_id=owner_id, balances=[
        Balance(
            currency=r["currency"], asset_scale=currency_for(r["currency"]).asset_scale,
            lifetime=Amount.of(r["lifetime"], r["currency"]), available=Amount.of(r["available"], r["currency"]),
            windows={k: Amount.of(v, r["currency"]) for k, v in r["windows"].items()},
        )
        for r in rows
    ])


@router.get(
    "/contributions", response_model=ContributionPage, summary="Contributions, cursor-paginated",
    responses={400: {"model": Error, "description": "The ledger could not read the cursor; start again from the first page. "
                                                 "(Every cursor of the documented pattern is read: this is a safety net.)"}},
)
async def contributions(
    owner_id: OwnerId, who: Auth, request: Request,
    cursor: Annotated[str | None, Query(
        pattern=CURSOR_PATTERN, min_length=CURSOR_LENGTH, max_length=CURSOR_LENGTH, examples=["AAAAAAAAAP8"],
        description="The previous page's next_cursor, unchanged; omit for the first page. Opaque, but of one shape: "
        f"{CURSOR_LENGTH} base64url characters (no padding). Any cursor of that shape is accepted: one that points "
        "beyond the last contribution gives an empty page.",
    )] = None,
    limit: Annotated[int, Query(ge=1, le=PAGE_LIMIT_MAX, description=f"Page size, 1..{PAGE_LIMIT_MAX}.")] = PAGE_LIMIT_DEFAULT,
) -> ContributionPage:
    """The owner's contributions in settlement order. Keyset pagination: pages neither skip nor
    repeat rows while new contributions keep arriving (they appear on later pages)."""
    who.require_owner(owner_id)
    try:
        rows, next_cursor = await queries.contributions_page(request.app.state.pool, owner_id, after=cursor, limit=limit)
    except (LedgerError, asyncpg.DataError, OverflowError):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "invalid cursor: pass next_cursor from a previous page unchanged") from None
    items = [
        Contribution(**{k: v for k, v in r.items() if k not in ("amount", "currency")}, amount=Amount.of(r["amount"], r["currency"]))
        for r in rows
    ]
    return ContributionPage(owner_id=owner_id, items=items, next_cursor=next_cursor)


@router.get("/statements", response_model=list[Period], summary="Closed periods with a statement")
async def statements(owner_id: OwnerId, who: Auth, request: Request) -> list[Period]:
    """Every closed settlement period, oldest first, each linking this owner's statement."""
    who.require_owner(owner_id)
    return [
        Period(**p, href=f"/v1/owners/{owner_id}/statements/{p['period_id']}")
        for p in await list_periods(request.app.state.pool)
    ]


@router.get(
    "/statements/{period_id:path}", response_model=Statement, summary="One period's statement (JSON or CSV)",
    responses={
        200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "JSON, or CSV with ?format=csv."},
        404: {"model": Error, "description": "No such closed period."},
    },
)
async def owner_statement(
    owner_id: OwnerId, who: Auth, request: Request,
    period_id: Annotated[str, Path(pattern=PERIOD_ID_PATTERN, description="From the statements list, e.g. '2026-12-01T00:00:00+00:00/USD'.")],
    format: Annotated[Literal["json", "csv"], Query(description="json (default) or csv.")] = "json",
) -> Statement | Response:
    """Every credit settled in the period, the payout (rounded down to the minor unit) and the
    remainder carried forward. payout + carried_forward = the balance at close: this period's
    credits plus the previous remainder, minus any reversals."""
    who.require_owner(owner_id)
    try:
        data = await statement(request.app.state.pool, owner_id, period_id)
    except LedgerError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    if format == "csv":
        filename = f"statement-{owner_id}-{period_id.replace('/', '-').replace(':', '')}.csv"
        return PlainTextResponse(
            statement_csv(data), media_type="text/csv", headers={"Content-Disposition": f'attachment; filename="{filename}"'}
        )
    cur = data["currency"]
    return Statement(
        owner_id=owner_id, period_id=data["period_id"], currency=cur, asset_scale=data["asset_scale"],
        credits=Amount.of(data["credits"], cur), payout=Amount.of(data["payout"], cur),
        carried_forward=Amount.of(data["carried_forward"], cur),
        lines=[
            StatementLine(**{k: v for k, v in line.items() if k not in ("amount", "amount_decimal")}, amount=Amount.of(line["amount"], cur))
            for line in data["lines"]
        ],
    )
