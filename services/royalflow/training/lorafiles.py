"""Checking LoRA files against a base UNet without loading them into it: the safetensors header
and tensors are read directly (no peft, no diffusers loader), so thousands of files check in
seconds. Accepted key forms (what diffusers' ``save_lora_weights`` and peft write), under the
``unet.`` prefix: ``<layer>.lora.down.weight`` / ``<layer>.lora.up.weight``, ``<layer>.lora_A.weight``
/ ``<layer>.lora_B.weight``, and an optional scalar ``<layer>.alpha``. Every layer must be a
Linear layer of the base UNet with A (r, in) and B (out, r) fitting its (out, in) weight.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from royalflow.attribution.families.adapters import MAX_LORA_FILE_BYTES

PREFIX = "unet."
DOWN = (".lora.down.weight", ".lora_A.weight")  # A: (r, in)
UP = (".lora.up.weight", ".lora_B.weight")  # B: (out, r)
ALPHA = ".alpha"
FLOAT_DTYPES = {"F16", "BF16", "F32", "F64"}
MAX_KEYS_PER_FILE = 100_000  # bound on a header: an SDXL UNet LoRA on every Linear has ~2,000
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
    return {name: (int(m.out_features), int(m.in_features))
            for name, m in unet.named_modules() if isinstance(m, torch.nn.Linear)}


def target_module(layer: str) -> str:
    """peft's target_modules name of a layer: its last part (``to_q``), or the last two when
    the last is an index (``to_out.0``)."""
    parts = layer.split(".")
    return ".".join(parts[-2:]) if parts[-1].isdigit() else parts[-1]


def inspect_lora_file(file: Path, shapes: dict[str, tuple[int, int]]) -> LoraFileSummary | str:
    """The summary of a LoRA file that fits the base, or why it does not (a sentence)."""
    from safetensors import SafetensorError, safe_open

    if not file.is_file():
        return "does not exist"
    size = file.stat().st_size
    if size > MAX_LORA_FILE_BYTES:
        return f"is larger than {MAX_LORA_FILE_BYTES} bytes"
    try:
        with safe_open(str(file), framework="pt") as handle:
            keys = list(handle.keys())
            if len(keys) > MAX_KEYS_PER_FILE:
                return f"holds {len(keys)} tensors (more than {MAX_KEYS_PER_FILE})"
            heads = {k: (tuple(handle.get_slice(k).get_shape()), handle.get_slice(k).get_dtype()) for k in keys}
            problem = _layout_problem(heads, shapes)
            if isinstance(problem, str):
                return problem
            for key in keys:  # the data itself: truncated or NaN-filled files are refused here
                if not bool(torch.isfinite(handle.get_tensor(key)).all()):
                    return f"is corrupt: tensor {key} holds NaN or infinite values"
            return problem
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        return f"is corrupt or not a safetensors file ({type(exc).__name__}: {exc})"[:500]


def _layout_problem(heads: dict[str, tuple[tuple[int, ...], str]],
                    shapes: dict[str, tuple[int, int]]) -> LoraFileSummary | str:
    foreign = sorted({k.split(".")[0] for k in heads if not k.startswith(PREFIX)})
    if foreign:
        return f"holds weights for {foreign}; only UNet adapters (keys unet.*) are supported"
    down: dict[str, tuple[int, ...]] = {}
    up: dict[str, tuple[int, ...]] = {}
    for key, (shape, dtype) in heads.items():
        if dtype not in FLOAT_DTYPES:
            return f"does not fit the base UNet: tensor {key} has dtype {dtype}, not floating point"
        name = key[len(PREFIX):]
        if name.endswith(DOWN):
            down[name[:name.rindex(".lora")]] = shape
        elif name.endswith(UP):
            up[name[:name.rindex(".lora")]] = shape
        elif name.endswith(ALPHA) and len(shape) <= 1 and (not shape or shape[0] == 1):
            continue
        else:
            return (f"is not in diffusers' LoRA format: key {key} (expected unet.<layer>.lora.down/up.weight, "
                    "unet.<layer>.lora_A/B.weight or unet.<layer>.alpha)")
    if not down:
        return "holds no UNet LoRA layers"
    unpaired = sorted(set(down) ^ set(up))
    if unpaired:
        return f"does not fit the base UNet: layers without both LoRA factors: {unpaired[:3]}"
    absent = sorted(layer for layer in down if layer not in shapes)
    if absent:
        return (f"does not fit the base UNet: {len(absent)} of its {len(down)} layers do not exist in it "
                f"(or are not Linear), e.g. {absent[:3]}")
    rank = 0
    for layer in sorted(down):
        out, inp = shapes[layer]
        a, b = down[layer], up[layer]
        if len(a) != 2 or len(b) != 2 or a[1] != inp or b[0] != out or a[0] != b[1] or a[0] < 1:
            return (f"does not fit the base UNet: layer {layer} has A {list(a)} and B {list(b)}; "
                    f"the base layer is ({out}, {inp}), so A must be (r, {inp}) and B ({out}, r)")
        rank = max(rank, a[0])
    return LoraFileSummary(rank=rank, layers=sorted(down))


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
