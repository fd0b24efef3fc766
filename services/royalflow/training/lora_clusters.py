"""Same-source owners of a LoRA family, and the clusters the quotient game values as one player.

An owner who splits its data over shell owners gains under plain Shapley values (README, the
LoRA table). The defence values clusters of owners (``attribution/families/valuation.py``,
``shapley/quotient.py``); this module finds them, at training or import time, from three kinds
of evidence, none of which trains an adapter per pair:

  * near-copies (training only: needs the owners' images): near-copies across owners by
    perceptual hashes (``fingerprints.py``); owners i, j merge when a fraction of at least
    ``DUPLICATE_FRACTION`` of the smaller owner's images has a near-copy in the other's;
  * gain profiles (needs only the adapters and public probe images): on each probe image x,
    with the empty prompt and with its own caption, the gain of owner i's adapter over the
    control on common random numbers,

        g_i(x) = l_i(x) - l_0(x)      (l: the family's ELBO utility, ``latent.py``)          (1)

    is a profile of what the owner adds; owners are close when

        d(i, j) = ||g_i - g_j|| / max(||g_i||, ||g_j||) <= PROFILE_DISTANCE,                (2)

    found for all pairs at once from the Gram matrix of the profiles (chunked: n = 10,000
    owners of 64-entry profiles is one 10^4 x 10^4 product);
  * cross-fit: shells of one source explain EACH OTHER'S pictures. With g_j(D_i) the mean
    gain (1) of owner j's adapter on owner i's pictures,

        c(i, j) = min( g_j(D_i) / g_i(D_i),  g_i(D_j) / g_j(D_j) ) >= CROSS_FIT.           (3)

    An owner whose adapter gains nothing on D_i (g_i(D_i) <= 0) gives no evidence either way:
    the other side decides, and with neither the pair does not merge on (3).

Where the pictures are known (training), (3) on them decides, for every pair of a family of up
to ``CROSS_FIT_ALL_PAIRS`` owners and for the pairs that pass (2) in larger ones: (2) alone is
too noisy either way. Measured on the tiny pipeline: two honest photo owners were 0.46 apart on
the probes (a false merge under (2) alone) but fit each other at 0.04; two disjoint halves of
one style were 0.44 apart in one training and 0.99 in another (whose data order differed), and
fit each other at 0.87; honest owners fit each other at 0.24 at most (README). Without the
pictures (``families import``), a pair merges when it passes (2) AND (3) on pictures drawn from
each owner's adapter (``adapter_samples.py``), which stand in for the data it learned. Samples
are weaker evidence than pictures (honest owners fit each other's samples at 0.29-0.50,
measured), so they only confirm what the probes propose.

Clusters are the connected components of the merged pairs. Each cluster's distinct image count
(near-copies counted once) becomes its mixture weight in compositional mode
(``cluster_data_sizes``), so duplicated shells do not weigh twice. Thresholds were measured on
the tiny pipeline's style owners (benchmarks/lora_quality.py; README, *Split-proof shares for
LoRA families*).
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import torch

from royalflow.attribution.families.content import to_unit
from royalflow.attribution.families.latent import pair_log_likelihood_samples
from royalflow.training.clusters import components
from royalflow.training.fingerprints import (
    duplicate_fractions, fingerprints, matching, near_pairs, pair_distances, remainder_pairs, representatives,
)
from royalflow.training.images import ImageSet

DUPLICATE_FRACTION = 0.5  # share of the smaller owner's images with a near-copy in the other's
PROFILE_DISTANCE = 0.5  # (2); measured: see the README's LoRA split table
CROSS_FIT = 0.5  # (3); measured: see the README's LoRA split table
CROSS_FIT_IMAGES = 8  # each owner's pictures (evenly spaced) scored for (3), with and without caption
CROSS_FIT_ALL_PAIRS = 8  # families up to this many owners check (3) for every pair (cost n^2 x images)
PROBE_IMAGES = 32  # public probe images (each scored with the empty prompt and with its caption)
PROBE_SAMPLES = 8  # Monte-Carlo timesteps per probe likelihood (common random numbers)
PROBE_SEED = 20_261_206  # the probes' draws: fixed, so a family's evidence is reproducible
MAX_REPORTED_PAIRS = 66  # all pairs of up to 12 owners; above, only the merged pairs
MAX_MERGED_REPORTED = 10_000  # bound on the evidence rows kept in the manifest
GRAM_CHUNK = 1024  # owners per block of the pairwise distance computation


def probe_subset(public: ImageSet, count: int = PROBE_IMAGES) -> ImageSet:
    """An evenly spaced subset of the public images (deterministic)."""
    if len(public) <= count:
        return public
    keep = np.linspace(0, len(public) - 1, count).round().astype(int)
    return ImageSet(public.pixels[keep], tuple(public.captions[k] for k in keep), tuple(public.files[k] for k in keep))


def gain_profiles(family: Any, probes: ImageSet, slots: list[int], *, samples: int = PROBE_SAMPLES) -> np.ndarray:
    """(1) for the family's adapter ``slots`` (positions in ``family.masks``), relative to slot 0:
    (len(slots), 2 P) nats, P probes with the empty prompt then with their captions."""
    from royalflow.attribution.diffusion.elbo import ElboEstimator
    from royalflow.attribution.families.base import ddpm_scheduler

    estimator = ElboEstimator(ddpm_scheduler(family.base.scheduler_config), levels=256, samples=samples)
    x = torch.from_numpy(to_unit(np.concatenate([probes.pixels, probes.pixels])))
    z0 = family.base.encode_images(x)
    text = family.embed(["" for _ in range(len(probes))] + list(probes.captions))
    draws = estimator.draw([PROBE_SEED + i for i in range(len(x))], tuple(z0.shape[1:]))
    items = len(x)
    per_call = max(1, family.pool.capacity - 1)  # adapters resident at once, the control included
    rows = family.manifest.estimator.max_rows_per_forward
    means: dict[int, np.ndarray] = {}
    wanted = [0, *[s for s in slots if s != 0]]
    with torch.inference_mode():
        for first in range(0, len(wanted), per_call):
            chunk = wanted[first:first + per_call]
            chunk = chunk if 0 in chunk or 0 in means else [0, *chunk]
            slot_ids = torch.tensor(chunk, dtype=torch.int64).repeat_interleave(items)
            item_ids = torch.arange(items).repeat(len(chunk))
            ll = pair_log_likelihood_samples(estimator, family._batched, z0, text, draws, slot_ids, item_ids,  # noqa: SLF001
                                             max_rows=rows).mean(dim=1).reshape(len(chunk), items).numpy()
            means.update(zip(chunk, ll))
    return np.stack([means[s] - means[0] for s in slots])


def close_pairs(profiles: np.ndarray, threshold: float = PROFILE_DISTANCE) -> list[tuple[int, int, float]]:
    """(i, j, d) with i < j and d = (2) <= threshold, from chunked Gram products."""
    g = np.asarray(profiles, dtype=np.float64)
    norms = np.linalg.norm(g, axis=1)
    out = []
    for start in range(0, len(g), GRAM_CHUNK):
        block = g[start:start + GRAM_CHUNK]
        d2 = norms[start:start + GRAM_CHUNK, None] ** 2 + norms[None, :] ** 2 - 2 * block @ g.T
        scale = np.maximum(np.maximum(norms[start:start + GRAM_CHUNK, None], norms[None, :]), 1e-9)
        d = np.sqrt(np.maximum(d2, 0.0)) / scale
        i, j = np.nonzero(d <= threshold)
        i = i + start
        keep = i < j
        out += [(int(a), int(b), float(c)) for a, b, c in zip(i[keep], j[keep], d[i[keep] - start, j[keep]])]
    return out


def relative_distance(g: np.ndarray, h: np.ndarray) -> float:
    return float(np.linalg.norm(g - h)) / max(float(np.linalg.norm(g)), float(np.linalg.norm(h)), 1e-9)


def cross_fit(family: Any, images: Mapping[str, ImageSet], single: list[int],
              pairs: list[tuple[int, int]]) -> dict[tuple[int, int], float]:
    """(3) for each pair (i, j) of owner indices; ``single``: each owner's adapter slot. Each
    owner's pictures are scored once, under its own adapter and its partners'."""
    names = list(family.owners)
    partners: dict[int, set[int]] = {}
    for i, j in pairs:
        partners.setdefault(i, {i}).add(j)
        partners.setdefault(j, {j}).add(i)
    gain: dict[tuple[int, int], float] = {}
    for k, group in sorted(partners.items()):
        order = sorted(group)
        means = gain_profiles(family, probe_subset(images[names[k]], CROSS_FIT_IMAGES), [single[j] for j in order])
        gain.update({(k, j): float(m) for j, m in zip(order, means.mean(axis=1))})

    def fit(i: int, j: int) -> float:
        sides = [gain[(a, b)] / gain[(a, a)] for a, b in ((i, j), (j, i)) if gain[(a, a)] > 0]
        return min(sides) if sides else 0.0  # neither adapter gains on its own pictures: no evidence

    return {(i, j): fit(i, j) for i, j in pairs}


def find_lora_clusters(family: Any, probes: ImageSet | None, images: dict[str, ImageSet] | None = None) -> dict[str, Any]:
    """{"clusters", "cluster_evidence", "cluster_data_sizes", "cluster_check"} for a loaded
    ``LoraFamily`` (its owners in order). ``probes``: public images for (1), None: no profile
    evidence; ``images``: the owners' images for the duplicate evidence, None (imported)."""
    names = list(family.owners)
    n = len(names)
    sizes = [int(family.manifest.data_sizes[o]) for o in names]
    check: dict[str, Any] = {"near_copies": images is not None, "profiles": probes is not None and len(probes) > 0,
                             "profile_distance": PROFILE_DISTANCE, "duplicate_fraction": DUPLICATE_FRACTION,
                             "cross_fit": CROSS_FIT if images is not None else None,
                             "cross_fit_all_pairs": CROSS_FIT_ALL_PAIRS}
    rows: dict[tuple[int, int], dict[str, Any]] = {}

    def row(i: int, j: int) -> dict[str, Any]:
        return rows.setdefault((i, j), {"owners": [names[i], names[j]], "reasons": []})

    # 1. Near-copies between every two owners' images.
    pairs, owner_of = np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.int64)
    if images is not None and n > 1:
        owner_of = np.concatenate([np.full(len(images[o]), k) for k, o in enumerate(names)])
        prints = fingerprints(np.concatenate([images[o].pixels for o in names]))
        found, distances = near_pairs(prints, owner_of)
        matched = matching(found, distances, owner_of)
        copied = set()
        for (i, j), fraction in duplicate_fractions(owner_of, matched, n).items():
            r = row(i, j)
            r["duplicate_fraction"] = round(fraction, 4)
            if fraction >= DUPLICATE_FRACTION:
                r["reasons"].append("near_copies")
                copied.add((i, j))
        # (4) Between owners who copy each other, the copies the hashes missed (fingerprints.py).
        extra = []
        for i, j in sorted(copied):
            more = remainder_pairs(prints, owner_of, matched, i, j)
            row(i, j)["remainder_copies"] = None if more is None else len(more)  # None: over the bound, not checked
            if more is not None:
                extra.append(more)
        matched = np.concatenate([matched, *extra]) if extra else matched
        # Only duplicate owner pairs' copies count once: look-alikes between other owners are chance.
        pairs = matched[[(min(owner_of[a], owner_of[b]), max(owner_of[a], owner_of[b])) in copied
                         for a, b in matched.tolist()]] if len(matched) else matched
    # 2. Same-source adapters. With the owners' pictures (training) the cross-fit (3) decides:
    #    for every pair of a small family, and above that for the pairs close on the probes (2).
    #    Without them (import), a pair close on the probes (2) must also pass (3) on pictures
    #    drawn from each adapter (``adapter_samples.py``): (2) alone merged honest owners.
    if n > 1 and (check["profiles"] or images is not None):
        single = [family.masks.index(1 << i) if family.mode == "exact" else 1 + i for i in range(n)]
        profiles = gain_profiles(family, probes, single) if check["profiles"] else None
        close = close_pairs(profiles) if profiles is not None else []
        for i, j, d in close:
            row(i, j)["profile_distance"] = round(d, 4)
        fitted = images
        if images is not None:
            candidates = list(combinations(range(n), 2)) if n <= CROSS_FIT_ALL_PAIRS else [(i, j) for i, j, _ in close]
        else:
            from royalflow.training.adapter_samples import Draws

            candidates = [(i, j) for i, j, _ in close]
            drawn = sorted({k for pair in candidates for k in pair})
            fitted = Draws(family, {names[k]: single[k] for k in drawn}, CROSS_FIT_IMAGES)
            check["cross_fit"], check["cross_fit_on"] = CROSS_FIT, "adapter_samples"
        for (i, j), fit in cross_fit(family, fitted, single, candidates).items():
            r = row(i, j)
            r["cross_fit"] = round(fit, 4)
            if fit >= CROSS_FIT:
                r["reasons"].append("cross_fit" if images is not None else "interchangeable")
        if profiles is not None and n * (n - 1) // 2 <= MAX_REPORTED_PAIRS:  # small families: every pair, for review
            for i, j in combinations(range(n), 2):
                row(i, j).setdefault("profile_distance", round(relative_distance(profiles[i], profiles[j]), 4))
    # 3. Clusters: connected components of the merged pairs.
    for r in rows.values():
        r["merged"] = bool(r["reasons"])
    clusters = components(n, [pair for pair, r in rows.items() if r["merged"]])
    evidence = [r for (i, j), r in sorted(rows.items()) if r["merged"] or n * (n - 1) // 2 <= MAX_REPORTED_PAIRS]
    # 4. Mixture weight of each cluster: its distinct images (near-copies once); without images,
    #    the members' data sizes (an imported family reports counts, not pictures).
    #    With the pictures, also which ones a cluster's own adapter trains on (cluster_components.py):
    #    each near-copy once, so one owner's shells holding copies train on the owner's pictures.
    closeness = pair_distances(prints, pairs) if images is not None and n > 1 else None
    kept = {j: representatives(c, owner_of, pairs, closeness) for j, c in enumerate(clusters)
            if images is not None and len(c) > 1}
    distinct = [len(kept[j]) if j in kept else sum(sizes[k] for k in c) for j, c in enumerate(clusters)]
    first = np.concatenate([[0], np.cumsum([len(images[o]) for o in names])]) if images is not None else None
    pictures = {j: {names[k]: [int(g - first[k]) for g in keep if owner_of[g] == k] for k in clusters[j]}
                for j, keep in kept.items()}
    return {"clusters": [[names[k] for k in c] for c in clusters], "cluster_evidence": evidence[:MAX_MERGED_REPORTED],
            "cluster_data_sizes": distinct, "cluster_check": check, "cluster_pictures": pictures}


def apply_clusters(manifest: dict[str, Any], found: dict[str, Any]) -> dict[str, Any]:
    """The manifest with the clusters written in (and the check that found them, in training)."""
    training = dict(manifest.get("training") or {})
    training["clusters"] = found["cluster_check"]
    return {**manifest, "clusters": found["clusters"], "cluster_evidence": found["cluster_evidence"],
            "cluster_data_sizes": found["cluster_data_sizes"], "training": training}


def add_clusters(out: Path, manifest: dict[str, Any], probes: ImageSet | None, images: dict[str, ImageSet] | None,
                 *, device: str = "auto") -> tuple[dict[str, Any], dict[int, dict[str, list[int]]]]:
    """Load the family just written at ``out``, find its clusters, and write the manifest again
    with them (``write_manifest``: checked, atomic). Returns the new manifest, and for each
    multi-owner cluster (by index) the pictures its own adapter would train on: owner -> the
    indices of its images kept (near-copies once; empty without the pictures)."""
    from royalflow.attribution.families.lora import LoraFamily
    from royalflow.training.lora import write_manifest

    family = LoraFamily.load(manifest, out, device=device)
    found = find_lora_clusters(family, None if probes is None else probe_subset(probes), images)
    del family
    updated = apply_clusters(manifest, found)
    write_manifest(out, updated)
    return updated, found["cluster_pictures"]


