"""Perceptual fingerprints of RGB images, and near-copies across owners: the duplicate evidence
of the split defence for LoRA families (``lora_clusters.py``).

A near-copy survives re-encoding (JPEG), resizing, cropping by a few pixels and small noise, so
bytes and pixels cannot be compared directly. Every image is blurred (Gaussian, radius
``BLUR`` of a 32-pixel side: noise and compression artefacts average away), reduced to a 32 x 32
thumbnail (box filter) and hashed twice:

    pHash  (64 bits): the 8 x 8 lowest frequencies of the DCT-II of the thumbnail's luma,
                      C X C^T with C[u, x] = cos(pi (2x + 1) u / 64), bit set <=> coefficient
                      above the median of the 63 AC coefficients (the DC term is skipped);  (1)
    dHash  (64 bits): 8 x 9 luma, bit set <=> a pixel is brighter than its right neighbour.  (2)

Low frequencies barely move under a crop of a few pixels or a rescale; both hashes ignore
colour. The pHash survives re-encoding and noise but not a crop (near-zero coefficients change
sign); the dHash survives crops and resizing but not noise on flat areas: a pair is a candidate
when EITHER is within ``HASH_BITS`` of 64 bits. Candidates are verified on colour and layout: the
mean |difference| of the 16 x 16 RGB thumbnails, in levels, over the best shift of at most one
thumbnail pixel (a crop of two pixels at 32), must stay below ``COLOUR_LEVELS``             (3)
(a red and a blue circle of one shape have equal hashes, not equal colours).

Measured on the synthetic 32-pixel styles (``styles.py``), every thumbnail a near-copy by JPEG
q75 + resize to 28 and back + a 1-pixel crop + noise sigma 4: (3) at most 9 levels for 100% of
them (8 levels: 92-100%), found whole (hashes, then (3)) 98% (red circles), 75% (blue stripes:
the hashes miss the rest), 96% (green dots); two distinct pictures of one style: 1-3% of pairs within 9 levels
(tiny flat pictures are often near-identical), so 17-42% of an owner's pictures have a
look-alike among 24 others of its style; pictures of two different styles: none. A single
near-copy therefore proves nothing: owners merge on the duplicate FRACTION of a one-to-one
matching (``matching``; each picture is the copy of at most one picture of the other owner).

Pairs are found by comparing every image's hashes with every other owner's, in chunks (XOR and
popcount of 64-bit words: ~10^9 pairs a minute on one core); ``MAX_IMAGES`` bounds the total.
Between two owners whose fraction shows they copy each other, the pictures the hashes left
unmatched are compared on (3) alone, all against all (``remainder_pairs``)                   (4)
(the hashes' misses are not (3)'s), and copies are kept once per group, a group holding at most
one picture of each owner (``representatives``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from royalflow.errors import ConfigurationError

THUMB = 32  # thumbnail side for the DCT (1)
BLUR = 1.5  # Gaussian radius in pixels of a 32-pixel side (scaled with the image)
HASH_BITS = 14  # of 64: largest Hamming distance of a candidate pair, for either hash
COLOUR_LEVELS = 9.0  # (3): mean |RGB difference| of 16 x 16 thumbnails, in levels 0..255
SIDE = 16  # thumbnail side of (3)
MAX_IMAGES = 200_000  # bound on the images compared at once (memory: ~0.3 kB each)
MAX_REMAINDER_PAIRS = 1_000_000  # bound on the pairs (4) compares per owner pair (~10 s of numpy)
CHUNK = 2048  # rows of the pairwise Hamming matrix per step (bounded memory: CHUNK x N bytes)
_LUMA = np.array([0.299, 0.587, 0.114])


@dataclass(frozen=True)
class Fingerprints:
    """Per image: pHash (1), dHash (2) as uint64, and a SIDE x SIDE RGB thumbnail (float32 levels)."""

    phash: np.ndarray  # (N,) uint64
    dhash: np.ndarray  # (N,) uint64
    colour: np.ndarray  # (N, SIDE, SIDE, 3) float32

    def __len__(self) -> int:
        return int(self.phash.shape[0])


def _resize(pixels: list[Image.Image], size: tuple[int, int]) -> np.ndarray:
    """Images -> (N, h, w, 3) float64 by PIL's box filter (area average), h, w = size."""
    return np.stack([np.asarray(p.resize((size[1], size[0]), Image.Resampling.BOX), dtype=np.float64) for p in pixels])


def _bits(mask: np.ndarray) -> np.ndarray:
    """(N, 64) bool -> (N,) uint64."""
    return (mask.astype(np.uint64) << np.arange(64, dtype=np.uint64)).sum(axis=1, dtype=np.uint64)


