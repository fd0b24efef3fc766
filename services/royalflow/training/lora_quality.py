"""Attribution quality of the LoRA family kind (issue #10): the issue #9 table, on the tiny
text-to-image pipeline and its synthetic style owners (``styles.py``, ``tiny.py``).

Generations of an owner's style are sampled by the exact family's grand coalition with the
owner's caption (classifier-free guidance ``GUIDANCE``): "drawings" from pure noise
(text-to-image) and "edits" of held-out pictures in the style (img2img at ``STRENGTH``). They are
attributed with their prompt (conditioned) and without it (content only: the empty prompt).
Shares are max(phi, 0) / sum max(phi, 0); one event id per generation, so every family scores
a generation on the same Monte-Carlo draws.

Variant families (a twin owner, owner-red as two shells) use the honest family's base and
public images, and copies of its owners' image files, so they differ from it only in who holds
what. Every adapter is trained anew, from the same seeded initialisation (``training/lora.py``),
so equal data give bit-equal adapters.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from royalflow.attribution.families import load_family
from royalflow.attribution.families.adapters import LORA_FILE
from royalflow.attribution.families.content import png
from royalflow.attribution.family import Prepared
from royalflow.attribution.registry import read_manifest
from royalflow.producer.events import generation_event
from royalflow.training.quality import ratio, shares  # the digits harness's share rule and gain ratio
from royalflow.training.styles import STYLES, owner_image

GUIDANCE = 3.0  # classifier-free guidance of the sampler (as the tests)
STRENGTH = 0.3  # img2img: fraction of the timesteps re-drawn by the grand coalition
HELD_OUT_SEED = 1000  # init pictures of the edits: other draws than the training images (seed 0)
KINDS = ("drawing", "edit")
SOURCE, TWIN = "owner-red", "owner-twin"
SHELLS = (f"{SOURCE}-shell1", f"{SOURCE}-shell2")


@dataclass(frozen=True)
class Generation:
    owner: str  # the style owner whose caption (and, for an edit, whose held-out picture) made it
    kind: str  # "drawing" (text-to-image) or "edit" (img2img)
    pixels: np.ndarray  # (R, R, 3) uint8
    event_id: str
    prompt: str | None = None  # its prompt; None: the style owner's caption (STYLES)


def sample_generations(family, per_owner: int, *, seed: int = 0) -> list[Generation]:  # type: ignore[no-untyped-def]
    """``per_owner`` drawings and ``per_owner`` edits of every style owner of ``family``."""
    from royalflow.training.tiny import sample_latents

    full = (1 << len(family.owners)) - 1
    held_out = np.random.default_rng(HELD_OUT_SEED + seed)  # seed 0: the quality table's draw
    out: list[Generation] = []
    for i, owner in enumerate(sorted(STYLES)):
        prompts = [STYLES[owner][3]] * per_owner
        init = np.stack([np.asarray(owner_image(owner, held_out)) for _ in range(per_owner)])
        edits = sample_latents(family, full, prompts, seed=seed + i, guidance=GUIDANCE, init=init, strength=STRENGTH)
        drawings = sample_latents(family, full, prompts, seed=seed + 100 + i, guidance=GUIDANCE)
        for kind, images in (("drawing", drawings), ("edit", edits)):
            salt = f"-s{seed}" if seed else ""  # each seed: its own event ids, so its own Monte-Carlo draws
            out += [Generation(owner, kind, images[j], f"lora-quality{salt}-{owner}-{kind}-{j}") for j in range(per_owner)]
    return out


def prepare(family, items: Sequence[Generation], *, content_only: bool = False) -> list[Prepared]:  # type: ignore[no-untyped-def]
    return [family.prepare(generation_event(
        event_id=g.event_id, family_id=family.family_id, family_version=family.version, revenue_amount=10_000_000,
        currency="USD", content=png(g.pixels), prompt=None if content_only else prompt_of(g))) for g in items]


def prompt_of(g: Generation) -> str:
    return STYLES[g.owner][3] if g.prompt is None else g.prompt


def share_table(family, items: Sequence[Generation], *, content_only: bool = False,  # type: ignore[no-untyped-def]
                batch: int = 16) -> np.ndarray:
    """(items, owners) shares, in ``family.owners`` order."""
    rows: list[np.ndarray] = []
    for start in range(0, len(items), batch):
        rows += [shares(a) for a in family.attribute(prepare(family, items[start:start + batch], content_only=content_only))]
    return np.stack(rows) if rows else np.zeros((0, len(family.owners)))


def holder_stats(table: np.ndarray, owners: Sequence[str], holders: Sequence[str]) -> dict[str, float]:
    """Top-1 rate of each item's holder (ties count as misses) and its mean share."""
    if len(holders) == 0:
        return {"items": 0, "top1": float("nan"), "share": float("nan")}
    idx = np.array([list(owners).index(h) for h in holders])
    mine = table[np.arange(len(idx)), idx]
    others = table.copy()
    others[np.arange(len(idx)), idx] = -np.inf
    return {"items": len(holders), "top1": float(np.mean(mine > others.max(axis=1))), "share": float(mine.mean())}


