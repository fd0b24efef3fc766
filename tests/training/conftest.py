"""One tiny Stable-Diffusion-style pipeline and its LoRA family per test session (the costly
part): built from configs with random initialisation and tokenizer files written here, saved
to a temporary folder, pre-trained briefly on public synthetic images, then one LoRA adapter
per coalition of 3 owners with their own styles.

Generations come from the grand coalition's model as image-to-image samples (SDEdit at
``STRENGTH``: a held-out picture in an owner's style, never trained on, noised to that
timestep and denoised by the grand coalition with the owner's prompt). A model this small,
trained for seconds, does not yet draw a style from the prompt alone; starting from a
partly-noised picture makes "a generation of that style" true by construction, while the
image still passes through the grand coalition's sampler. Measured during development on
this data (top share to the style owner, 24 generations): text-only sampling 33-42%,
strength 0.6: 58%, strength 0.45: 75%, strength 0.3: 92%; more Monte-Carlo timesteps (K = 64)
did not help, so the limit is the adapters' brief training, not the estimator."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from royalflow.training.styles import STYLES, owner_image, write_folders

RESOLUTION = 32
FAMILY = ("tiny-lora", "1")
GENERATIONS_PER_OWNER = 12
STRENGTH = 0.3  # img2img: fraction of the 100 timesteps the grand coalition re-samples
GUIDANCE = 3.0  # classifier-free guidance scale of the sampler


@dataclass(frozen=True)
class TinyLora:
    base: Path  # the saved diffusers pipeline folder
    source: Path  # the owners' image folders
    families: Path  # a registry root holding the trained exact family
    family_path: Path
    generations: dict[str, np.ndarray]  # owner -> (G, R, R, 3) uint8, sampled from the grand coalition


@pytest.fixture(scope="session")
def tiny_lora(tmp_path_factory: pytest.TempPathFactory) -> TinyLora:
    os.environ["HF_HUB_OFFLINE"] = "1"  # nothing may reach a hub (child processes inherit it)
    from royalflow.attribution.families import load_family
    from royalflow.attribution.registry import read_manifest
    from royalflow.training.images import read_image_folders
    from royalflow.training.lora import LoraPlan, train_lora_family
    from royalflow.training.tiny import build_tiny_pipeline, pretrain_tiny_pipeline, sample_latents

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models on a shared 2-core host: see diffusion.unet.limit_cpu_threads
    try:
        root = tmp_path_factory.mktemp("tiny-lora")
        source = write_folders(root / "images", per_owner=48, public=192)
        public, owners = read_image_folders(source, RESOLUTION)
        build_tiny_pipeline(root / "base")
        every_image = np.concatenate([public.pixels, *[owners[o].pixels for o in sorted(owners)]])
        pretrain_tiny_pipeline(root / "base", public.pixels, list(public.captions), vae_steps=300, unet_steps=300,
                               codec_pixels=every_image)
        plan = LoraPlan(steps=120, batch=8, learning_rate=1e-2, samples=16)
        path = train_lora_family(root / "families", *FAMILY, root / "base", public, owners, mode="exact",
                                 resolution=RESOLUTION, plan=plan, device="cpu", show_progress=False)
        family = load_family(read_manifest(path), path, "cpu")
        full = (1 << len(family.owners)) - 1
        held_out = np.random.default_rng(1000)  # other draws than the training images (seed 0)
        generations = {}
        for i, (owner, (_, _, _, caption)) in enumerate(sorted(STYLES.items())):
            init = np.stack([np.asarray(owner_image(owner, held_out)) for _ in range(GENERATIONS_PER_OWNER)])
            generations[owner] = sample_latents(family, full, [caption] * GENERATIONS_PER_OWNER, seed=i,
                                                guidance=GUIDANCE, init=init, strength=STRENGTH)
    finally:
        torch.set_num_threads(threads)
    return TinyLora(root / "base", source, root / "families", path, generations)
