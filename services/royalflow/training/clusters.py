"""Evidence of same-source owners, found at training time, and the clusters it implies.

An owner who splits its data over shell owners gains under plain Shapley values (the
shell-company attack). The defence values *clusters* of owners instead (quotient game,
royalflow.shapley.quotient), so it needs evidence that two owners are one source:

  * duplicates: a perceptual fingerprint of every image (average hash: 64 bits, pixel above
    the image mean, of the image at 8x8) plus a level-distance check; the duplicate fraction
    of (i, j) is the share of the smaller owner's images with a near-copy in the other's;
  * interchangeable owners: on a public probe set (public images, content only: the null
    class) each single-owner model's per-image gain over the control, g_i = v({i}) - v(∅),
    is a profile of what the owner adds. Owners i, j whose profiles are close (relative
    distance), and, in exact mode, whose pair model adds no more than each alone
    (g_ij close to g_i and to g_j), are interchangeable.

Thresholds are conservative on purpose: honest owners with distinct data must never merge
(a false merge pays them by data size instead of by their own contribution). Distinct honest
owners holding data from the same distribution are, by this evidence, indistinguishable from a
split owner: they are merged and listed as a suspected cluster for human review
(``royalflow families show``), and paid by data size within their cluster.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from royalflow.attribution.diffusion.elbo import ElboEstimator
from royalflow.attribution.diffusion.images import levels_to_unit
from royalflow.attribution.diffusion.unet import DEFAULT_SCHEDULER, build_scheduler, build_unet
from royalflow.attribution.families.digits import weight_file

DUPLICATE_FRACTION = 0.5  # merge when half the smaller owner's images have a near-copy in the other's
DUPLICATE_MEAN_LEVEL_DISTANCE = 0.25  # near-copy: same hash and mean |level difference| <= this
# Interchangeable: ||g_i - g_j|| <= this * max(||g_i||, ||g_j||). Measured on the demo: shells
# of one owner (2 or 3 disjoint parts) 0.46-0.49, their pair model vs each 0.36-0.48; honest
# owners 0.73-1.36 over every training recipe tried. 0.6 keeps a margin on both sides.
PROFILE_DISTANCE = 0.6
PROBE_IMAGES = 256  # public probe images (bound on the cost: one pass per single-owner model)
PROBE_SAMPLES = 8  # Monte-Carlo timesteps per probe likelihood (common random numbers)
MAX_REPORTED_PAIRS = 66  # all pairs of up to 12 owners; above, only pairs with evidence


def average_hash(images: np.ndarray) -> np.ndarray:
    """(N, H, W) levels -> (N,) uint64 fingerprints: bit p set <=> pixel p above its image's mean."""
    small = images.astype(np.float64)
    if small.shape[1:] != (8, 8):  # block-average larger images down to 8x8
        h, w = small.shape[1] // 8, small.shape[2] // 8
        small = small[:, : 8 * h, : 8 * w].reshape(len(small), 8, h, 8, w).mean(axis=(2, 4))
    bits = (small.reshape(len(small), 64) > small.reshape(len(small), 64).mean(axis=1, keepdims=True))
    return (bits.astype(np.uint64) << np.arange(64, dtype=np.uint64)).sum(axis=1, dtype=np.uint64)


def duplicate_fraction(a: np.ndarray, b: np.ndarray) -> float:
    """Share of the smaller set's images with a near-copy in the other set."""
    small, large = (a, b) if len(a) <= len(b) else (b, a)
    if len(small) == 0:
        return 0.0
    index: dict[int, list[int]] = {}
    for k, h in enumerate(average_hash(large).tolist()):
        index.setdefault(h, []).append(k)
    hits = 0
    for img, h in zip(small, average_hash(small).tolist()):
        near = index.get(h, [])
        if near and np.abs(large[near].astype(np.int64) - img).mean(axis=(1, 2)).min() <= DUPLICATE_MEAN_LEVEL_DISTANCE:
            hits += 1
    return hits / len(small)


