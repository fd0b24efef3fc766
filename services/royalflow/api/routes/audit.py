"""A generation's audit record: everything behind its split.

Who sees what (a decision, documented in the README):
  * admin: any generation, in full (404 if it does not exist);
  * owner with a part in the generation: the full arithmetic of the split (revenue, pool, every
    part's value, share, amount and error bar, method, family version, coalition utilities),
    because one's own share can only be checked against everyone's. Other owners are
    pseudonymised as 'owner#k' (k = position in the attribution's owner list, so coalition
    bitmasks still decode), their contribution ids (which embed owner ids) are withheld, and so
    are the generation's content and conditioning (the end customer's output and prompt);
    content_sha256 stays so the content can be verified;
  * any other owner: 403, also for generations that do not exist, so owner tokens cannot probe
    which generation ids exist.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request, status

from royalflow.api.auth import Principal, authenticate
from royalflow.api.models import Amount, Audit, AuditPart, Error
from royalflow.api.routes import AUTH_ERRORS
from royalflow.ledger import queries

GENERATION_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
WITHHELD_FROM_OWNERS = ("content", "conditioning")

router = APIRouter(prefix="/v1/generations", tags=["audit"], responses=AUTH_ERRORS)


def pseudonyms(record: dict[str, Any], viewer: str) -> dict[str, str]:
    """owner id -> name shown to ``viewer``: itself as is, every other owner as 'owner#k'."""
    attribution = record["attribution"] or {}
    order = list(attribution.get("owners") or sorted(p["owner_id"] for p in record["parts"]))
    order += sorted({p["owner_id"] for p in record["parts"]} - set(order))
    return {owner: owner if owner == viewer else f"owner#{k}" for k, owner in enumerate(order, start=1)}


def redact_attribution(attribution: dict[str, Any] | None, names: dict[str, str]) -> dict[str, Any] | None:
    if attribution is None:
        return None
    view = {k: v for k, v in attribution.items() if k not in WITHHELD_FROM_OWNERS}
    view["owners"] = [names.get(o, o) for o in attribution.get("owners", [])]
    if view.get("clusters"):  # clusters name owners: pseudonymised like everywhere else
        view["clusters"] = [[names.get(o, o) for o in cluster] for cluster in view["clusters"]]
    if isinstance(view.get("screen"), dict):  # the refined owners of a screened family: pseudonymised too
        view["screen"] = {**view["screen"], "refined": [names.get(o, o) for o in view["screen"].get("refined") or []]}
    # Compositional records key utilities by 'component:<owner>'; rename those keys too.
    for key in ("coalition_utilities", "utility_std_errors"):
        if isinstance(view.get(key), dict):
            view[key] = {_rename_component(k, names): v for k, v in view[key].items()}
    return view


def _cluster_of(attribution: dict[str, Any] | None, owner: str, names: dict[str, str]) -> list[str] | None:
    """The cluster (as shown to this viewer) that ``owner`` was paid through, from the record."""
    for cluster in (attribution or {}).get("clusters") or []:
        if owner in cluster:
            return [names.get(o, o) for o in cluster]
    return None


def _rename_component(key: str, names: dict[str, str]) -> str:
    kind, sep, owner = key.partition(":")
    return f"{kind}:{names[owner]}" if sep and kind == "component" and owner in names else key


@router.get(
    "/{generation_id}/audit", response_model=Audit, summary="A generation's audit record",
    responses={404: {"model": Error, "description": "No such generation (admin tokens only; owners get 403)."}},
)
async def audit(
    generation_id: Annotated[str, Path(pattern=GENERATION_ID_PATTERN, description="Generation id.")],
    who: Annotated[Principal, Depends(authenticate)], request: Request,
) -> Audit:
    """Revenue, pool, platform share, each owner's Shapley value, share, amount and error bar,
    method, family version, completeness and the coalition utilities. Admins see any generation
    in full; an owner sees generations it has a part in, with other owners pseudonymised and the
    content withheld."""
    record = await queries.generation_audit(request.app.state.pool, generation_id)
    if not who.is_admin and (record is None or who.owner_id not in {p["owner_id"] for p in record["parts"]}):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this token has no part in that generation")
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no generation {generation_id!r}")
    cur = record["currency"]
    names = {p["owner_id"]: p["owner_id"] for p in record["parts"]} if who.is_admin else pseudonyms(record, who.owner_id or "")
    parts = [
        AuditPart(**{k: v for k, v in p.items() if k not in ("owner_id", "amount", "contribution_id")},
                  owner_id=names[p["owner_id"]], amount=Amount.of(p["amount"], cur),
                  # A contribution id embeds its owner's id: withheld with the owner's identity.
                  contribution_id=p["contribution_id"] if names[p["owner_id"]] == p["owner_id"] else None,
                  cluster=_cluster_of(record["attribution"], p["owner_id"], names))
        for p in record["parts"]
    ]
    return Audit(
        generation_id=generation_id, currency=cur, family_id=record["family_id"], family_version=record["family_version"],
        event_time=record["event_time"], complete=record["complete"], inconsistent=record["inconsistent"],
        revenue=Amount.of(record["revenue_amount"], cur), pool=Amount.of(record["pool_amount"], cur),
        platform=Amount.of(record["platform_amount"], cur), parts=sorted(parts, key=lambda p: p.owner_id),
        attribution=record["attribution"] if who.is_admin else redact_attribution(record["attribution"], names),
        redacted=not who.is_admin,
    )
