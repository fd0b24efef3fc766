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
images (``cluster_data_sizes``).

An imported family has no pictures to train a cluster's adapter on. Its cluster's component is
then the members' adapters merged in weight space (``merged_factors``): the data-weighted mean
of their weight updates, Delta W_C = sum_m pi_m B_m A_m with pi_m = d_m / sum d (the one-round
federated average of adapters that learned parts of one source; for duplicated shells, the
shared adapter itself). Valued by their separate adapters instead, k shells that each learned a
part were k weak half-models in the mixture where the owner was one whole one. Measured (README,
*Imported families*): it halves the worst gain of disjoint shells, but the mean of half-data
updates is a flatter model than the owner's own adapter, so it does not reach the bound."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from royalflow.attribution.families.adapters import LORA_FILE, Factors, read_factors, sha256_file
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


MERGED_RANK_FACTOR = 4  # a merged component keeps at most this many times its widest member's rank


def merged_factors(members: list[Factors], sizes: list[int]) -> Factors:
    """One adapter whose update on every layer is the data-weighted mean of the members':

        Delta W_C = sum_m pi_m B_m A_m,   pi_m = d_m / sum_k d_k                       (1)

    written exactly as stacked factors A_C = [A_1; ...; A_k], B_C = [pi_1 B_1, ..., pi_k B_k]
    (rank sum r_m) while that is at most ``MERGED_RANK_FACTOR`` times the widest member's rank;
    above it, the best approximation of (1) of that rank (truncated SVD, Eckart-Young), so a
    cluster of many shells does not widen every slot of the family's factor stack."""
    if not members or len(members) != len(sizes) or any(d <= 0 for d in sizes):
        raise ValueError("merged_factors takes one positive data size per member")
    weights = [d / sum(sizes) for d in sizes]
    out: Factors = {}
    for layer in sorted({name for f in members for name in f}):
        held = [(f[layer], w) for f, w in zip(members, weights) if layer in f]
        cap = MERGED_RANK_FACTOR * max(a.shape[0] for (a, _), _ in held)
        a = torch.cat([a for (a, _), _ in held], dim=0)
        b = torch.cat([b * w for (_, b), w in held], dim=1)
        if a.shape[0] > cap:
            u, sigma, vh = torch.linalg.svd((b.double() @ a.double()), full_matrices=False)
            a, b = vh[:cap].float(), (u[:, :cap] * sigma[:cap]).float()
        out[layer] = (a.contiguous(), b.contiguous())
    return out


def lora_state(factors: Factors) -> dict[str, torch.Tensor]:
    """Factors as the state dict ``save_component`` writes (scaling already in B: no alpha)."""
    state = {}
    for layer, (a, b) in factors.items():
        state[f"{layer}.lora.down.weight"] = a
        state[f"{layer}.lora.up.weight"] = b
    return state


def write_merged_components(out: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """An imported compositional family's multi-owner clusters each given the merged component
    (1) of its members' own components; the manifest written again. Returns it."""
    owners, sizes = list(manifest["owners"]), manifest["data_sizes"]

    def adapter(j: int, members: list[str]) -> dict[str, torch.Tensor]:
        del j
        factors = [read_factors(out / manifest["components"][o]["file"], sha256=manifest["components"][o]["sha256"])
                   for o in members]
        return lora_state(merged_factors(factors, [int(sizes[o]) for o in members]))

    if manifest.get("mode") != "compositional" or not all(o in manifest.get("components", {}) for o in owners):
        raise ValueError("merged cluster components are for compositional families with every owner's component")
    return write_cluster_components(out, manifest, adapter)


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