def by_kind(table: np.ndarray, owners: Sequence[str], items: Sequence[Generation],
            kinds: Sequence[str] = KINDS) -> dict[str, dict[str, float]]:
    """holder_stats over all items and per generation kind."""
    out = {"all": holder_stats(table, owners, [g.owner for g in items])}
    for kind in kinds:
        keep = [i for i, g in enumerate(items) if g.kind == kind]
        out[kind] = holder_stats(table[keep], owners, [items[i].owner for i in keep])
    return out


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of items whose top owner is the same under two share tables (same owners order)."""
    return float(np.mean(a.argmax(axis=1) == b.argmax(axis=1))) if len(a) else float("nan")


def identical_gap(table: np.ndarray, owners: Sequence[str], a: str, b: str) -> dict[str, float]:
    """Mean and max |share_a - share_b| over the items."""
    gap = np.abs(table[:, list(owners).index(a)] - table[:, list(owners).index(b)])
    return {"mean": float(gap.mean()), "max": float(gap.max())}


def split_gain(honest: np.ndarray, honest_owners: Sequence[str], attacked: np.ndarray, attacked_owners: Sequence[str],
               source: str, shells: Sequence[str]) -> dict[str, float]:
    """The shells' summed mean share / the source's honest mean share over the same items (ratio of
    means), plus the two means."""
    got = attacked[:, [list(attacked_owners).index(s) for s in shells]].sum(axis=1).mean()
    was = honest[:, list(honest_owners).index(source)].mean()
    return {"gain": ratio(float(got), float(was)), "shells_share": float(got), "honest_share": float(was)}


# -- families ---------------------------------------------------------------------------------

def derive_compositional(families_dir: Path, exact_path: Path, family_id: str, version: str = "1", *,
                         probes=None) -> Path:  # type: ignore[no-untyped-def]
    """A compositional family from an exact one's control and single-owner adapters (import;
    with ``probes``, public images, its clusters from the adapters' gain profiles), with the
    exact family's estimator rule, so both are scored the same way."""
    from royalflow.training.importing import import_lora_family

    manifest = read_manifest(exact_path)
    owners = list(manifest["owners"])
    files = {"_control": exact_path / "adapters" / "0x0" / LORA_FILE,
             **{o: exact_path / "adapters" / hex(1 << i) / LORA_FILE for i, o in enumerate(owners)}}
    return import_lora_family(families_dir, family_id, version, Path(manifest["base"]), owners, files,
                              mode="compositional", data_sizes=dict(manifest["data_sizes"]),
                              samples=int(manifest["estimator"]["samples"]), probes=probes,
                              rule={k: v for k, v in manifest["estimator"].items() if k in ("timesteps", "snr_cut")})