def _profile(models: list[torch.nn.Module], public_images: np.ndarray, levels: int, null_class: int) -> np.ndarray:
    """Per-image log-likelihoods (models, P) of the probe under the null class, on common draws."""
    step = max(1, len(public_images) // PROBE_IMAGES)
    probe = public_images[::step][:PROBE_IMAGES]
    x0 = torch.from_numpy(levels_to_unit(probe, levels))[:, None]
    labels = torch.full((len(probe),), null_class, dtype=torch.int64)
    estimator = ElboEstimator(build_scheduler(DEFAULT_SCHEDULER), levels=levels, samples=PROBE_SAMPLES)
    draws = estimator.draw(list(range(len(probe))), tuple(x0.shape[1:]))
    return np.stack([
        estimator.log_likelihood_samples(m, x0, labels, draws, device=torch.device("cpu"), dtype=torch.float32).mean(dim=1).numpy()
        for m in models
    ])


def _distance(g: np.ndarray, h: np.ndarray) -> float:
    scale = max(float(np.linalg.norm(g)), float(np.linalg.norm(h)), 1e-9)
    return float(np.linalg.norm(g - h)) / scale


def _load(target: Path, config: dict[str, Any], mask: int) -> torch.nn.Module:
    model = build_unet(config)
    model.load_state_dict(load_file(str(target / weight_file(mask))))
    return model.eval()


def find_clusters(target: Path, config: dict[str, Any], names: list[str], owners: dict[str, Any], public: Any,
                  levels: int, *, enabled: bool = True,
                  pair_models: Callable[[list[int]], None] | None = None) -> dict[str, Any]:
    """{"clusters": [[owner, ...], ...] (every owner in exactly one), "evidence": [per pair]}.
    Needs the control (mask 0) and single-owner models on disk; ``pair_models(masks)`` trains or
    fetches the pairs' models (exact mode) for the pair check, all at once (in parallel)."""
    n = len(names)
    if not enabled or n < 2:
        return {"clusters": [[o] for o in names], "evidence": []}
    null_class = int(config["num_class_embeds"]) - 1
    models = [_load(target, config, m) for m in [0, *[1 << i for i in range(n)]]]
    ll = _profile(models, public.images, levels, null_class)
    gains = ll[1:] - ll[0]
    merged: list[tuple[int, int]] = []
    # Pairs whose profiles are close get the pair check: their models are trained together first.
    close = [(1 << i) | (1 << j) for i, j in combinations(range(n), 2) if _distance(gains[i], gains[j]) <= PROFILE_DISTANCE]
    if pair_models is not None and close:
        pair_models(close)
    evidence = []
    for i, j in combinations(range(n), 2):
        dup = duplicate_fraction(owners[names[i]].images, owners[names[j]].images)
        dist = _distance(gains[i], gains[j])
        row: dict[str, Any] = {"owners": [names[i], names[j]], "duplicate_fraction": round(dup, 4),
                               "profile_distance": round(dist, 4)}
        interchangeable = dist <= PROFILE_DISTANCE
        if interchangeable and pair_models is not None:
            pair = (_profile([_load(target, config, (1 << i) | (1 << j))],
                             public.images, levels, null_class) - ll[0])[0]
            row["pair_distance"] = round(max(_distance(pair, gains[i]), _distance(pair, gains[j])), 4)
            interchangeable = row["pair_distance"] <= PROFILE_DISTANCE
        reasons = [r for r, hit in (("duplicates", dup >= DUPLICATE_FRACTION), ("interchangeable", interchangeable)) if hit]
        row["merged"] = bool(reasons)
        row["reasons"] = reasons
        if reasons:
            merged.append((i, j))
        if reasons or n * (n - 1) // 2 <= MAX_REPORTED_PAIRS:
            evidence.append(row)
    return {"clusters": [[names[k] for k in c] for c in components(n, merged)], "evidence": evidence}


def components(n: int, edges: Iterable[tuple[int, int]], *, labels: Sequence[int] | None = None) -> list[list[int]]:
    """Connected components of players 0..n-1 joined by ``edges`` (union-find), each in
    increasing order, ordered by their first member: the clusters of merged owner pairs. With
    ``labels``, a component never holds two players of one label: an edge that would join two
    components sharing a label is skipped, in the order the edges come (near-copies: a group of
    copies holds at most one picture of each owner, fingerprints.representatives)."""
    parent = list(range(n))
    held = [{labels[i]} for i in range(n)] if labels is not None else None

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in edges:
        a, b = root(i), root(j)
        if a == b:
            continue
        if held is not None:
            if held[a] & held[b]:
                continue
            held[a] |= held[b]
        parent[b] = a
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(root(i), []).append(i)
    return sorted(groups.values(), key=lambda c: c[0])
