"""The versioned on-disk registry of model families.

Layout: ``<families_dir>/<family_id>/<version>/manifest.json`` plus the family's weight files
(safetensors). ``manifest["kind"]`` picks the implementation through the table in
``attribution/families`` (``categorical``, ``diffusion``, ``lora``). Families load once and
stay resident (on their device) for the process.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any

from royalflow.attribution.family import Family
from royalflow.contracts.events import FAMILY_ID_PATTERN, FAMILY_VERSION_PATTERN
from royalflow.errors import ConfigurationError, UnknownFamilyError

MAX_RESIDENT_FAMILIES = 16  # bound on memory: families are large on a GPU
_FAMILY_ID = re.compile(FAMILY_ID_PATTERN)
_FAMILY_VERSION = re.compile(FAMILY_VERSION_PATTERN)


def family_ref_problem(family_id: str, version: str) -> str | None:
    """Why ``(family_id, version)`` cannot name a family folder, or None. The event contract's
    patterns: a family no event can name is useless, and ``..`` or ``/`` would leave the
    registry's folder. The version pattern admits ``.`` and ``..``: refused here too."""
    if not _FAMILY_ID.fullmatch(family_id):
        return (f"family id {family_id!r} must match {FAMILY_ID_PATTERN} "
                "(lowercase letters, digits and '-', as in generation events' model_family.id)")
    if not _FAMILY_VERSION.fullmatch(version) or not version.strip("."):
        return (f"family version {version!r} must match {FAMILY_VERSION_PATTERN} "
                "(as in generation events' model_family.version) and not be '.' or '..'")
    return None


def check_family_ref(family_id: str, version: str) -> None:
    """ConfigurationError when ``(family_id, version)`` cannot name a family (family_ref_problem)."""
    problem = family_ref_problem(family_id, version)
    if problem is not None:
        raise ConfigurationError(problem)


def read_manifest(path: Path) -> dict[str, Any]:
    return json.loads((path / "manifest.json").read_text())


def kinds_on_disk(families_dir: Path, *, max_manifests: int = 1000) -> list[str]:
    """The kinds of the families under ``families_dir`` (at most ``max_manifests`` read; an
    unreadable manifest is skipped here: loading that family reports it)."""
    kinds: set[str] = set()
    for count, manifest_path in enumerate(sorted(Path(families_dir).glob("*/*/manifest.json"))):
        if count >= max_manifests:
            break
        try:
            kind = json.loads(manifest_path.read_text()).get("kind")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(kind, str):
            kinds.add(kind)
    return sorted(kinds)


class DiskFamilyRegistry:
    def __init__(self, families_dir: Path, *, device: str = "auto", cpu_threads: int = 1) -> None:
        self.families_dir = Path(families_dir)
        self.device = device
        self.cpu_threads = cpu_threads  # Settings.attribution_cpu_threads
        self._resident: dict[tuple[str, str], Family] = {}
        self._lock = threading.Lock()  # the agent's worker thread and the event loop both look up

    def path(self, family_id: str, version: str) -> Path:
        """The family's folder; ConfigurationError for an id or version no event can name."""
        check_family_ref(family_id, version)
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
            if family_ref_problem(family_id, version) is not None:
                raise UnknownFamilyError(family_id, version)  # a contract error: dead-lettered, never a crash
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

        return load_family(manifest, path, self.device, self.cpu_threads)
