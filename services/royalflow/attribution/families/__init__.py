"""Family kinds and the table the registry dispatches through.

    kind          module                                      models
    categorical   royalflow.attribution.families.categorical  walking-skeleton utility
    diffusion     royalflow.attribution.families.digits       the digits demo: UNet2DModel per coalition
    lora          royalflow.attribution.families.lora         LoRA adapters over a local diffusers pipeline

(The digits kind keeps the manifest name "diffusion": families already on disk say so.)

Each loader takes (manifest document, family folder, device, CPU threads) and returns a ``Family``. Kinds
import lazily: the agent loads torch/diffusers only for the kinds it serves.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from royalflow.attribution.family import Family
from royalflow.attribution.families.manifest import parse_manifest
from royalflow.errors import ConfigurationError

Loader = Callable[[dict[str, Any], Path, str, int], Family]


def _categorical(manifest: dict[str, Any], path: Path, device: str, cpu_threads: int) -> Family:
    from royalflow.attribution.families.categorical import CategoricalFamily

    return CategoricalFamily.from_manifest(manifest, path)


def _diffusion(manifest: dict[str, Any], path: Path, device: str, cpu_threads: int) -> Family:
    from royalflow.attribution.families.digits import DiffusionFamily

    return DiffusionFamily.load(manifest, path, device=device, cpu_threads=cpu_threads)


def _lora(manifest: dict[str, Any], path: Path, device: str, cpu_threads: int) -> Family:
    from royalflow.attribution.diffusion.lean import require
    from royalflow.attribution.families.lora import LoraFamily

    require("transformers", f"LoRA family {manifest.get('family_id')!r}")  # an agent started for digits only
    return LoraFamily.load(manifest, path, device=device)


LOADERS: dict[str, Loader] = {"categorical": _categorical, "diffusion": _diffusion, "lora": _lora}


# The module of each kind, imported by preload() and by the kind's loader.
KIND_MODULES: dict[str, str] = {
    "categorical": "royalflow.attribution.families.categorical",
    "diffusion": "royalflow.attribution.families.digits",
    "lora": "royalflow.attribution.families.lora",
}


def preload(kinds: list[str]) -> list[str]:
    """Import the modules of ``kinds`` now (unknown kinds are skipped): a worker that imports
    torch and diffusers as it starts serves its first batch without them. Returns the kinds
    imported."""
    import importlib

    done = []
    for kind in kinds:
        module = KIND_MODULES.get(kind)
        if module is not None:
            importlib.import_module(module)
            done.append(kind)
    return done


def load_family(manifest: dict[str, Any], path: Path, device: str = "auto", cpu_threads: int = 1) -> Family:
    """Validate the manifest (typed, per kind) and load the family with its kind's loader.
    ``cpu_threads``: threads a batch's model evaluations may run on, on CPU (the digits kind's
    coalition models; the other kinds batch their rows into one forward and ignore it)."""
    kind = manifest.get("kind")
    loader = LOADERS.get(kind) if isinstance(kind, str) else None
    if loader is None:
        raise ConfigurationError(f"family at {path} has unknown kind {kind!r}")
    parse_manifest(manifest, str(path))
    return loader(manifest, path, device, cpu_threads)
