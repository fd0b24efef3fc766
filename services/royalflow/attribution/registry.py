"""The versioned on-disk registry of model families.

Layout: ``<families_dir>/<family_id>/<version>/manifest.json`` plus the family's weight files
(safetensors). ``manifest["kind"]`` picks the implementation through the table in
``attribution/families`` (``categorical``, ``diffusion``, ``lora``). Families load once and
stay resident (on their device) for the process.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from royalflow.attribution.family import Family
from royalflow.errors import UnknownFamilyError

MAX_RESIDENT_FAMILIES = 16  # bound on memory: families are large on a GPU


def read_manifest(path: Path) -> dict[str, Any]:
    return json.loads((path / "manifest.json").read_text())


class DiskFamilyRegistry:
    def __init__(self, families_dir: Path, *, device: str = "auto") -> None:
        self.families_dir = Path(families_dir)
        self.device = device
        self._resident: dict[tuple[str, str], Family] = {}
        self._lock = threading.Lock()  # the agent's worker thread and the event loop both look up

    def path(self, family_id: str, version: str) -> Path:
        return self.families_dir / family_id / version

    def list(self) -> list[dict[str, Any]]:
        out = []
        for manifest_path in sorted(self.families_dir.glob("*/*/manifest.json")):
            manifest = json.loads(manifest_path.read_text())
            out.append({k: manifest.get(k) for k in ("family_id", "version", "kind", "mode", "owners", "pool_fraction")})
        return out

    def get(self, family_id: str, version: str) -> Family:
        key = (family_id, version)
        with self._lock:
            family = self._resident.get(key)
            if family is not None:
                return family
            path = self.path(family_id, version)
            if not (path / "manifest.json").is_file():
                raise UnknownFamilyError(family_id, version)
            if len(self._resident) >= MAX_RESIDENT_FAMILIES:
                self._resident.pop(next(iter(self._resident)))  # evict the oldest loaded
            family = self._load(read_manifest(path), path)
            self._resident[key] = family
            return family

    def _load(self, manifest: dict[str, Any], path: Path) -> Family:
        # One table from kind to loader (attribution/families); the manifest is validated there.
        from royalflow.attribution.families import load_family

        return load_family(manifest, path, self.device)