def _dct_matrix(n: int) -> np.ndarray:
    u, x = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    return np.cos(np.pi * (2 * x + 1) * u / (2 * n))


_DCT = _dct_matrix(THUMB)[:8]  # only the 8 lowest frequencies are kept


def fingerprints(pixels: np.ndarray) -> Fingerprints:
    """Fingerprints of (N, H, W, 3) uint8 RGB images (any H, W >= 9)."""
    pixels = np.asarray(pixels)
    if pixels.ndim != 4 or pixels.shape[3] != 3 or pixels.dtype != np.uint8:
        raise ConfigurationError(f"fingerprints need (N, H, W, 3) uint8 images, got {pixels.shape} {pixels.dtype}")
    if len(pixels) == 0:
        return Fingerprints(np.zeros(0, np.uint64), np.zeros(0, np.uint64), np.zeros((0, SIDE, SIDE, 3), np.float32))
    radius = BLUR * max(pixels.shape[1:3]) / 32
    blurred = [Image.fromarray(p).filter(ImageFilter.GaussianBlur(radius)) for p in pixels]
    luma = _resize(blurred, (THUMB, THUMB)) @ _LUMA  # (N, 32, 32)
    low = np.einsum("ux,nxy,vy->nuv", _DCT, luma, _DCT).reshape(len(pixels), 64)[:, 1:]  # (1), AC terms
    phash = _bits(np.concatenate([np.zeros((len(pixels), 1), bool), low > np.median(low, axis=1, keepdims=True)], axis=1))
    small = _resize(blurred, (8, 9)) @ _LUMA  # (N, 8, 9)
    dhash = _bits((small[:, :, 1:] > small[:, :, :-1]).reshape(len(pixels), 64))  # (2)
    colour = _resize(blurred, (SIDE, SIDE)).astype(np.float32)
    return Fingerprints(phash, dhash, colour)


def _colour_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(3) for pairs (P, SIDE, SIDE, 3) x (P, SIDE, SIDE, 3): min over shifts |dy|, |dx| <= 1 of
    the mean |difference| on the overlap."""
    best = np.full(len(a), np.inf)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            pa = a[:, max(dy, 0):SIDE + min(dy, 0), max(dx, 0):SIDE + min(dx, 0)]
            pb = b[:, max(-dy, 0):SIDE + min(-dy, 0), max(-dx, 0):SIDE + min(-dx, 0)]
            best = np.minimum(best, np.abs(pa - pb).mean(axis=(1, 2, 3)))
    return best


def near_pairs(prints: Fingerprints, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(P, 2) index pairs (i < j) of near-copies whose ``groups`` differ (owners; pass one group
    per image to compare within a set), and their distances (3) (P,)."""
    n = len(prints)
    if n > MAX_IMAGES:
        raise ConfigurationError(f"{n} images to compare; the duplicate check takes at most {MAX_IMAGES}")
    groups = np.asarray(groups)
    found, distances = [], []
    for start in range(0, n, CHUNK):
        rows = slice(start, min(n, start + CHUNK))
        # Only j > i, other group: each unordered pair once.
        close = ((np.bitwise_count(prints.phash[rows, None] ^ prints.phash[None, :]) <= HASH_BITS)
                 | (np.bitwise_count(prints.dhash[rows, None] ^ prints.dhash[None, :]) <= HASH_BITS)) \
            & (groups[rows, None] != groups[None, :]) & (np.arange(rows.start, rows.stop)[:, None] < np.arange(n)[None, :])
        i, j = np.nonzero(close)
        i = i + start
        if len(i):
            d = _colour_distance(prints.colour[i], prints.colour[j])
            keep = d <= COLOUR_LEVELS  # (3)
            found.append(np.stack([i[keep], j[keep]], axis=1))
            distances.append(d[keep])
    if not found:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0)
    return np.concatenate(found), np.concatenate(distances)


def matching(pairs: np.ndarray, distances: np.ndarray, owner_of: np.ndarray) -> np.ndarray:
    """A one-to-one matching per owner pair (greedy, closest first): each picture is the copy of
    at most one picture of each other owner. Rows of ``pairs`` kept, in (P', 2)."""
    owner_of = np.asarray(owner_of)
    used: set[tuple[int, int]] = set()  # (picture, the other owner) already matched
    kept = []
    for row in np.argsort(distances, kind="stable"):
        i, j = (int(x) for x in pairs[row])
        a, b = int(owner_of[i]), int(owner_of[j])
        if (i, b) in used or (j, a) in used:
            continue
        used.add((i, b))
        used.add((j, a))
        kept.append(row)
    return pairs[np.array(sorted(kept), dtype=np.int64)] if kept else np.zeros((0, 2), dtype=np.int64)


