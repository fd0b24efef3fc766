"""Small diffusion families for unit tests: random-initialised tiny UNets (no training), and
events carrying images for them."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable

import numpy as np
import torch

from royalflow.attribution.diffusion.unet import DEFAULT_CONFIG, DEFAULT_SCHEDULER, build_unet
from royalflow.attribution.families.digits import DiffusionFamily
from royalflow.contracts import Content, GenerationEvent
from royalflow.producer.events import generation_event, png_bytes

CONFIG = {**DEFAULT_CONFIG, "num_class_embeds": 11}


def prototypes(count: int, seed: int = 0) -> list[torch.nn.Module]:
    out = []
    for i in range(count):
        torch.manual_seed(seed + i)
        out.append(build_unet(CONFIG).eval())
    return out


def random_family(n: int, mode: str = "exact", *, samples: int = 4, seed: int = 0,
                  model_for: Callable[[int, list[torch.nn.Module]], torch.nn.Module] | None = None,
                  data_sizes: dict[str, int] | None = None, cpu_threads: int = 1) -> DiffusionFamily:
    """A family of random UNets on CPU. ``model_for(mask, protos)`` picks each coalition's model
    among prototypes (default: a distinct random model per coalition)."""
    owners = [f"owner-{i}" for i in range(n)]
    masks = list(range(1 << n)) if mode == "exact" else [0, *[1 << i for i in range(n)]]
    protos = prototypes(len(masks), seed)
    pick = model_for or (lambda mask, ps: ps[masks.index(mask)])
    manifest = {
        "kind": "diffusion", "family_id": f"test-{mode}-{n}", "version": "1", "owners": owners,
        "pool_fraction": "3/10", "mode": mode, "unet": CONFIG, "levels": 17, "scheduler": DEFAULT_SCHEDULER,
        "estimator": {"samples": samples, "target_std_error": 0.05, "max_permutations": 200},
        "data_sizes": data_sizes or {"_base": 500, **{o: 100 + 10 * i for i, o in enumerate(owners)}},
    }
    return DiffusionFamily(manifest, {m: pick(m, protos) for m in masks}, torch.device("cpu"), cpu_threads)


def digit_png(seed: int, size: int = 8) -> bytes:
    rng = np.random.default_rng(seed)
    return png_bytes((rng.integers(0, 17, (size, size)) * 255 // 16).astype(np.uint8))


def event(family: DiffusionFamily, event_id: str, content: bytes, *, label: int = 3,
          media_type: str = "image/png") -> GenerationEvent:
    return generation_event(event_id=event_id, family_id=family.family_id, family_version=family.version,
                            revenue_amount=1000, currency="USD", content=content, media_type=media_type,
                            class_label=label)


def with_content(ev: GenerationEvent, content: Content) -> GenerationEvent:
    return ev.model_copy(update={"content": content})


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def sha256(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()
