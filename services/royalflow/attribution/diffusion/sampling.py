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
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from royalflow.attribution.diffusion.images import unit_to_png

if TYPE_CHECKING:  # torch and diffusers load only to sample: a pool served from its cache needs neither
    from royalflow.attribution.families.digits import DiffusionFamily


MAX_CACHED_RUNS = 10_000  # bound on the files of a sample cache (a run is ~24 small PNGs)
MAX_RUNS_PER_BATCH = 6  # sampler runs stepped together by a prefetch (6 x 24 rows per forward)


def sampling_mask(family: DiffusionFamily) -> int:
    """The model that generates: the grand coalition, else the component with the most data."""
    full = (1 << len(family.owners)) - 1
    return full if full in family.models else max(family.models, key=lambda m: family.log_weights[m.bit_length()])


def sample_images(family: DiffusionFamily, class_label: int, count: int, seed: int) -> list[bytes]:
    """``count`` PNG images conditioned on ``class_label``; the same seed gives the same images."""
    return sample_runs(family, [(class_label, seed)], count)[0]


def sample_runs(family: DiffusionFamily, runs: list[tuple[int, int]], count: int) -> list[list[bytes]]:
    """Several sampler runs ``(class_label, seed)`` of ``count`` images each, stepped together:
    one UNet forward per step over all their rows (on CPU a row costs 143 us at 240 rows
    against 250 us at 24), each run with its own generator, so that its images are the ones it
    gives alone (tests/attribution/test_sampling.py checks this)."""
    import torch

    from royalflow.attribution.diffusion.unet import build_scheduler

    if not runs:
        return []
    model = family.models[sampling_mask(family)]
    scheduler = build_scheduler(family.manifest["scheduler"])
    scheduler.set_timesteps(scheduler.config.num_train_timesteps)
    generators = [torch.Generator(device="cpu").manual_seed(seed) for _, seed in runs]
    shape = (count, 1, family.size, family.size)
    xs = [torch.randn(shape, generator=g) for g in generators]
    labels = torch.cat([torch.full((count,), label, dtype=torch.int64) for label, _ in runs]).to(family.device)
    with torch.inference_mode():
        for t in scheduler.timesteps:
            # 1. One forward for every run's rows; 2. each run's DDPM step on its own generator.
            eps = model(torch.cat(xs).to(family.device, family.dtype), t.to(family.device),
                        class_labels=labels).sample.to("cpu", torch.float32)
            xs = [scheduler.step(eps[i * count:(i + 1) * count], t, x, generator=g).prev_sample
                  for i, (x, g) in enumerate(zip(xs, generators, strict=True))]
    return [[unit_to_png(img[0].clamp(-1, 1).numpy().astype(np.float64), family.levels) for img in x] for x in xs]


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
        self._made: dict[tuple[int, int], list[bytes]] = {}  # prefetched runs with no room on disk

    def __call__(self, class_label: int, rng: np.random.Generator) -> bytes:
        pool = self._pools.get(class_label)
        if not pool:
            pool = self._run(class_label, self._run_seed(class_label, len(self._pools)))
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

    def _run_seed(self, class_label: int, classes_seen: int) -> int:
        """The seed of a class's sampler run: ``classes_seen`` is how many classes the pool held
        when the run was asked for (so a refill of a class is another run than its first)."""
        return self.seed * 1000 + class_label + classes_seen

    def runs_for(self, labels: Sequence[int]) -> list[tuple[int, int]]:
        """The sampler runs ``(class_label, seed)`` that serving ``labels`` in this order makes,
        from this pool's present state (as __call__ seeds them)."""
        left = {label: len(pool) for label, pool in self._pools.items()}
        runs = []
        for label in labels:
            if not left.get(label):
                runs.append((label, self._run_seed(label, len(left))))
                left[label] = self.batch
            left[label] -= 1
        return runs

    def prefetch(self, labels: Sequence[int], *, threads: int = 2) -> int:
        """Make every sampler run that serving ``labels`` needs and the cache lacks, stepped
        together (sample_runs) on ``threads`` threads, rather than one by one as events ask: on a
        first demo run, 11 runs for 200 events in 2.7-2.9 s instead of 7.6 s. Returns the runs made."""
        missing = [run for run in dict.fromkeys(self.runs_for(labels)) if self._cached(*run) is None]
        if not missing:
            return 0  # all on disk: neither the family nor torch is loaded (a later demo run)
        chunks = [missing[i:i + MAX_RUNS_PER_BATCH] for i in range(0, len(missing), MAX_RUNS_PER_BATCH)]
        family = self.family  # loaded here, once, not on the threads
        # Chunks on threads (torch runs a forward without the GIL): the chunks, and so every
        # forward's rows, are the same however many threads there are.
        with ThreadPoolExecutor(max(1, min(threads, len(chunks))), thread_name_prefix="sampler") as pool:
            for chunk, made in zip(chunks, pool.map(lambda c: sample_runs(family, c, self.batch), chunks), strict=True):
                for run, images in zip(chunk, made, strict=True):
                    self._store(*run, images)
        return len(missing)

    def _key(self, class_label: int, seed: int) -> tuple[str, Path] | None:
        """A run's cache key and file (keyed by the sampling model's weights digest), if it is cached at all."""
        weights = self.manifest.get("weights", {}).get(hex(self._sampling_mask()))
        if self.cache_dir is None or weights is None:
            return None
        key = json.dumps([weights, self.manifest["scheduler"], class_label, self.batch, seed], sort_keys=True)
        return key, Path(self.cache_dir) / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"

    def _cached(self, class_label: int, seed: int) -> list[bytes] | None:
        if (class_label, seed) in self._made:
            return self._made[(class_label, seed)]
        keyed = self._key(class_label, seed)
        try:
            return [base64.b64decode(png) for png in json.loads(keyed[1].read_text())["images"]] if keyed else None
        except (OSError, ValueError, KeyError, TypeError):
            return None  # absent or unreadable: sample (and rewrite) it

    def _run(self, class_label: int, seed: int) -> list[bytes]:
        """One sampler run, from the cache (or a prefetch) when it holds it."""
        images = self._cached(class_label, seed)
        if images is None:
            images = sample_images(self.family, class_label, self.batch, seed)
            self._store(class_label, seed, images)
        self._made.pop((class_label, seed), None)
        return images

    def _store(self, class_label: int, seed: int, images: list[bytes]) -> None:
        """On disk when the pool has a cache with room, else held here until its run is served."""
        keyed = self._key(class_label, seed)
        if keyed is not None:
            key, path = keyed
            path.parent.mkdir(parents=True, exist_ok=True)
            if len(os.listdir(path.parent)) < MAX_CACHED_RUNS:
                tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
                tmp.write_text(json.dumps({"key": key, "images": [base64.b64encode(png).decode() for png in images]}))
                os.replace(tmp, path)  # whole or absent
                return
        self._made[(class_label, seed)] = images
