"""Generating images from a family (the demo producer's "AI-generated content").

Ancestral DDPM sampling from the grand-coalition model (exact families) or from the
component with the most data (compositional families), quantised to the family's levels.
A sampler run is a function of the sampling model's weights, the class, the count and the
seed only, so ``ImagePool`` can keep its runs on disk (``cache_dir``): later demo runs reuse
them instead of sampling again (100 UNet steps per run, seconds each on CPU).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from royalflow.attribution.diffusion.images import unit_to_png

if TYPE_CHECKING:  # torch and diffusers load only to sample: a pool served from its cache needs neither
    from royalflow.attribution.families.digits import DiffusionFamily


MAX_CACHED_RUNS = 10_000  # bound on the files of a sample cache (a run is ~24 small PNGs)


def sampling_mask(family: DiffusionFamily) -> int:
    """The model that generates: the grand coalition, else the component with the most data."""
    full = (1 << len(family.owners)) - 1
    return full if full in family.models else max(family.models, key=lambda m: family.log_weights[m.bit_length()])


def sample_images(family: DiffusionFamily, class_label: int, count: int, seed: int) -> list[bytes]:
    """``count`` PNG images conditioned on ``class_label``; the same seed gives the same images."""
    import torch

    from royalflow.attribution.diffusion.unet import build_scheduler

    model = family.models[sampling_mask(family)]
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

    def __init__(self, family: DiffusionFamily | Callable[[], DiffusionFamily], *, manifest: dict[str, Any] | None = None,
                 batch: int = 32, seed: int = 0, cache_dir: Path | None = None) -> None:
        """``family``: the family, or a function that loads it, called on the first run the cache
        does not hold (with ``manifest``, its manifest document, to key the cache without it)."""
        if callable(family) and manifest is None:
            raise ValueError("a family loader needs the family's manifest")
        self._family = family
        self.manifest = manifest if manifest is not None else family.manifest  # type: ignore[union-attr]
        self.batch = batch
        self.seed = seed
        self.cache_dir = cache_dir
        self._pools: dict[int, list[bytes]] = {}

    def __call__(self, class_label: int, rng: np.random.Generator) -> bytes:
        pool = self._pools.get(class_label)
        if not pool:
            pool = self._run(class_label, self.seed * 1000 + class_label + len(self._pools))
            self._pools[class_label] = pool
        return pool.pop()

    @property
    def family(self) -> DiffusionFamily:
        if callable(self._family):
            self._family = self._family()
        return self._family

    def _sampling_mask(self) -> int:
        """sampling_mask from the manifest when it can tell (an exact family: the grand coalition)."""
        full = (1 << len(self.manifest.get("owners", []))) - 1
        return full if hex(full) in self.manifest.get("weights", {}) else sampling_mask(self.family)

    def _run(self, class_label: int, seed: int) -> list[bytes]:
        """One sampler run, from the cache when it holds it (keyed by the model's weights digest)."""
        weights = self.manifest.get("weights", {}).get(hex(self._sampling_mask()))
        if self.cache_dir is None or weights is None:
            return sample_images(self.family, class_label, self.batch, seed)
        key = json.dumps([weights, self.manifest["scheduler"], class_label, self.batch, seed], sort_keys=True)
        path = Path(self.cache_dir) / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"
        try:
            return [base64.b64decode(png) for png in json.loads(path.read_text())["images"]]
        except (OSError, ValueError, KeyError, TypeError):
            pass  # absent or unreadable: sample (and rewrite) it
        images = sample_images(self.family, class_label, self.batch, seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        if len(os.listdir(path.parent)) < MAX_CACHED_RUNS:
            tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
            tmp.write_text(json.dumps({"key": key, "images": [base64.b64encode(png).decode() for png in images]}))
            os.replace(tmp, path)  # whole or absent
        return images
