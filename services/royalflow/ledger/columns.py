"""Column parameters of the set-based statements, each sent as ONE text value.

asyncpg encodes a Python list as a PostgreSQL array element by element, and checks every
element against ``collections.abc`` (is it a nested array?). For the ledger's batches of 5,000
parts that was about half of the client CPU of applying a batch (measured: 21-34 ABC checks per
contribution). A column joined into one string costs a single C pass here, and the server splits
it again (``string_to_array``, C):

    text     ``string_to_array($n, $sep)``            values joined by a separator none holds
    numbers  ``string_to_array($n, ',', 'n')::int8[]``  ``str`` of each int, ``n`` for NULL
             ``string_to_array($n, ',')::float8[]``    ``repr`` of each float

Exactness: ``str`` of an int is its digits; ``repr`` of a float is the shortest text that reads
back as the same double, and PostgreSQL's ``float8in`` (``strtod``) rounds correctly, so the server
holds the very same double (``tests/ledger/test_columns.py`` checks this round trip on the server).

The separator: ids are free text (any character JSON can escape), so the first of ``SEPARATORS``
that no value holds is used and sent beside the column. Values that hold every candidate (some
60,000 distinct characters, far beyond one batch's ids) are refused with a ``LedgerError``: the
batch is then applied record by record, where a free separator always exists.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from royalflow.errors import LedgerError

# Unit separator first (never in a real id), then the Unicode private-use planes.
SEPARATORS = ("\x1f", *map(chr, range(0xF0000, 0xF0000 + 60_000)))


def text_columns(*columns: Sequence[str]) -> tuple[list[str], str]:
    """([joined per column], separator) for ``string_to_array(joined, separator)``, one
    separator for them all."""
    if any(len(values) == 1 and not values[0] for values in columns):
        raise LedgerError("a column of one empty string reads back as no value")  # ids are never empty
    for separator in SEPARATORS:
        joined = [separator.join(values) for values in columns]
        # Each value is free of the separator exactly when the joins are the only ones.
        if all(text.count(separator) == max(0, len(values) - 1) for text, values in zip(joined, columns)):
            return joined, separator
    raise LedgerError(f"no free separator for {len(columns)} columns of text")


def int_column(values: Iterable[int | None]) -> str:
    """Integers (None: SQL NULL) for ``string_to_array(joined, ',', 'n')::int8[]``. NULL is a
    letter, not the empty field: a column of one NULL would otherwise read back as no value."""
    values = list(values)
    try:
        return ",".join(map(str, map(int, values)))  # no NULL: the common case, mapped in C
    except TypeError:  # int(None)
        return ",".join(["n" if v is None else str(int(v)) for v in values])


def float_column(values: Iterable[float]) -> str:
    """Floats for ``string_to_array(joined, ',')::float8[]`` (shortest round-trip text)."""
    return ",".join(map(repr, map(float, values)))
