"""A tiny diffusion family on disk (random UNets, no training) for the ``file://`` cases: only
diffusion families read content by reference, so that is where the content-root rules live."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from royalflow.attribution.diffusion.unet import DEFAULT_CONFIG, DEFAULT_SCHEDULER, build_unet
from royalflow.attribution.families.digits import weight_file

FAMILY_ID = "hostile-diffusion"
VERSION = "1"


def write_family(families_dir: Path) -> Path:
    """One owner, exact mode: two coalition models (empty, full) with checksums in the manifest."""
    target = Path(families_dir) / FAMILY_ID / VERSION
    target.mkdir(parents=True, exist_ok=True)
    config = {**DEFAULT_CONFIG, "num_class_embeds": 11}
    weights = {}
    for mask in (0, 1):
        torch.manual_seed(mask)
        model = build_unet(config)
        path = target / weight_file(mask)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
        weights[hex(mask)] = hashlib.sha256(path.read_bytes()).hexdigest()
    manifest = {
        "kind": "diffusion", "family_id": FAMILY_ID, "version": VERSION, "owners": ["owner-diffusion"],
        "pool_fraction": "3/10", "mode": "exact", "unet": config, "levels": 17, "scheduler": DEFAULT_SCHEDULER,
        "estimator": {"samples": 2, "target_std_error": 0.05, "max_permutations": 50},
        "data_sizes": {"_base": 500, "owner-diffusion": 100}, "weights": weights,
    }
    (target / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return target
