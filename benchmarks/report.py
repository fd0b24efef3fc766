"""The one way a benchmark shows its figures: a table on the terminal and bench-results/<name>.json."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

RESULTS = Path(__file__).resolve().parents[1] / "bench-results"


def print_and_save(name: str, title: str, figures: dict[str, object]) -> Path:
    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in figures.items():
        table.add_row(key, f"{value:,}" if isinstance(value, int) else str(value))
    Console().print(table)
    out = RESULTS / f"{name}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    return out


def print_table_and_save(name: str, text: str, figures: dict[str, object]) -> Path:
    """For benchmarks that lay out their own table: print ``text``, write bench-results/<name>.json."""
    print(text)
    out = RESULTS / f"{name}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {out}")
    return out
