"""Attribution quality of the LoRA family kind on natural photographs (issue #15): the issue #9
table of ``lora_quality.py``, with owners who hold crops of different photographs
(``photos.py``) instead of drawn shapes.

As a new user would: captions carry no owner information (generic, drawn at random), the tiny
base is pre-trained on crops of public photographs (``BUILD``), the family is trained with the
defaults of the drawn-shape harness (``tiny.STYLE_PLAN``), and what is attributed is
  * "held-out" pictures: crops of the owner's photograph from cells no training crop touched;
  * "edits": other held-out crops re-drawn by the exact family's grand coalition (img2img at
    ``lora_quality.STRENGTH``, guidance ``lora_quality.GUIDANCE``) with a generic prompt.
There are no "drawings": a generic prompt names no owner, so text-to-image has no style owner.
Each item is scored with its generic prompt (conditioned) and with none (content only).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from royalflow.training.lora_quality import (
    StageClock,
    GUIDANCE, STRENGTH, Generation, agreement, by_kind, derive_compositional, identical_gap, load, share_table,
    train_variant,
)
from royalflow.attribution.registry import read_manifest
from royalflow.training.photos import OWNER_PHOTOS, caption, held_out_crops, write_photo_folders

# The harness's pictures and base (issue #15, "base pre-training"): 192 public crops, the UNet
# pre-trained 2,000 steps and the VAE 1,000 steps. Before, the VAE had 300 steps (the drawn
# harness's STYLE_PRETRAIN): a codec that blurred the photographs' colours and textures in its
# latents, so the adapters, which model latents, could not tell the owners' photographs apart
# (README, *On natural photographs*).
BUILD: dict[str, Any] = {"per_owner": 48, "public": 192, "pretrain": {"vae_steps": 1000, "unet_steps": 2000}}
SETTINGS_FILE = "harness.json"  # the BUILD a working folder's pictures and base were made with
KINDS = ("held-out", "edit")
SOURCE, TWIN = "owner-cat", "owner-cat-twin"
EDIT_SEED = 2000  # the edits' init crops: other held-out crops than the held-out items (seed 1000)


def photo_items(family, per_owner: int, *, seed: int = 0) -> list[Generation]:  # type: ignore[no-untyped-def]
    """``per_owner`` held-out crops and ``per_owner`` edits of other held-out crops, per owner."""
    from royalflow.training.tiny import sample_latents

    full = (1 << len(family.owners)) - 1
    rng = np.random.default_rng(seed)
    out: list[Generation] = []
    for i, owner in enumerate(sorted(OWNER_PHOTOS)):
        prompts = [caption(rng) for _ in range(2 * per_owner)]
        held = held_out_crops(owner, per_owner)
        init = held_out_crops(owner, per_owner, seed=EDIT_SEED)
        edits = sample_latents(family, full, prompts[per_owner:], seed=seed + i, guidance=GUIDANCE, init=init,
                               strength=STRENGTH)
        out += [Generation(owner, "held-out", held[j], f"photo-{owner}-held-{j}", prompts[j]) for j in range(per_owner)]
        out += [Generation(owner, "edit", edits[j], f"photo-{owner}-edit-{j}", prompts[per_owner + j])
                for j in range(per_owner)]
    return out


def build_photo_family(root: Path, family_id: str, *, build: dict | None = None,  # type: ignore[type-arg]
                       plan: dict | None = None):  # type: ignore[type-arg,no-untyped-def]
    """The photo harness's pictures and base under ``root`` (made once: ``build`` overrides
    ``BUILD``), and the exact family ``family_id`` on them (``plan``: adapter recipe overrides).
    A folder made with other settings is refused, naming both: its base would silently give
    another harness's figures."""
    from royalflow.training.tiny import build_style_family

    unknown = sorted(set(build or {}) - set(BUILD))
    if unknown:
        raise ValueError(f"unknown photo harness settings {unknown}; known: {sorted(BUILD)}")
    settings = {**BUILD, **(build or {})}
    root = Path(root)
    record = root / SETTINGS_FILE
    if record.is_file() or (root / "base").exists() or (root / "images").exists():
        made = json.loads(record.read_text()) if record.is_file() else "unrecorded (made before harness.json)"
        if made != settings:
            raise ValueError(f"photo harness folder {root} was made with {made}, not {settings}: "
                             f"remove it or choose another working folder")
    else:
        root.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps(settings, sort_keys=True))
    folders = root / "images"
    if not (folders / "_public" / "metadata.jsonl").is_file():
        write_photo_folders(folders, per_owner=int(settings["per_owner"]), public=int(settings["public"]))
    return build_style_family(root, family_id, "1", folders=folders, pretrain=settings["pretrain"], plan=plan)


