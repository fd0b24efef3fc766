"""A LoRA family's clusters valued through their own data: one adapter per multi-owner cluster
of a compositional family (the cluster's component), and in exact mode the coalitions that hold
a cluster with near-copies trained again on its pictures with the copies once.

Compositional mode values a cluster through the mixture. Valued by its members' own adapters,
one owner's shells hold two half-data adapters where the honest owner held one, and the
difference moves every owner's share (README, the LoRA split table: 0.89-4.26x on the others'
generations). Trained on the cluster's distinct rows in canonical order (``rows.py``) with the
fair schedule every adapter shares, the cluster's adapter IS the honest owner's adapter, bit for
bit, when the cluster is one owner's shells, disjoint or duplicated; the family then puts it in
the mixture for every member (``LoraFamily.components``), weighted by the cluster's distinct
images (``cluster_data_sizes``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from royalflow.attribution.families.adapters import LORA_FILE, sha256_file
from royalflow.attribution.families.manifest import cluster_component_file


def write_cluster_components(out: Path, manifest: dict[str, Any],
                             adapter: Callable[[int, list[str]], dict[str, torch.Tensor]]) -> dict[str, Any]:
    """Each multi-owner cluster's component at ``cluster_component_file(j)``, trained by
    ``adapter(j, members)``; the manifest written again with ``cluster_components``. Returns it."""
    from royalflow.training.lora import save_component, write_manifest

    entries: list[dict[str, str] | None] = []
    for j, members in enumerate(manifest.get("clusters") or []):
        if len(members) < 2:
            entries.append(None)
            continue
        file = out / cluster_component_file(j)
        file.parent.mkdir(parents=True, exist_ok=True)
        save_component(adapter(j, list(members)), file)
        entries.append({"file": cluster_component_file(j), "sha256": sha256_file(file)})
    if not any(entries):
        return manifest
    updated = {**manifest, "cluster_components": entries}
    write_manifest(out, updated)
    return updated


def retrain_cluster_coalitions(out: Path, manifest: dict[str, Any], kept: dict[int, dict[str, list[int]]],
                               adapter: Callable[[int, dict[str, list[int]]], dict[str, torch.Tensor]]) -> dict[str, Any]:
    """Exact mode: the quotient game values a cluster through the coalitions that hold all of it.
    Where the cluster's pictures hold near-copies (``kept``: its pictures with copies once is
    smaller than their union), every such coalition trains again, ``adapter(mask, selection)``,
    on owner -> picture indices: the cluster's kept pictures and the other members' all. One
    owner's near-copy shells then value as the owner does. The manifest is written again."""
    from royalflow.training.lora import save_adapter, write_manifest

    names, sizes = list(manifest["owners"]), manifest["data_sizes"]
    dropping = {j: p for j, p in kept.items()
                if sum(len(v) for v in p.values()) < sum(sizes[o] for o in manifest["clusters"][j])}
    if not dropping:
        return manifest
    masks = {j: sum(1 << names.index(o) for o in manifest["clusters"][j]) for j in dropping}
    adapters = dict(manifest["adapters"])
    for mask in range(1, 1 << len(names)):
        inside = [j for j, m in masks.items() if mask & m == m]
        if not inside:
            continue
        selection = {o: list(range(sizes[o])) for i, o in enumerate(names) if mask >> i & 1}
        for j in inside:
            selection.update(dropping[j])
        folder = out / "adapters" / f"0x{mask:x}"
        save_adapter(adapter(mask, selection), folder)
        adapters[hex(mask)] = {"file": f"adapters/0x{mask:x}/{LORA_FILE}", "sha256": sha256_file(folder / LORA_FILE)}
    updated = {**manifest, "adapters": adapters}
    write_manifest(out, updated)
    return updated