def write_variant(source: Path, target: Path, holdings: dict[str, tuple[str, slice]]) -> Path:
    """Image folders for a variant family: ``holdings`` maps each new owner to (an owner folder
    of ``source``, which of its files, sorted by name). _public is copied whole; metadata.jsonl
    keeps exactly the captions of the files copied."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source / "_public", target / "_public")
    for owner, (held, part) in holdings.items():
        rows = {r["file_name"]: r for r in map(json.loads, (source / held / "metadata.jsonl").read_text().splitlines())
                if r}
        folder = target / owner
        folder.mkdir(parents=True)
        kept = sorted(rows)[part]
        for name in kept:
            shutil.copyfile(source / held / name, folder / name)
        (folder / "metadata.jsonl").write_text("".join(json.dumps(rows[n]) + "\n" for n in kept))
    return target


def train_variant(root: Path, base: Path, source: Path, family_id: str, holdings: dict[str, tuple[str, slice]],
                  *, plan: dict | None = None,  # type: ignore[type-arg]
                  prepare_folders: Callable[[Path], object] | None = None, mode: str = "exact") -> Path:
    """A family (``mode``) on the honest family's base: folders by ``write_variant`` (then changed
    by ``prepare_folders``, e.g. near-copies), then every adapter trained (the recipe of
    ``tiny.build_style_family``), its clusters found (compositional: and their components)."""
    from royalflow.training.images import read_image_folders
    from royalflow.training.lora import LoraPlan, train_lora_family
    from royalflow.training.tiny import RESOLUTION, STYLE_PLAN

    folders = write_variant(source, root / "variants" / family_id, holdings)
    if prepare_folders is not None:
        prepare_folders(folders)
    public, owners = read_image_folders(folders, RESOLUTION)
    return train_lora_family(root / "families", family_id, "1", base, public, owners, mode=mode,
                             resolution=RESOLUTION, plan=LoraPlan(**{**STYLE_PLAN, **(plan or {})}), device="cpu",
                             show_progress=False)


def load(path: Path):  # type: ignore[no-untyped-def]
    return load_family(read_manifest(path), path, "cpu")


class StageClock:
    """A harness run's seconds per stage: ``clock(name)`` ends the stage running since the last
    call (or the start), records it in ``seconds`` and logs the running total."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self.seconds: dict[str, float] = {}
        self._log = log
        self._started = time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(now - self._started, 1)
        self._started = now
        self._log(f"[{sum(self.seconds.values()):7.1f}s] {name}: {self.seconds[name]:.1f}s")


def evaluate(root: Path, *, per_owner: int, attacks: bool | dict, build: dict | None = None,  # type: ignore[type-arg]
             log: Callable[[str], None] = print) -> dict:  # type: ignore[type-arg]
    """Every figure of the table; ``build`` goes to ``build_style_family`` (per_owner, public,
    pretrain, plan). Stage timings in seconds under "seconds"."""
    from royalflow.training.tiny import build_style_family

    build = dict(build or {})
    plan = build.get("plan")
    stage = StageClock(log)
    seconds = stage.seconds

    root = Path(root)
    built = build_style_family(root, "styles", "1", **build)
    stage("base + honest exact family (3 owners, 8 adapters)")
    exact = load(built.family_path)
    comp = load(derive_compositional(root / "families", built.family_path, "styles-compositional"))
    items = sample_generations(exact, per_owner)
    stage(f"generations ({len(items)})")
    owners = exact.owners
    if tuple(comp.owners) != tuple(owners):  # every share table below is read in this order
        raise RuntimeError(f"compositional owners {comp.owners} differ from exact {owners}")
    tables = {"exact": share_table(exact, items), "compositional": share_table(comp, items),
              "exact_content": share_table(exact, items, content_only=True),
              "compositional_content": share_table(comp, items, content_only=True)}
    stage("attribution: honest exact + compositional, conditioned + content-only")
    figures: dict = {"generations": len(items), "per_owner": per_owner, "owners": list(owners),  # type: ignore[type-arg]
                     "quality": {k: by_kind(t, owners, items) for k, t in tables.items()},
                     "agreement": {"conditioned": agreement(tables["exact"], tables["compositional"]),
                                   "content_only": agreement(tables["exact_content"], tables["compositional_content"])},
                     "honest_clusters": read_manifest(built.family_path).get("clusters")}

    on_red = [i for i, g in enumerate(items) if g.owner == SOURCE]
    red = [items[i] for i in on_red]
    twins = train_variant(root, built.base, built.source, "styles-twins",
                          {SOURCE: (SOURCE, slice(None)), TWIN: (SOURCE, slice(None)), "owner-blue": ("owner-blue", slice(None))},
                          plan=plan)
    stage("twin family (3 owners, 8 adapters)")
    twin_family = load(twins)
    figures["identical_owner_gap"] = identical_gap(share_table(twin_family, red), twin_family.owners, SOURCE, TWIN)
    stage(f"attribution: twins on {len(red)} red generations")
    del twin_family

    if attacks:
        from royalflow.training.lora_splits import evaluate_attacks

        split = dict(attacks) if isinstance(attacks, dict) else {}
        figures["splits"] = evaluate_attacks(
            root, built, exact, comp, split.get("seeds", (1, 2, 3, 4, 5)), split.get("per_owner", 4),
            split.get("variants", ((2, "disjoint"), (2, "duplicated"), (2, "near"), (3, "disjoint"), (3, "duplicated"),
                                   (3, "near"))), plan=plan, log=log)
        stage("split attacks")
    figures["seconds"] = seconds
    return figures