def evaluate_photos(root: Path, *, per_owner: int, build: dict | None = None, twins: bool = True,  # type: ignore[type-arg]
                    family_id: str = "photos", log: Callable[[str], None] = print) -> dict:  # type: ignore[type-arg]
    """Every figure of the table. ``build``: per_owner (training crops per owner), public,
    pretrain (``BUILD``'s defaults), plan (as ``tiny.build_style_family``). The base and the
    image folders under ``root`` are reused when present (so is every finished adapter), so a
    second call with another ``family_id`` and ``plan`` trains only the adapters."""
    build = dict(build or {})
    plan = build.pop("plan", None)  # the adapters' recipe; the rest makes the pictures and base
    stage = StageClock(log)
    seconds = stage.seconds

    root = Path(root)
    # With the split defence on, as `families train` runs it: these owners are honest, so any
    # merge is a false one (the old probe-only rule merged owner-cat and owner-coffee at profile
    # distance 0.46; the cross-fit now decides, lora_clusters.py). ``figures["clusters"]`` says.
    built = build_photo_family(root, family_id, build=build, plan=plan)
    stage(f"base + exact family {family_id} (3 owners, 8 adapters)")
    exact = load(built.family_path)
    comp = load(derive_compositional(root / "families", built.family_path, f"{family_id}-compositional"))
    if tuple(comp.owners) != tuple(exact.owners):  # every share table below is read in this order
        raise RuntimeError(f"compositional owners {comp.owners} differ from exact {exact.owners}")
    items = photo_items(exact, per_owner)
    stage(f"items ({len(items)})")
    owners = exact.owners
    tables = {"exact": share_table(exact, items), "compositional": share_table(comp, items),
              "exact_content": share_table(exact, items, content_only=True),
              "compositional_content": share_table(comp, items, content_only=True)}
    stage("attribution: exact + compositional, conditioned + content-only")
    figures: dict = {"generations": len(items), "per_owner": per_owner, "owners": list(owners),  # type: ignore[type-arg]
                     "kinds": list(KINDS), "family_id": family_id,
                     "clusters": read_manifest(built.family_path).get("clusters"),
                     "cluster_evidence": read_manifest(built.family_path).get("cluster_evidence"),
                     "quality": {k: by_kind(t, owners, items, KINDS) for k, t in tables.items()},
                     "agreement": {"conditioned": agreement(tables["exact"], tables["compositional"]),
                                   "content_only": agreement(tables["exact_content"], tables["compositional_content"])}}
    figures["identical_owner_gap"] = None
    if twins:
        mine = [g for g in items if g.owner == SOURCE]
        holdings = {SOURCE: (SOURCE, slice(None)), TWIN: (SOURCE, slice(None)), "owner-coffee": ("owner-coffee", slice(None))}
        path = train_variant(root, built.base, built.source, f"{family_id}-twins", holdings, plan=plan)
        twin_family = load(path)
        figures["identical_owner_gap"] = identical_gap(share_table(twin_family, mine), twin_family.owners, SOURCE, TWIN)
        stage(f"twin family and its attribution on {len(mine)} items")
    figures["seconds"] = seconds
    return figures
