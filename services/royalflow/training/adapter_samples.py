"""Pictures drawn from each owner's adapter: the stand-ins for the owner's pictures where only
the adapters are known (``families import``), so that the cross-fit of ``lora_clusters`` (3)
can confirm there what the public probes propose.

An adapter trained on an owner's pictures is a generative model of them: its samples are what
it learned the owner's data to be. Plain samples of an adapter trained with public rows mixed
in are partly public pictures, so each adapter's prediction is pushed away from the control's,
as classifier-free guidance pushes away from the unconditional (Ho & Salimans 2022):

    eps = eps_0 + w (eps_i - eps_0)                                                        (1)

which samples, approximately, p_0(x) (p_i(x) / p_0(x))^w: the pictures where owner i's adapter
gains most over the control. Then, ancestral DDPM (Ho et al. 2020, eq. 11 with the base's
variance type) on the base's own sampler settings, ``SAMPLE_STEPS`` steps (strided, diffusers'
``DDPMScheduler.set_timesteps``), the empty prompt (the unconditional model that caption dropout
trained: the owner's whole data, whatever its captions said). Seeded per picture
(``SAMPLE_SEED``), so a family's evidence is reproducible. Cost: 2 ``count`` x ``SAMPLE_STEPS``
UNet rows per owner, O(n) in the owners, batched over as many adapters as the resident pool holds.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch

from royalflow.attribution.families.base import ddpm_sampler
from royalflow.attribution.families.content import from_unit
from royalflow.training.images import ImageSet

SAMPLE_STEPS = 50  # denoising steps per sample (strided over the base's training timesteps)
SAMPLE_SEED = 20_261_207  # the samples' noise: fixed, so a family's evidence is reproducible
GUIDANCE = 3.0  # w of (1): how far past the control each adapter's prediction is pushed
MAX_ROWS = 256  # UNet rows per forward while sampling (bounds memory whatever the pool holds)
MAX_OWNERS_HELD = 64  # owners whose draws ``Draws`` keeps at once (8 draws of 512 x 512: 400 MB)


def adapter_samples(family: Any, slots: list[int], count: int, *, steps: int = SAMPLE_STEPS,
                    guidance: float = GUIDANCE, seed: int = SAMPLE_SEED) -> list[ImageSet]:
    """``count`` pictures from each adapter slot of a loaded ``LoraFamily`` (host slot numbers,
    positions in ``family.masks``), one ``ImageSet`` per slot in that order, captions empty."""
    if count < 1 or steps < 1:
        raise ValueError(f"count and steps must be positive, got {count}, {steps}")
    unet = family.base.unet
    shape = (unet.config.in_channels, unet.config.sample_size, unet.config.sample_size)
    per_call = max(1, min(family.pool.capacity - 1, MAX_ROWS // (2 * count)))  # adapters sampled together
    out: list[ImageSet] = []
    for first in range(0, len(slots), per_call):
        chunk = slots[first:first + per_call]
        # 1. Every picture its own generator, from (seed, slot, picture): a slot's noise does not
        #    depend on which slots are sampled beside it.
        gens = [torch.Generator().manual_seed(int(np.random.SeedSequence((seed, slot, k)).generate_state(1)[0]))
                for slot in chunk for k in range(count)]
        rows = len(gens)
        z = torch.stack([torch.randn(shape, generator=g) for g in gens])
        text = family.embed([""]).expand(2 * rows, -1, -1)
        ids = torch.tensor(chunk, dtype=torch.int64).repeat_interleave(count)
        both_ids = torch.cat([ids, torch.zeros_like(ids)])  # the adapter's rows, then the control's
        scheduler = ddpm_sampler(family.base.scheduler_config)
        scheduler.set_timesteps(min(steps, scheduler.config.num_train_timesteps))
        # 2. x_{t-1} ~ p(x_{t-1} | x_t) with the guided prediction (1).
        for t in scheduler.timesteps:
            steps_t = torch.full((2 * rows,), int(t), dtype=torch.int64)
            both = family._batched(torch.cat([z, z]), steps_t, text, both_ids).float().cpu()  # noqa: SLF001
            eps = both[rows:] + guidance * (both[:rows] - both[rows:])
            z = scheduler.step(eps, t, z, generator=gens).prev_sample
        pixels = np.stack([from_unit(x.numpy()) for x in family.base.decode_latents(z)])
        for j, slot in enumerate(chunk):
            out.append(ImageSet(pixels[j * count:(j + 1) * count], ("",) * count,
                                tuple(f"sample-{slot}-{k}.png" for k in range(count))))
    return out


class Draws(Mapping[str, ImageSet]):
    """Each owner's draws on demand: asked in the order given (as ``lora_clusters.cross_fit``
    asks), a run of up to ``MAX_OWNERS_HELD`` owners is sampled at once and only that run is
    kept, so memory stays bounded whatever the number of owners to check."""

    def __init__(self, family: Any, slots: dict[str, int], count: int) -> None:
        self._family, self._slots, self._count = family, dict(slots), count
        self._order = list(self._slots)
        self._held: dict[str, ImageSet] = {}

    def __getitem__(self, owner: str) -> ImageSet:
        if owner not in self._held:
            if owner not in self._slots:
                raise KeyError(owner)
            start = self._order.index(owner)
            run = self._order[start:start + MAX_OWNERS_HELD]
            self._held = dict(zip(run, adapter_samples(self._family, [self._slots[o] for o in run], self._count)))
        return self._held[owner]

    def __iter__(self) -> Iterator[str]:
        return iter(self._order)

    def __len__(self) -> int:
        return len(self._order)
