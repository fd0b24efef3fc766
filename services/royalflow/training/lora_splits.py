"""Split attacks on the LoRA quality harness (``lora_quality.py``): owner-red registers as k shell
owners, next to owner-blue and owner-green, and the shells' summed share is compared with what
owner-red took alone, on owner-red's generations and on the others'.

Holdings of the shells (``holdings``):
  * disjoint   : every k-th of owner-red's pictures each;
  * duplicated : every shell all of them (the same files);
  * near       : shell 1 the pictures, every other shell near-copies of them (``near_copy``:
                 JPEG q75 of a copy resized to 28 and back, cropped by a pixel, noise sigma 4;
                 a fresh draw per shell and picture).
Every variant is an exact family trained from the honest family's base and public pictures
(every adapter from the same seeded start) with its clusters found at training time
(``lora_clusters.py``: near-copies and gain profiles); its compositional family is imported from
the control and single-owner adapters with public probe images (what an import gets: pairs close
on the probes, confirmed on each adapter's draws), then given the training's clusters. Shares are read three ways from ONE set of
likelihood samples per generation: plain Shapley (no clusters), the quotient game with the
training's clusters, and (compositional) with the import's clusters. Two more compositional
families per variant: trained with the defence (each cluster its own component), and imported
with the training's clusters, each valued through its members' merged adapter (``merged_variant``).

Seeds: seed s draws its own generations (``sample_generations(seed=s)``: other noise, other
held-out pictures, other event ids, hence other Monte-Carlo draws); families are trained once.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from PIL import Image

from royalflow.attribution.families.valuation import (
    cluster_log_weights, compositional_attribution, exact_attribution, players_of,
)
from royalflow.training.quality import ratio, shares

SOURCE = "owner-red"
OTHERS = ("owner-blue", "owner-green")
DATA = ("disjoint", "duplicated", "near")
NEAR_SEED = 77  # the near-copies' draws


def shell_names(k: int) -> tuple[str, ...]:
    return tuple(f"{SOURCE}-shell{i + 1}" for i in range(k))


def holdings(k: int, data: str) -> dict[str, tuple[str, slice]]:
    """Each owner of the attacked family -> (the honest owner folder it copies, which files)."""
    if data not in DATA or not 2 <= k <= 8:
        raise ValueError(f"data must be one of {DATA} and k in 2..8, got {data!r}, {k}")
    parts = [slice(i, None, k) if data == "disjoint" else slice(None) for i in range(k)]
    out = {name: (SOURCE, part) for name, part in zip(shell_names(k), parts)}
    return {**out, **{o: (o, slice(None)) for o in OTHERS}}


def near_copy(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A near-copy: resized to 28/32 and back, cropped by one pixel, noise sigma 4, JPEG q75."""
    w, h = image.size
    x = image.resize((w * 7 // 8, h * 7 // 8), Image.Resampling.BICUBIC).resize((w, h), Image.Resampling.BICUBIC)
    dx, dy = int(rng.integers(0, 2)), int(rng.integers(0, 2))
    x = x.crop((dx, dy, w - 1 + dx, h - 1 + dy)).resize((w, h), Image.Resampling.BICUBIC)
    noisy = np.clip(np.asarray(x, dtype=np.float64) + rng.normal(0, 4, (h, w, 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noisy).save(buffer, "JPEG", quality=75)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def make_near(folder: Path, seed: int) -> None:
    """Replace every picture of ``folder`` by a near-copy (same file name, PNG: lossless storage
    of the JPEG-degraded pixels)."""
    rng = np.random.default_rng(seed)
    for path in sorted(folder.glob("*.png")):
        with Image.open(path) as image:
            copy = near_copy(image.convert("RGB"), rng)
        copy.save(path, "PNG")


@contextmanager
def playing(family: Any, clusters: Sequence[Sequence[str]] | None, distinct: Sequence[int] | None) -> Iterator[Any]:
    """``family`` valued with these clusters (None: plain Shapley) while inside."""
    saved = family.players, family.log_weights
    sizes = family.manifest.data_sizes
    raw = np.log(np.array([sizes["_base"], *[sizes[o] for o in family.owners]], dtype=np.float64))
    family.players = players_of(family.owners, None if clusters is None else [list(c) for c in clusters],
                                [sizes[o] for o in family.owners])
    family.log_weights = cluster_log_weights(raw, family.players, distinct)
    try:
        yield family
    finally:
        family.players, family.log_weights = saved


def share_tables(family: Any, items: Sequence[Any], ways: dict[str, tuple[Any, Any]], *, batch: int = 16) -> dict[str, np.ndarray]:
    """(items, owners) shares per way (name -> (clusters, distinct counts)), all from one set of
    likelihood samples per batch (the full path: every slot's forward)."""
    from royalflow.training.lora_quality import prepare

    rows: dict[str, list[np.ndarray]] = {name: [] for name in ways}
    k1 = family.estimator.samples + 1
    for start in range(0, len(items), batch):
        slots = family.utility_samples(prepare(family, items[start:start + batch]))  # (M, B, K)
        # Compositional: the manifest's clusters with their own component stand in for their
        # members; any other way (plain, other clusters) reads the members' own components.
        own = (slots if family.mode == "exact" else slots[: len(family.masks)]).numpy()
        given = slots.numpy() if family.mode == "exact" else family.components(slots).numpy()
        for name, (clusters, distinct) in ways.items():
            samples = given if clusters is not None and _same(clusters, family.manifest.clusters) else own
            with playing(family, clusters, distinct):
                for b in range(samples.shape[1]):
                    if family.mode == "exact":
                        a = exact_attribution(family, samples[:, b, :], len(family.masks) * k1)
                    else:
                        a = compositional_attribution(family, samples[:, b, :], len(family.masks) * k1)
                    rows[name].append(shares(a))
    return {name: np.stack(r) for name, r in rows.items()}


def _same(a: Sequence[Sequence[str]], b: Sequence[Sequence[str]] | None) -> bool:
    return b is not None and sorted(map(sorted, a)) == sorted(map(sorted, b))


def gains(honest: np.ndarray, honest_owners: Sequence[str], attacked: np.ndarray, attacked_owners: Sequence[str],
          items: Sequence[Any], shells: Sequence[str]) -> dict[str, float]:
    """Shells' summed mean share / owner-red's honest mean share, on red's items and on the others'."""
    out = {}
    for where, keep in (("own", [g.owner == SOURCE for g in items]), ("others", [g.owner != SOURCE for g in items])):
        mask = np.array(keep)
        got = attacked[mask][:, [list(attacked_owners).index(s) for s in shells]].sum(axis=1).mean()
        was = honest[mask][:, list(honest_owners).index(SOURCE)].mean()
        out[where] = ratio(float(got), float(was))
    return out


def false_merges(clusters: Sequence[Sequence[str]], same_source: Sequence[str]) -> int:
    """Owner pairs in one cluster that are not both shells of the source."""
    return sum(1 for c in clusters for i, a in enumerate(c) for b in c[i + 1:]
               if not (a in same_source and b in same_source))


def spread(values: list[float]) -> dict[str, float]:
    return {"min": float(np.min(values)), "max": float(np.max(values)), "mean": float(np.mean(values)),
            "per_seed": [round(float(v), 4) for v in values]}


def evaluate_attacks(root: Path, built: Any, exact: Any, comp: Any, seeds: Sequence[int], per_owner: int,
                     variants: Sequence[tuple[int, str]], *, plan: dict | None = None,  # type: ignore[type-arg]
                     log: Callable[[str], None] = print) -> dict[str, Any]:
    """Every (k, data) variant's clusters and gains, per seed, exact and compositional, against
    the honest ``exact`` family and its imported compositional ``comp``."""
    from royalflow.attribution.registry import read_manifest
    from royalflow.training.images import read_image_set
    from royalflow.training.lora_quality import derive_compositional, load, sample_generations, train_variant
    from royalflow.training.tiny import RESOLUTION

    draws = {s: sample_generations(exact, per_owner, seed=s) for s in seeds}
    log(f"split attacks: {len(seeds)} seeds x {len(draws[seeds[0]])} generations")
    honest = {s: {"exact": share_tables(exact, draws[s], {"plain": (None, None)})["plain"],
                  "compositional": share_tables(comp, draws[s], {"plain": (None, None)})["plain"]} for s in seeds}
    honest_clusters = read_manifest(built.family_path).get("clusters") or []
    out: dict[str, Any] = {"seeds": list(seeds), "generations_per_seed": len(draws[seeds[0]]),
                           "honest_family_clusters": honest_clusters,
                           "honest_family_false_merges": false_merges(honest_clusters, []), "variants": []}
    probes = read_image_set(built.source / "_public", RESOLUTION)
    for k, data in variants:
        shells = shell_names(k)
        name = f"styles-shells-k{k}-{data}"
        near = (lambda folder: [make_near(folder / s, NEAR_SEED + i) for i, s in enumerate(shells[1:])]) if data == "near" else None
        path = train_variant(root, built.base, built.source, name, holdings(k, data), plan=plan, prepare_folders=near)
        manifest = read_manifest(path)
        trained = (manifest.get("clusters"), manifest.get("cluster_data_sizes"))
        imported_path = derive_compositional(root / "families", path, f"{name}-compositional", probes=probes)
        imported = read_manifest(imported_path)
        row: dict[str, Any] = {"k": k, "data": data, "clusters": manifest.get("clusters"),
                               "evidence": [e for e in manifest.get("cluster_evidence") or [] if e.get("merged")],
                               "import_clusters": imported.get("clusters"),
                               "false_merges": false_merges(manifest.get("clusters") or [], shells),
                               "import_false_merges": false_merges(imported.get("clusters") or [], shells)}
        # The product's compositional path: trained with the defence, clusters with their own components.
        with_components = train_variant(root, built.base, built.source, f"{name}-compositional-trained", holdings(k, data),
                                        plan=plan, prepare_folders=near, mode="compositional")
        trained_comp = read_manifest(with_components)
        row["trained_compositional_clusters"] = trained_comp.get("clusters")
        row["trained_compositional_false_merges"] = false_merges(trained_comp.get("clusters") or [], shells)
        # An import given the training's clusters: each valued through its members' merged component.
        merged_path = merged_variant(root / "families", path, f"{name}-compositional-merged", trained[0] or [])
        attacked = {"exact": (load(path), {"plain": (None, None), "quotient": trained}),
                    "compositional_merged": (load(merged_path), {"quotient": (trained[0], None)}),
                    "compositional": (load(imported_path), {"plain": (None, None), "quotient": trained,
                                                            "import": (imported.get("clusters"), None)}),
                    "compositional_components": (load(with_components), {"quotient": (trained_comp.get("clusters"),
                                                                                      trained_comp.get("cluster_data_sizes"))})}
        for mode, (family, ways) in attacked.items():
            per_seed: dict[str, dict[str, list[float]]] = {w: {"own": [], "others": []} for w in ways}
            for s in seeds:
                tables = share_tables(family, draws[s], ways)
                for w, table in tables.items():
                    g = gains(honest[s][mode.split("_")[0]], exact.owners, table, family.owners, draws[s], shells)
                    per_seed[w]["own"].append(g["own"])
                    per_seed[w]["others"].append(g["others"])
            row[mode] = {w: {where: spread(v) for where, v in d.items()} for w, d in per_seed.items()}
        log(json.dumps({key: row[key] for key in ("k", "data", "clusters", "import_clusters", "false_merges")}))
        log(json.dumps({m: {w: {where: (round(v["min"], 3), round(v["max"], 3)) for where, v in d.items()}
                            for w, d in row[m].items()} for m in attacked}))
        out["variants"].append(row)
        del attacked
    return out


def merged_variant(families: Path, exact_path: Path, family_id: str, clusters: list[list[str]]) -> Path:
    """The compositional family imported from an exact one's adapters (``derive_compositional``,
    no probes) with ``clusters`` written in and each multi-owner cluster's merged component
    (``cluster_components.write_merged_components``): what an import holds once its clusters
    are known, whatever found them."""
    from royalflow.training.cluster_components import write_merged_components
    from royalflow.training.lora import write_manifest
    from royalflow.training.lora_quality import derive_compositional
    from royalflow.attribution.registry import read_manifest

    path = derive_compositional(families, exact_path, family_id)
    manifest = read_manifest(path)
    sizes = manifest["data_sizes"]
    manifest = {**manifest, "clusters": clusters, "cluster_evidence": [],
                "cluster_data_sizes": [sum(int(sizes[o]) for o in c) for c in clusters]}
    write_manifest(path, manifest)
    write_merged_components(path, manifest)
    return path


def run_splits(root: Path, settings: dict[str, Any], *, log: Callable[[str], None] = print) -> dict[str, Any]:
    """The split attacks alone: the honest family built (or found: every step is resumable), its
    compositional family imported, then ``evaluate_attacks`` with ``settings`` (seeds, per_owner,
    variants)."""
    from royalflow.training.lora_quality import derive_compositional, load
    from royalflow.training.tiny import build_style_family

    root = Path(root)
    built = build_style_family(root, "styles", "1")
    exact = load(built.family_path)
    comp = load(derive_compositional(root / "families", built.family_path, "styles-compositional"))
    splits = evaluate_attacks(root, built, exact, comp, settings.get("seeds", (1, 2, 3, 4, 5)),
                              settings.get("per_owner", 4), settings.get("variants", ((2, "disjoint"),)), log=log)
    return {"splits": splits}
