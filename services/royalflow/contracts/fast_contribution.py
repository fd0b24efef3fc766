"""A fast path for the ledger's most common record: a well-formed contribution.

The general path (bounded JSON parsing with a Python hook per number and per object, then the
pydantic model with Python validators) costs about 15 us per contribution, a third of the
ledger's CPU per record. This path parses with the standard library's C scanner and no hooks
and checks the contract field by field, and it only ever ACCEPTS: anything it is not sure of
(an unusual number literal, a timestamp in another format, a missing or extra field, any value
out of bounds) returns None and the caller runs the general path, which decides and words
every refusal. So the decode step refuses exactly what it refused before, with the same
reasons; tests/contracts/test_fast_contribution.py checks that whatever this path accepts the
general path accepts too, as an equal event, and that the JSON Schema accepts it.

Why accepting here implies accepting there, bound by bound (see contracts/bounded_json.py):

1. Size and UTF-8: checked the same way before parsing; depth: an accepted record is flat.
2. Number literals: the parser is the same C scanner, floats go through the same bounded hook
   (length, finiteness) and ``NaN``/``Infinity`` through the same refusal; integers are parsed
   without a hook (a Python call per literal was the costly part) and their values are bounded
   instead: JSON has no leading zeros, so a value below 10^30 had at most 30 digits.
3. Escapes: a record with a backslash goes to the general path, so every string here is plain
   UTF-8 text (no lone surrogates, no escaped quotes), parsed alike by both parsers.
4. Duplicate keys: with no escaped quotes every ``"`` delimits a string, so the quotes in the
   text count the strings: keys plus string values. They equal the distinct keys plus the
   string values of the parsed object only if no key appears twice (and nothing is nested).
5. The contract: every field of ContributionEvent, in the order and layout the agent writes
   them (to_json_bytes: all fields, model order; any other layout takes the general path), its
   type (strict: no bool for an int, no int for a float), its bounds and patterns, the wire tag,
   and the event-time window; timestamps only in the RFC 3339 form the agent writes, which the
   model parses to the same instant.

The event is built the way pydantic builds a validated model (the same four slots), with
``datetime.timezone`` offsets instead of pydantic's own tzinfo class: equal instants, the same
JSON, and cheaper to compare and convert downstream (the journal sorts and buckets by time).
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from typing import Any

from royalflow.contracts.bounded_json import MAX_INTEGER_DIGITS, _bounded_float, _no_constant
from royalflow.contracts.events import (
    EARLIEST_EVENT_TIME, MAX_CLOCK_SKEW, OWNER_ID_PATTERN, ContributionEvent, _CURRENCY,
)
from royalflow.errors import ConfigurationError

SCHEMA_TAG = "royalflow.contribution.v1"
INTEGER_BOUND = 10**MAX_INTEGER_DIGITS  # an integer below it had at most that many digits (bound 2)
# Parses like the general path's decoder: same scanner, strict, floats bounded by the same hook,
# constants refused; integers without a hook (bounded by value below).
_PLAIN = json.JSONDecoder(parse_float=_bounded_float, parse_constant=_no_constant)


def _fullmatch(pattern: str) -> Any:
    # The model's patterns are anchored ^...$ (Rust regex: $ is the very end); Python's $ also
    # matches before a final newline, so match the unanchored body in full instead.
    if not (pattern.startswith("^") and pattern.endswith("$")):
        raise ConfigurationError(f"pattern {pattern!r} is not anchored")
    return re.compile(pattern[1:-1], re.ASCII).fullmatch


_OWNER_ID = _fullmatch(OWNER_ID_PATTERN)
_CURRENCY_CODE = _fullmatch(_CURRENCY)
# The form the agent writes (a subset of the schema's pattern); the model parses it to the
# same instant, offset and microseconds (checked over every offset by the tests).
_TIMESTAMP = re.compile(r"2[0-9]{3}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?"
                        r"(Z|[+-](0[0-9]|1[0-9]|2[0-3]):[0-5][0-9])", re.ASCII).fullmatch
_METHODS = frozenset(("exact", "permutation", "mixture", "unattributed"))
_KINDS = frozenset(("attribution", "reversal"))
_FIELDS = ("schema_", "contribution_id", "generation_id", "owner_id", "occurred_at", "family_id", "family_version",
           "method", "shapley_value", "std_error", "share", "amount", "currency", "asset_scale", "pool_amount",
           "revenue_amount", "parts_total", "kind", "corrects")
# A field added to ContributionEvent must be added here too (refused at import, not guessed).
if tuple(ContributionEvent.model_fields) != _FIELDS:
    raise ConfigurationError("contracts.fast_contribution is out of date with ContributionEvent's fields")
# The agent writes every field, in model order (to_json_bytes): the one layout checked here.
_WIRE_KEYS = ("schema", *_FIELDS[1:])
_TYPES = (str, str, str, str, str, str, str, str, float, float, float, int, str, int, int, int, int, str, type(None))
_TYPES_CORRECTING = (*_TYPES[:-1], str)  # a reversal names the contribution it corrects
_FIELDS_SET = set(_FIELDS)  # every field was given (copied per event: pydantic's copies update theirs)
_STRINGS = 9  # string fields besides kind and corrects (step 3)
_new = object.__new__
_set = object.__setattr__
_isfinite = math.isfinite


def _time(text: str) -> datetime | None:
    if _TIMESTAMP(text) is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:  # e.g. day 31 of a 30-day month: the general path words the refusal
        return None
    if value < EARLIEST_EVENT_TIME or value > datetime.now(UTC) + MAX_CLOCK_SKEW:
        return None
    return value


def fast_contribution(raw: bytes) -> ContributionEvent | None:
    """The event, if ``raw`` is a contribution this path can vouch for; else None (the caller
    then runs the general path). ``raw`` is within the size limit already."""
    # 1. Escapes (bound 3). Depth needs no scan here: anything nested is refused below, and
    #    the C scanner raises RecursionError (caught) long before the stack is at risk.
    if b"\\" in raw:
        return None
    try:
        text = raw.decode("utf-8")
        doc, end = _PLAIN.raw_decode(text)
    except Exception:  # noqa: BLE001 - any failure: the general path words it
        return None
    # 2. Every field once, in model order, of its strict type (bound 5): no missing or extra
    #    field, no bool for an int, no int for a float, nothing nested.
    if end != len(text) or type(doc) is not dict or tuple(doc) != _WIRE_KEYS:
        return None
    values = tuple(doc.values())
    types = tuple(map(type, values))
    if types != _TYPES and types != _TYPES_CORRECTING:
        return None
    (schema, cid, gid, owner, when, _, _, method, phi, std, share, amount, currency, scale, pool, revenue, parts,
     kind, corrects) = values
    # 3. No key twice (bound 4): quotes = 2 x (keys + string values).
    if raw.count(b'"') != 2 * (len(values) + _STRINGS + 1 + (corrects is not None)):
        return None
    # 4. Values within the model's bounds and patterns (integers: bound 2).
    if not (
        schema == SCHEMA_TAG and 1 <= len(cid) <= 300 and 1 <= len(gid) <= 128 and _OWNER_ID(owner) is not None
        and method in _METHODS and _isfinite(phi) and 0 <= std and _isfinite(std) and 0 <= share <= 1
        and 0 <= amount < INTEGER_BOUND and _CURRENCY_CODE(currency) is not None and 0 <= scale <= 18
        and 0 <= pool < INTEGER_BOUND and 0 <= revenue < INTEGER_BOUND and 1 <= parts <= 100_000 and kind in _KINDS
    ):
        return None
    occurred_at = _time(when)
    if occurred_at is None:
        return None
    # 5. The model, built as validation builds it: fields in model order, every field given.
    fields = dict(zip(_FIELDS, values))
    fields["occurred_at"] = occurred_at
    event = _new(ContributionEvent)
    _set(event, "__dict__", fields)
    _set(event, "__pydantic_fields_set__", _FIELDS_SET.copy())
    _set(event, "__pydantic_extra__", None)
    _set(event, "__pydantic_private__", None)
    return event
