"""The training rows of a LoRA family's coalitions, in canonical order (the LoRA twin of the
digits kind's ``Dataset.canonical``).

A coalition's adapter trains on the union of its owners' images. Concatenated in owner order,
the same images held by one owner or split over shell owners would train different adapters:
the seeded index draws land on other images. The split defence compares exactly those
adapters (a cluster of shells is valued by the adapter of their union), so that difference is
paid out as a gain or a loss that nobody earned. Here:

  1. every row (image, caption) is keyed by the SHA-256 of its pixels and caption;
  2. a coalition's data are its DISTINCT rows (a near-copy is a different row, an exact copy is
     not) in key order;
  3. every image is encoded alone and every distinct caption once, so a row's latent and text
     embedding do not depend on what else the family holds.

Equal data then train equal adapters bit for bit, whoever holds them and however they are split
(``tests/training/test_rows.py``). ``LoraPlan.data_order = "owners"`` keeps the order of
families trained before this existed (the owners' rows, concatenated in owner order)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from royalflow.attribution.families.base import BasePipeline
from royalflow.attribution.families.content import to_unit
from royalflow.training.images import ImageSet

ORDERS = ("canonical", "owners")


@dataclass(frozen=True)
class Encoded:
    latents: torch.Tensor  # (N, C, h, w) on the device
    text: torch.Tensor  # (N, L, D) caption embeddings on the device


def concat(parts: list[Encoded]) -> Encoded:
    return Encoded(torch.cat([p.latents for p in parts]), torch.cat([p.text for p in parts]))


def row_key(pixels: np.ndarray, caption: str) -> bytes:
    """(1): the content key of one row (shape and dtype included, so no two layouts collide)."""
    digest = hashlib.sha256(f"{pixels.shape}|{pixels.dtype}|".encode())
    digest.update(np.ascontiguousarray(pixels).tobytes())
    digest.update(b"\x00" + caption.encode())
    return digest.digest()


@dataclass(frozen=True)
class RowTable:
    """Every distinct row of the owners' images, encoded once, in key order."""

    encoded: Encoded
    rows: dict[str, np.ndarray]  # owner -> its distinct rows (indices into ``encoded``), ascending
    image_rows: dict[str, np.ndarray]  # owner -> the row of each of its images, in the owner's order

    def coalition(self, owners: Iterable[str]) -> Encoded:
        """(2): the distinct rows of the owners together, in key order."""
        return self._take([self.rows[o] for o in owners])

    def pictures(self, selection: dict[str, Sequence[int]]) -> Encoded:
        """(2) for chosen pictures only: owner -> indices of its images (e.g. a cluster's
        pictures with near-copies kept once, lora_clusters.py)."""
        return self._take([self.image_rows[o][np.asarray(list(i), dtype=np.int64)] for o, i in selection.items()])

    def _take(self, picked: list[np.ndarray]) -> Encoded:
        if not picked or not sum(len(p) for p in picked):
            raise ValueError("a coalition needs at least one owner with a picture")
        index = torch.from_numpy(np.unique(np.concatenate(picked)))
        return Encoded(self.encoded.latents[index], self.encoded.text[index])


def build_rows(base: BasePipeline, owners: dict[str, ImageSet]) -> RowTable:
    """(1)-(3) for every owner's images: each distinct image through the VAE alone, each distinct
    caption through the text encoder once."""
    keys: dict[bytes, tuple[np.ndarray, str]] = {}
    owner_keys: dict[str, list[bytes]] = {}
    for owner, images in owners.items():
        mine = [row_key(pixels, caption) for pixels, caption in zip(images.pixels, images.captions)]
        for key, pixels, caption in zip(mine, images.pixels, images.captions):
            keys.setdefault(key, (pixels, caption))
        owner_keys[owner] = mine
    order = sorted(keys)
    position = {key: i for i, key in enumerate(order)}
    captions = sorted({caption for _, caption in keys.values()})
    by_caption = {c: base.encode_prompts([c]).float().cpu()[0] for c in captions}
    latents = [base.encode_images(torch.from_numpy(to_unit(keys[key][0][None])))[0] for key in order]
    device = next(base.unet.parameters()).device
    encoded = Encoded(torch.stack(latents).to(device), torch.stack([by_caption[keys[k][1]] for k in order]).to(device))
    image_rows = {o: np.array([position[k] for k in ks], dtype=np.int64) for o, ks in owner_keys.items()}
    return RowTable(encoded, {o: np.unique(r) for o, r in image_rows.items()}, image_rows)
