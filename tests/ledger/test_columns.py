"""Columns sent as one text each read back on the server as exactly the values sent: every
float the same double, every int and NULL in place, ids holding the separator get another."""

from __future__ import annotations

import math
import random
import struct

import asyncpg
import pytest

from royalflow.errors import LedgerError
from royalflow.ledger import columns
from royalflow.ledger.columns import float_column, int_column, text_columns


def _doubles(count: int, seed: int) -> list[float]:
    """Random bit patterns (every exponent, subnormals included), finite, plus the edge values."""
    rng = random.Random(seed)
    out = [0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 0.1, 1 / 3, 1e16, 123456789.0]
    while len(out) < count:
        value = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        if math.isfinite(value):
            out.append(value)
    return out


async def test_floats_ints_and_texts_read_back_exactly(fresh_database: str) -> None:
    floats = _doubles(2_000, 1)
    ints = [None, 0, -1, 2**63 - 1, -(2**63), *range(1_000), None]
    texts = ["a", "b/owner-001/0", "é ü 漢字 🙂", "x\x1fy", "with,comma", '"quoted"', "\\", "n", "NULL"]
    (joined,), separator = text_columns(texts)
    assert separator != "\x1f"  # one id holds the unit separator: the next candidate is used
    conn = await asyncpg.connect(fresh_database)
    try:
        got_floats = await conn.fetchval("SELECT string_to_array($1::text, ',')::float8[]", float_column(floats))
        got_ints = await conn.fetchval("SELECT string_to_array($1::text, ',', 'n')::int8[]", int_column(ints))
        got_texts = await conn.fetchval("SELECT string_to_array($1::text, $2::text)", joined, separator)
        one_null = await conn.fetchval("SELECT string_to_array($1::text, ',', 'n')::int8[]", int_column([None]))
        empty = await conn.fetchval("SELECT string_to_array($1::text, ',')::int8[]", int_column([]))
    finally:
        await conn.close()
    assert [struct.pack("<d", v) for v in got_floats] == [struct.pack("<d", v) for v in floats]  # bit for bit
    assert got_ints == ints
    assert got_texts == texts
    assert one_null == [None]  # NULL is a letter: one NULL is not an empty column
    assert empty == []


def test_a_single_empty_text_is_refused() -> None:
    with pytest.raises(LedgerError, match="empty string"):
        text_columns(["a", "b"], [""])
    assert text_columns(["", "a"])[0] == ["\x1f" + "a"]  # two values: the empty one is kept


def test_values_holding_every_separator_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(columns, "SEPARATORS", ("\x1f", "|"))
    assert text_columns(["a|b", "c"])[1] == "\x1f"
    with pytest.raises(LedgerError, match="no free separator"):
        text_columns(["a\x1f", "b|"])  # the batch is then applied record by record
