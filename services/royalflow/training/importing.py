"""Registering LoRA files trained elsewhere (for example the ``pytorch_lora_weights.safetensors``
that diffusers' LoRA training scripts write) as a family: one file per coalition mask (exact)
or per owner (compositional), optionally a control for v(∅) (mask 0x0; without one, v(∅) is
the plain base). Every file is loaded into the base UNet first, so a file that does not fit
the base is refused with an error naming it, before anything is written. Files are copied
into the family folder and their sha256 checksums go in the manifest."""

from __future__ import annotations

import shutil
from pathlib import Path

from royalflow.attribution.families.adapters import LORA_FILE, load_adapter_file, sha256_file
from royalflow.attribution.families.base import load_base
from royalflow.errors import ConfigurationError
from royalflow.training.lora import write_manifest

import torch


def parse_adapter_keys(files: dict[str, Path], owners: list[str], mode: str) -> dict[int, Path]:
    """Keys are hex masks (``0x5``) or, in compositional mode, owner ids (and ``_control``)."""
    masks: dict[int, Path] = {}
    for key, file in files.items():
        if key == "_control":
            mask = 0
        elif key in owners:
            if mode != "compositional":
                raise ConfigurationError(f"exact mode takes one file per coalition mask (0x1..), not owner {key!r}")
            mask = 1 << owners.index(key)
        else:
            try:
                mask = int(key, 16)
            except ValueError:
                raise ConfigurationError(f"adapter key {key!r} is neither an owner nor a hex coalition mask") from None
            if mask >= 1 << len(owners):
                raise ConfigurationError(f"adapter mask {key} names owners beyond the {len(owners)} given")
        if mask in masks:
            raise ConfigurationError(f"two files for coalition {hex(mask)}")
        masks[mask] = Path(file)
    n = len(owners)
    wanted = set(range(1, 1 << n)) if mode == "exact" else {1 << i for i in range(n)}
    missing = sorted(wanted - set(masks))
    if missing:
        raise ConfigurationError(f"{mode} mode needs a file for every coalition: missing {[hex(m) for m in missing]}")
    extra = sorted(set(masks) - wanted - {0})
    if extra:
        raise ConfigurationError(f"{mode} mode does not use coalitions {[hex(m) for m in extra]}")
    return masks


def import_lora_family(families_dir: Path, family_id: str, version: str, base_folder: Path, owners: list[str],
                       files: dict[str, Path], *, mode: str, data_sizes: dict[str, int], resolution: int | None = None,
                       samples: int = 16, pool_fraction: str = "3/10") -> Path:
    if mode not in ("exact", "compositional"):
        raise ConfigurationError(f"mode must be exact or compositional, got {mode!r}")
    masks = parse_adapter_keys(files, owners, mode)
    base = load_base(Path(base_folder), device=torch.device("cpu"))
    from peft.tuners.lora import LoraLayer

    ranks, targets = [], set()
    for mask, file in sorted(masks.items()):
        name = f"import_0x{mask:x}"
        ranks.append(load_adapter_file(base.unet, file, name))
        for module_name, module in base.unet.named_modules():
            if isinstance(module, LoraLayer) and name in module.lora_A:
                parts = module_name.split(".")
                targets.add(".".join(parts[-2:]) if parts[-1].isdigit() else parts[-1])
        base.unet.delete_adapters(name)
    out = Path(families_dir) / family_id / version
    adapters = {}
    for mask, file in sorted(masks.items()):
        folder = out / "adapters" / f"0x{mask:x}"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, folder / LORA_FILE)
        adapters[hex(mask)] = {"file": f"adapters/0x{mask:x}/{LORA_FILE}", "sha256": sha256_file(folder / LORA_FILE)}
    manifest = {
        "kind": "lora", "family_id": family_id, "version": version, "owners": owners, "pool_fraction": pool_fraction,
        "mode": mode, "base": str(Path(base_folder).resolve()),
        "resolution": resolution or int(base.vae.config.sample_size), "rank": max(ranks),
        "target_modules": sorted(targets), "adapters": adapters, "data_sizes": data_sizes,
        "estimator": {"samples": samples},
        "training": {"imported": True},  # how the files were trained is not known: no fairness rule
    }
    write_manifest(out, manifest)
    return out
