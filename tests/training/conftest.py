"""One tiny Stable-Diffusion-style pipeline and its LoRA family per test session (the costly
part): built from configs with random initialisation and tokenizer files written here, saved
to a temporary folder, pre-trained briefly on public synthetic images, then one LoRA adapter
per coalition of 3 owners with their own styles (``royalflow.training.tiny.build_style_family``).

Two kinds of generations, both sampled by the grand coalition's model with its owner's prompt
(classifier-free guidance ``GUIDANCE`` of ``royalflow.training.lora_quality``):
  * ``drawings``: text-to-image, from pure noise (what a platform's users mostly do);
  * ``generations``: image-to-image (SDEdit at ``STRENGTH``): a held-out picture in the owner's
    style, never trained on, noised to that timestep and re-drawn by the grand coalition, so
    "a generation of that style" holds by construction even where this small model, trained
    for a minute on CPU, draws a style imperfectly from the prompt alone.
Measured while choosing the recipe (style owner's top-1, 36 items, half of them prompt-only;
base UNet pre-training steps / LoRA steps): 300/120: img2img 78%, text 42%; 300/400: 78%, 42%;
1000/120: 94%, 58%; 1000/300: 94%, 78%; 2000/300: 97%, 86% (72 text items: with prompt 97%,
prompt-only 81%); 2000/300 is the recipe (test_lora_end_to_end.py has its figures). The base's
pre-training, not the adapters', limits the rate; K = 64 Monte-Carlo timesteps instead of 16 did
not help. On the clean held-out pictures themselves
the style owner is top in 97-100% of cases from 300/120 up."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

FAMILY = ("tiny-lora", "1")
GENERATIONS_PER_OWNER = 12


@dataclass(frozen=True)
class TinyLora:
    base: Path  # the saved diffusers pipeline folder
    source: Path  # the owners' image folders
    families: Path  # a registry root holding the trained exact family
    family_path: Path
    generations: dict[str, np.ndarray]  # owner -> (G, R, R, 3) uint8: image-to-image by the grand coalition
    drawings: dict[str, np.ndarray]  # owner -> (G, R, R, 3) uint8: text-to-image by the grand coalition


@pytest.fixture(scope="session")
def tiny_lora(tmp_path_factory: pytest.TempPathFactory) -> TinyLora:
    os.environ["HF_HUB_OFFLINE"] = "1"  # nothing may reach a hub (child processes inherit it)
    from royalflow.attribution.families import load_family
    from royalflow.attribution.registry import read_manifest
    from royalflow.training.lora_quality import sample_generations
    from royalflow.training.tiny import build_style_family

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models on a shared 2-core host: see diffusion.unet.limit_cpu_threads
    try:
        built = build_style_family(tmp_path_factory.mktemp("tiny-lora"), *FAMILY)
        family = load_family(read_manifest(built.family_path), built.family_path, "cpu")
        sampled = sample_generations(family, GENERATIONS_PER_OWNER)  # the quality benchmark's generations
        generations, drawings = ({o: np.stack([g.pixels for g in sampled if g.owner == o and g.kind == kind])
                                  for o in family.owners} for kind in ("edit", "drawing"))
    finally:
        torch.set_num_threads(threads)
    return TinyLora(built.base, built.source, built.family_path.parents[1], built.family_path, generations, drawings)
