"""Reading LoRA files as factors (A, B) per layer through diffusers' own LoRA reader, without
peft, with the checks diffusers leaves to the caller: right checksum, UNet keys only, every
layer of the file a Linear layer of the base with shapes that fit, finite values."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from royalflow.errors import ConfigurationError

LORA_FILE = "pytorch_lora_weights.safetensors"  # what diffusers' LoRA serialisation writes
MAX_LORA_FILE_BYTES = 2 * 2**30  # bound on one adapter file read into memory


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read_state(file: Path, sha256: str | None) -> tuple[dict[str, torch.Tensor], dict[str, float] | None]:
    """A LoRA file's UNet state dict and network alphas through diffusers' own LoRA reader (which
    normalises the common formats); ConfigurationError naming the file when it is missing, too
    large, altered (checksum), unreadable or not a UNet LoRA."""
    from diffusers import StableDiffusionPipeline

    file = Path(file)
    if not file.is_file():
        raise ConfigurationError(f"LoRA file {file} does not exist")
    if file.stat().st_size > MAX_LORA_FILE_BYTES:
        raise ConfigurationError(f"LoRA file {file} exceeds {MAX_LORA_FILE_BYTES} bytes")
    if sha256 is not None and sha256_file(file) != sha256:
        raise ConfigurationError(f"LoRA file {file} does not match its manifest checksum")
    try:
        state, alphas = StableDiffusionPipeline.lora_state_dict(str(file.parent), weight_name=file.name,
                                                                local_files_only=True)
    except Exception as exc:  # safetensors/diffusers raise many types for a bad file
        raise ConfigurationError(f"LoRA file {file} is not readable LoRA weights: {type(exc).__name__}: {exc}") from None
    foreign = sorted({k.split(".")[0] for k in state if not k.startswith("unet.")})
    if foreign:
        raise ConfigurationError(f"LoRA file {file} holds weights for {foreign}; only UNet adapters are supported")
    return state, alphas


DOWN_SUFFIXES = (".lora_A.weight", ".lora.down.weight", ".lora_down.weight")
UP_SUFFIXES = (".lora_B.weight", ".lora.up.weight", ".lora_up.weight")
Factors = dict[str, tuple[torch.Tensor, torch.Tensor]]  # layer -> (A (r, in), B * scaling (out, r))


def linear_shapes(unet: torch.nn.Module) -> dict[str, tuple[int, int]]:
    """(out_features, in_features) of every Linear layer of the UNet, by module name."""
    return {name: (m.out_features, m.in_features) for name, m in unet.named_modules() if isinstance(m, torch.nn.Linear)}


def read_factors(file: Path, *, sha256: str | None = None, expected: dict[str, tuple[int, int]] | None = None) -> Factors:
    """One LoRA file's factors WITHOUT peft: layer module name (``down_blocks.0...attn1.to_q``)
    -> (A (r, in), B (out, r) with the adapter's scaling alpha / r folded in), float32 on CPU.

    ``expected``: the base UNet's Linear shapes (``linear_shapes``); every layer of the file must
    exist there with fitting shapes. ConfigurationError naming the file on any problem: missing,
    too large, altered (checksum), unreadable, not a UNet LoRA, an unpaired or misshapen factor."""
    file = Path(file)
    state, alphas = _read_state(file, sha256)
    downs: dict[str, torch.Tensor] = {}
    ups: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        for suffixes, into in ((DOWN_SUFFIXES, downs), (UP_SUFFIXES, ups)):
            suffix = next((s for s in suffixes if key.endswith(s)), None)
            if suffix is not None:
                into[key[len("unet."):-len(suffix)]] = tensor
    if not downs:
        raise ConfigurationError(f"LoRA file {file} holds no UNet LoRA layers")
    if set(downs) != set(ups):
        raise ConfigurationError(f"LoRA file {file}: layers without both factors: {sorted(set(downs) ^ set(ups))[:3]}")
    factors: Factors = {}
    for layer in sorted(downs):
        a, b = downs[layer].to(torch.float32), ups[layer].to(torch.float32)
        if a.dim() != 2 or b.dim() != 2 or a.shape[0] != b.shape[1]:
            raise ConfigurationError(f"LoRA file {file}: layer {layer} has factors {tuple(a.shape)} and {tuple(b.shape)}")
        if expected is not None:
            if layer not in expected:
                raise ConfigurationError(f"LoRA file {file} does not fit the base UNet: no Linear layer {layer}")
            if (b.shape[0], a.shape[1]) != expected[layer]:
                raise ConfigurationError(f"LoRA file {file} does not fit the base UNet: layer {layer} is "
                                         f"{expected[layer]}, the adapter {(b.shape[0], a.shape[1])}")
        rank = a.shape[0]
        alpha = (alphas or {}).get(f"unet.{layer}.alpha", (alphas or {}).get(f"{layer}.alpha"))
        scaling = float(alpha) / rank if alpha is not None else 1.0
        if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
            raise ConfigurationError(f"LoRA file {file}: layer {layer} holds non-finite weights")
        factors[layer] = (a.contiguous(), (b * scaling).contiguous())
    return factors
