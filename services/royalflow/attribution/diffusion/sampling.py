"""Generating images from a family (the demo producer's "AI-generated content").

Ancestral DDPM sampling from the grand-coalition model (exact families) or from the
component with the most data (compositional families), quantised to the family's levels.
"""

from __future__ import annotations

import numpy as np
import torch

from royalflow.attribution.diffusion.images import unit_to_png
from royalflow.attribution.diffusion.unet import build_scheduler
from royalflow.attribution.families.digits import DiffusionFamily


def sample_images(family: DiffusionFamily, class_label: int, count: int, seed: int) -> list[bytes]:
    """``count`` PNG images conditioned on ``class_label``; the same seed gives the same images."""
    full = (1 << len(family.owners)) - 1
    mask = full if full in family.models else max(family.models, key=lambda m: family.log_weights[m.bit_length()])
    model = family.models[mask]
    scheduler = build_scheduler(family.manifest["scheduler"])
    scheduler.set_timesteps(scheduler.config.num_train_timesteps)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    shape = (count, 1, family.size, family.size)
    x = torch.randn(shape, generator=generator)
    labels = torch.full((count,), class_label, dtype=torch.int64)
    with torch.inference_mode():
        for t in scheduler.timesteps:
            eps = model(x.to(family.device, family.dtype), t.to(family.device), class_labels=labels.to(family.device)).sample
            x = scheduler.step(eps.to("cpu", torch.float32), t, x, generator=generator).prev_sample
    return [unit_to_png(img[0].clamp(-1, 1).numpy().astype(np.float64), family.levels) for img in x]


class ImagePool:
    """Generated images per class, made in batches on demand (one sampler run serves many events)."""

    def __init__(self, family: DiffusionFamily, *, batch: int = 32, seed: int = 0) -> None:
        self.family = family
        self.batch = batch
        self.seed = seed
        self._pools: dict[int, list[bytes]] = {}

    def __call__(self, class_label: int, rng: np.random.Generator) -> bytes:
        pool = self._pools.get(class_label)
        if not pool:
            pool = sample_images(self.family, class_label, self.batch, self.seed * 1000 + class_label + len(self._pools))
            self._pools[class_label] = pool
        return pool.pop()