def duplicate_fractions(owner_of: np.ndarray, pairs: np.ndarray, owners: int) -> dict[tuple[int, int], float]:
    """{(a, b): share of the smaller owner's images with a near-copy in the other's} for every
    owner pair (a < b) with at least one near-copy; ``owner_of``: each image's owner index;
    ``pairs``: a one-to-one ``matching``."""
    owner_of = np.asarray(owner_of)
    counts = np.bincount(owner_of, minlength=owners)
    hit: dict[tuple[int, int], tuple[set[int], set[int]]] = {}
    for i, j in pairs.tolist():
        a, b = int(owner_of[i]), int(owner_of[j])
        if a > b:
            a, b, i, j = b, a, j, i
        left, right = hit.setdefault((a, b), (set(), set()))
        left.add(i)
        right.add(j)
    out = {}
    for (a, b), (left, right) in hit.items():
        smaller = len(left) if counts[a] <= counts[b] else len(right)
        out[(a, b)] = smaller / max(1, min(counts[a], counts[b]))
    return out


def remainder_pairs(prints: Fingerprints, owner_of: np.ndarray, matched: np.ndarray, a: int, b: int) -> np.ndarray | None:
    """(4) The copies the hashes missed between owners ``a`` and ``b``, already known to hold
    copies of each other (their matched fraction passed the duplicate line): every picture of
    either left without a match in the other is compared with every one of the other's, on (3) alone (no
    hash candidate needed), and matched one to one, closest first. The hashes find 75-98% of
    the copies (module docstring) while (3) holds for all of them, and among two owners who
    copy each other a look-alike matched by mistake only merges two near-identical pictures of
    one cluster. Rows (i, j) of new matches; None when the remainder is over
    ``MAX_REMAINDER_PAIRS`` (the caller reports that it was not checked)."""
    owner_of = np.asarray(owner_of)
    # Pictures already matched between these two owners (a picture may also have copies elsewhere).
    ends = owner_of[matched.reshape(-1, 2)]  # (P, 2) owners of each matched pair
    done = matched.reshape(-1, 2)[(ends == a).any(axis=1) & (ends == b).any(axis=1)].ravel()
    left = np.setdiff1d(np.flatnonzero(owner_of == a), done)
    right = np.setdiff1d(np.flatnonzero(owner_of == b), done)
    if len(left) * len(right) > MAX_REMAINDER_PAIRS:
        return None
    if not len(left) or not len(right):
        return np.zeros((0, 2), dtype=np.int64)
    i, j = (grid.ravel() for grid in np.meshgrid(left, right, indexing="ij"))
    found = np.stack([np.minimum(i, j), np.maximum(i, j)], axis=1)
    d = pair_distances(prints, found)
    keep = d <= COLOUR_LEVELS  # (3), as for the hash candidates
    return matching(found[keep], d[keep], owner_of)


def pair_distances(prints: Fingerprints, pairs: np.ndarray) -> np.ndarray:
    """(3) for the rows (i, j) of ``pairs`` (P,)."""
    if not len(pairs):
        return np.zeros(0)
    return np.concatenate([_colour_distance(prints.colour[pairs[k:k + CHUNK, 0]], prints.colour[pairs[k:k + CHUNK, 1]])
                           for k in range(0, len(pairs), CHUNK)])


def representatives(members: Sequence[int], owner_of: np.ndarray, pairs: np.ndarray,
                    distances: np.ndarray | None = None) -> np.ndarray:
    """The images of the owners ``members`` with near-copies among them kept once: the first
    image (lowest index) of each group of copies. Pass the matched pairs of owner pairs that ARE
    copies of each other, so that look-alikes do not shrink the set. Ascending global indices.

    Groups grow from the closest pair up (``distances``; else in the order given), and a group
    holds at most one picture of each owner: a copy is a copy of ONE picture. Without that rule a
    single look-alike matched between two shells' copies (both noisy, so their own match may be
    the farther one) chains two originals into one group and drops one of them."""
    from royalflow.training.clusters import components

    owner_of = np.asarray(owner_of)
    inside = np.flatnonzero(np.isin(owner_of, list(members)))
    local = {int(k): m for m, k in enumerate(inside)}
    order = np.argsort(distances, kind="stable") if distances is not None else range(len(pairs))
    edges = [(local[i], local[j]) for i, j in (pairs[row].tolist() for row in order) if i in local and j in local]
    groups = components(len(inside), edges, labels=owner_of[inside].tolist())
    return np.array(sorted(int(inside[g[0]]) for g in groups), dtype=np.int64)  # each group's first image


def distinct_count(members: Sequence[int], owner_of: np.ndarray, pairs: np.ndarray,
                   distances: np.ndarray | None = None) -> int:
    """How many images the owners ``members`` hold, near-copies among them counted once."""
    return len(representatives(members, owner_of, pairs, distances))
