"""A fast path for the ledger's most common record: a contribution as the agent writes it.

The general path (bounded JSON parsing with a Python hook per number and per object, then the
pydantic model with Python validators) cost about 15 us per contribution, a third of the
ledger's CPU per record. The agent writes every contribution one way (``to_json_bytes``: all
fields, model order, compact, no escapes in practice), so this path matches that one layout
with a single compiled pattern that is the JSON grammar restricted to it, and checks the
contract on the captured text. It only ever ACCEPTS: anything else (another key order, spaces,
an escape, a missing or extra field, any value out of bounds, a timestamp in another form)
returns None and the caller runs the general path, which decides and words every refusal. So
the decode step refuses exactly what it refused before, with the same reasons;
tests/contracts/test_fast_contribution.py checks, over mutated records and texts, that whatever
this path accepts the general path accepts as an equal event and the JSON Schema accepts too.

Why a match here is a record the general path accepts (see contracts/bounded_json.py):

1. Size and UTF-8: the size is checked by the caller, the text decoded as UTF-8 here.
2. Syntax: the pattern is JSON's grammar for this one object (strings without escapes: any
   character but ``"``, ``\\`` and U+0000-U+001F, as the strict parser allows; numbers as
   RFC 8259 writes them, integers without a fraction or exponent, floats with one). Each key
   appears once, in place, so there are no duplicate keys and nothing is nested (depth 1).
3. Values: strings are the captured text (no escapes: no lone surrogates, the same str the
   parser builds); integers ``int(text)`` of at most 30 digits (the bound on integer literals);
   floats through the general path's own bounded hook (length, finiteness).
4. The contract: every field of ContributionEvent, its strict type (the grammar above: no bool,
   no int for a float, no float for an int), its bounds and patterns, the wire tag, and the
   event-time window; timestamps only in the RFC 3339 form the agent writes, which the model
   parses to the same instant (checked over every offset by the tests).

The event is built the way pydantic builds a validated model (the same four slots, fields in
model order), with ``datetime.timezone`` offsets instead of pydantic's own tzinfo class: equal
instants, the same JSON, and cheaper to compare and convert downstream.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

from royalflow.contracts.bounded_json import MAX_INTEGER_DIGITS, _bounded_float
from royalflow.contracts.events import (
    EARLIEST_EVENT_TIME, MAX_CLOCK_SKEW, OWNER_ID_PATTERN, ContributionEvent, _CURRENCY,
)
from royalflow.errors import ConfigurationError, ContractError

SCHEMA_TAG = "royalflow.contribution.v1"


def _body(pattern: str) -> str:
    # The model's patterns are anchored ^...$; inside a JSON string the closing quote anchors.
    if not (pattern.startswith("^") and pattern.endswith("$")):
        raise ConfigurationError(f"pattern {pattern!r} is not anchored")
    return pattern[1:-1]


# JSON's grammar, restricted (bound 2). A string without escapes, of n to m characters:
def _string(low: int = 0, high: int | None = None) -> str:
    return '"([^"\\\\\\x00-\\x1f]{%d,%s})"' % (low, "" if high is None else high)


_NATURAL = "(0|[1-9][0-9]{0,%d})" % (MAX_INTEGER_DIGITS - 1)  # a non-negative integer literal
_FLOAT = "(-?(?:0|[1-9][0-9]*)(?:\\.[0-9]+(?:[eE][-+]?[0-9]+)?|[eE][-+]?[0-9]+))"  # with a fraction or exponent
# The form the agent writes (a subset of the schema's pattern).
_TIMESTAMP = ('"(2[0-9]{3}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\\.[0-9]{1,6})?'
              '(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9]))"')
# (wire key, value pattern) in model order: the one layout of to_json_bytes.
_LAYOUT = (
    ("schema", '"royalflow\\.contribution\\.v1"'),
    ("contribution_id", _string(1, 300)),
    ("generation_id", _string(1, 128)),
    ("owner_id", f'"({_body(OWNER_ID_PATTERN)})"'),
    ("occurred_at", _TIMESTAMP),
    ("family_id", _string()),
    ("family_version", _string()),
    ("method", '"(exact|permutation|mixture|unattributed)"'),
    ("shapley_value", _FLOAT),
    ("std_error", _FLOAT),
    ("share", _FLOAT),
    ("amount", _NATURAL),
    ("currency", f'"({_body(_CURRENCY)})"'),
    ("asset_scale", _NATURAL),
    ("pool_amount", _NATURAL),
    ("revenue_amount", _NATURAL),
    ("parts_total", _NATURAL),
    ("kind", '"(attribution|reversal)"'),
    ("corrects", "(?:null|%s)" % _string()),
)
_RECORD = re.compile("\\{%s\\}" % ",".join(f'"{key}":{value}' for key, value in _LAYOUT), re.ASCII).fullmatch
_FIELDS = ("schema_", "contribution_id", "generation_id", "owner_id", "occurred_at", "family_id", "family_version",
           "method", "shapley_value", "std_error", "share", "amount", "currency", "asset_scale", "pool_amount",
           "revenue_amount", "parts_total", "kind", "corrects")
# A field added to ContributionEvent must be added here too (refused at import, not guessed).
if tuple(ContributionEvent.model_fields) != _FIELDS or ("schema", *_FIELDS[1:]) != tuple(k for k, _ in _LAYOUT):
    raise ConfigurationError("contracts.fast_contribution is out of date with ContributionEvent's fields")
_FIELDS_SET = set(_FIELDS)  # every field was given (copied per event: pydantic's copies update theirs)
_new = object.__new__
_set = object.__setattr__
_isfinite = math.isfinite

# Timestamp text -> its instant, at most _PARSED_MAX of them: the parts of one generation carry
# one event time, so most records find theirs here. The window's upper end moves with the clock
# and is checked on every record.
_PARSED: dict[str, datetime] = {}
_PARSED_MAX = 4096


def _time(text: str) -> datetime | None:
    value = _PARSED.get(text)
    if value is None:
        try:
            value = datetime.fromisoformat(text)
        except ValueError:  # e.g. day 31 of a 30-day month: the general path words the refusal
            return None
        if value < EARLIEST_EVENT_TIME:
            return None
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[text] = value
    if value > datetime.now(UTC) + MAX_CLOCK_SKEW:
        return None
    return value


def fast_contribution(raw: bytes) -> ContributionEvent | None:
    """The event, if ``raw`` is a contribution in the agent's layout that this path can vouch
    for; else None (the caller then runs the general path). ``raw`` is within the size limit."""
    # 1. UTF-8, then the layout: syntax, key order, strict types, patterns (bounds 1, 2).
    try:
        match = _RECORD(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return None
    if match is None:
        return None
    (cid, gid, owner, when, family_id, family_version, method, phi_text, std_text, share_text, amount, currency,
     scale, pool, revenue, parts, kind, corrects) = match.groups()
    # 2. Numbers as the general path reads them (bound 3), within the model's bounds (bound 4).
    try:
        phi, std, share = _bounded_float(phi_text), _bounded_float(std_text), _bounded_float(share_text)
    except ContractError:  # too long a literal, or not finite
        return None
    amount, scale, pool, revenue, parts = int(amount), int(scale), int(pool), int(revenue), int(parts)
    if not (_isfinite(phi) and std >= 0 and 0 <= share <= 1 and scale <= 18 and 1 <= parts <= 100_000):
        return None
    occurred_at = _time(when)
    if occurred_at is None:
        return None
    # 3. The model, built as validation builds it: fields in model order, every field given.
    event = _new(ContributionEvent)
    _set(event, "__dict__", {
        "schema_": SCHEMA_TAG, "contribution_id": cid, "generation_id": gid, "owner_id": owner,
        "occurred_at": occurred_at, "family_id": family_id, "family_version": family_version, "method": method,
        "shapley_value": phi, "std_error": std, "share": share, "amount": amount, "currency": currency,
        "asset_scale": scale, "pool_amount": pool, "revenue_amount": revenue, "parts_total": parts, "kind": kind,
        "corrects": corrects,
    })
    _set(event, "__pydantic_fields_set__", _FIELDS_SET.copy())
    _set(event, "__pydantic_extra__", None)
    _set(event, "__pydantic_private__", None)
    return event
