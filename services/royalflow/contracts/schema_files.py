"""Where the JSON Schema files live: ``schemas/`` at the repository root."""

from __future__ import annotations

from pathlib import Path

SCHEMAS_DIR = Path(__file__).resolve().parents[3] / "schemas"


def schema_path(name: str) -> Path:
    """``schema_path("generation-event.v1")`` -> .../schemas/generation-event.v1.json"""
    return SCHEMAS_DIR / f"{name}.json"
