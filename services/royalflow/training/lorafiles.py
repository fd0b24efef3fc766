"""Checking LoRA files against a base UNet without loading them into it (no peft): the files'
factors are read with the runtime's reader (``attribution/families/adapters.read_factors``)
against the base UNet's Linear shapes, which come from its config on the meta device (no
weights read), so thousands of files check in seconds. Every layer must be a Linear layer of
the base UNet with A (r, in) and B (out, r) fitting its (out, in) weight, values finite.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from royalflow.attribution.families.adapters import linear_shapes
from royalflow.errors import ConfigurationError

COPY_CHUNK_BYTES = 1 << 20


@dataclass
class LoraFileSummary:
    """What a good file holds: its rank (the largest over its layers) and its target modules."""

    rank: int = 0
    layers: list[str] = field(default_factory=list)


def base_linear_shapes(base_folder: Path) -> dict[str, tuple[int, int]]:
    """Every Linear layer of the base UNet: module name -> (out, in). Built from the UNet's
    config on the meta device: no weights are read."""
    from diffusers import UNet2DConditionModel

    config = UNet2DConditionModel.load_config(str(Path(base_folder) / "unet"), local_files_only=True)
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(config)
    return linear_shapes(unet)


def target_module(layer: str) -> str:
    """peft's target_modules name of a layer: its last part (``to_q``), or the last two when
    the last is an index (``to_out.0``)."""
    parts = layer.split(".")
    return ".".join(parts[-2:]) if parts[-1].isdigit() else parts[-1]


def inspect_lora_file(file: Path, shapes: dict[str, tuple[int, int]]) -> LoraFileSummary | str:
    """The summary of a LoRA file that fits the base, or why it does not (a sentence naming the
    file). The runtime's own reader (``adapters.read_factors``): what it accepts here, the
    family accepts at load time."""
    from royalflow.attribution.families.adapters import read_factors

    try:
        factors = read_factors(file, expected=shapes)
    except ConfigurationError as exc:
        return str(exc)
    return LoraFileSummary(rank=max(int(a.shape[0]) for a, _ in factors.values()), layers=sorted(factors))


def copy_with_digest(source: Path, target: Path) -> str:
    """Copy ``source`` to ``target`` (atomically: a temporary file, then a rename) and return
    the sha256 of the bytes written: one read of each file for both."""
    digest = hashlib.sha256()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    with open(source, "rb") as reader, open(tmp, "wb") as writer:
        for chunk in iter(lambda: reader.read(COPY_CHUNK_BYTES), b""):
            digest.update(chunk)
            writer.write(chunk)
    os.replace(tmp, target)
    return digest.hexdigest()
