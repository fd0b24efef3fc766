"""Turn raw record bytes into a validated event, or a :class:`ContractError` with a reason.

The reasons match ``schemas/dead-letter.v1.json``; consumers put the error on the
dead-letter topic together with the original bytes.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ValidationError

from royalflow import topics
from royalflow.contracts.bounded_json import load_bounded_json
from royalflow.contracts.signing import Verifier
from royalflow.contracts.events import MAX_REVENUE_AMOUNT, WIRE, AttributionRecord, ContributionEvent, GenerationEvent
from royalflow.contracts.fast_contribution import fast_contribution
from royalflow.errors import ContractError
from royalflow.money import currency_for


def _load_json(raw: bytes, max_record_bytes: int) -> object:
    # Size, UTF-8, nesting depth and number literals are bounded before/while parsing: a
    # hostile record is a ContractError, never a RecursionError/ValueError that kills a consumer.
    return load_bounded_json(raw, max_record_bytes)


def _schema_error(exc: ValidationError) -> ContractError:
    # An event time outside the window gets its own reason: the record is well-formed but its
    # time cannot be booked (see contracts.events.check_event_time).
    times = [e for e in exc.errors() if e["loc"] and e["loc"][-1] == "occurred_at" and "event time" in e["msg"]]
    if times:
        return ContractError("invalid_timestamp", times[0]["msg"])
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "<record>"
        parts.append(f"{where}: {err['msg']}")
    return ContractError("schema_violation", "; ".join(parts))


def _check_money(amount: object, currency: str, asset_scale: int, max_amount: int) -> None:
    # Money paths get explicit checks, not asserts (python -O strips asserts).
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise ContractError("invalid_amount", f"amount must be an integer, got {amount!r}")
    if amount < 0:
        raise ContractError("invalid_amount", f"amount {amount} is negative")
    if amount > max_amount:
        raise ContractError("invalid_amount", f"amount {amount} exceeds the per-generation limit {max_amount}")
    try:
        cur = currency_for(currency)
    except Exception as exc:  # MoneyError
        raise ContractError("invalid_amount", str(exc)) from None
    if asset_scale != cur.asset_scale:
        raise ContractError(
            "invalid_amount", f"{currency} amounts use asset scale {cur.asset_scale}, record says {asset_scale}"
        )


def decode_generation(
    raw: bytes, *, max_record_bytes: int = 1_048_576, max_amount: int = MAX_REVENUE_AMOUNT
) -> GenerationEvent:
    doc = _load_json(raw, max_record_bytes)
    # 2. Amount checks come before the schema so that negative/absurd revenue gets its
    #    own reason instead of a generic schema violation.
    revenue = doc.get("revenue") if isinstance(doc, dict) else None
    if isinstance(revenue, dict) and "amount" in revenue:
        _check_money(revenue["amount"], str(revenue.get("currency")), revenue.get("asset_scale", -1), max_amount)
    try:
        return GenerationEvent.model_validate(doc, context=WIRE)
    except ValidationError as exc:
        raise _schema_error(exc) from None


def decode_contribution(raw: bytes, *, max_record_bytes: int = 1_048_576) -> ContributionEvent:
    # 1. The common, well-formed record: a path that only accepts (contracts/fast_contribution.py);
    #    anything else, and every refusal, is decided and worded by the general path below.
    event = fast_contribution(raw) if len(raw) <= max_record_bytes else None
    if event is None:
        doc = _load_json(raw, max_record_bytes)
        try:
            event = ContributionEvent.model_validate(doc, context=WIRE)
        except ValidationError as exc:
            raise _schema_error(exc) from None
    # 2. Money and consistency, on both paths.
    _check_money(event.pool_amount, event.currency, event.asset_scale, MAX_REVENUE_AMOUNT)
    if event.amount > event.pool_amount:
        raise ContractError("inconsistent_contribution", f"amount {event.amount} exceeds pool {event.pool_amount}")
    if event.pool_amount > event.revenue_amount:
        raise ContractError(
            "inconsistent_contribution", f"pool {event.pool_amount} exceeds revenue {event.revenue_amount}"
        )
    return event


def decode_attribution(raw: bytes, *, max_record_bytes: int = 1_048_576) -> AttributionRecord:
    doc = _load_json(raw, max_record_bytes)
    try:
        return AttributionRecord.model_validate(doc, context=WIRE)
    except ValidationError as exc:
        raise _schema_error(exc) from None


def decode_ledger_record(
    topic: str, raw: bytes, *, verifier: Verifier, key: bytes | None, headers: Sequence[tuple[str, bytes | None]],
    max_record_bytes: int = 1_048_576,
) -> ContributionEvent | AttributionRecord:
    """A record on one of the ledger's input topics (``topic`` is the short name, e.g.
    ``topics.CONTRIBUTIONS``), or a :class:`ContractError` naming why it moves no money.

    Nothing moves money unless authenticated: the signature in ``headers`` must come from
    the key set that owns ``topic`` (see contracts/keys.py). It is checked after the size
    limit and BEFORE parsing, so unauthenticated bytes never reach the JSON parser. The
    verifier is a required argument: there is no unverified path into the ledger."""
    if len(raw) > max_record_bytes:
        raise ContractError("oversized_payload", f"{len(raw)} bytes exceeds the limit of {max_record_bytes} bytes")
    verifier.verify(topic, key, raw, headers)
    if topic == topics.ATTRIBUTIONS:
        return decode_attribution(raw, max_record_bytes=max_record_bytes)
    event = decode_contribution(raw, max_record_bytes=max_record_bytes)
    if event.kind == "reversal" and not event.corrects:
        raise ContractError("schema_violation", "a reversal must name the contribution it corrects")
    if topic == topics.CORRECTIONS and event.kind != "reversal":
        raise ContractError("schema_violation", "corrections.v1 carries only kind=reversal records")
    if topic != topics.CORRECTIONS and event.kind == "reversal":
        # Reversals move money away from owners: only the admin key set may sign them, and it
        # signs only corrections.v1. An agent-signed reversal is refused, not applied.
        raise ContractError("schema_violation", "reversals are accepted only on corrections.v1 (admin-signed)")
    return event
