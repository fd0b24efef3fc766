"""Training model families: a base model on public data, a fair control for the empty
coalition, then coalition models (exact mode) or one component per owner (compositional mode).

The fair-control rule (why shares are sharp): every model that enters the game went through
the SAME fine-tune from the base (steps, learning rate, batch), and the control v(∅) differs
from a coalition model only in the owners' data:
  * control      : public content with conditioning drawn at random from the family's
                   vocabulary (class labels here; shuffled captions for prompt families), so the
                   conditioning pathway is trained without any owner's information;
  * coalition S  : S's data, with a fraction ``public_mix`` of every batch drawn from the same
                   randomly-conditioned public data, starting from the control's weights when
                   ``start == "control"``;
  * every fine-tune replaces the conditioning by the null class with probability
    ``null_dropout`` (classifier-free style), so p_S(x | null) models S's data: what
    content-only attribution (events without a label) evaluates.
The rule is recorded in the manifest (``training.fairness``) and in every audit record.

Resumable: each model is written atomically as ``coalition-0x<mask>.safetensors``; a rerun
skips models already on disk. Data unions are canonical (rows deduplicated and sorted by
content hash) and seeds derive from their digest, so identical data, in any order or split,
gives identical models (exactly symmetric shares; a split owner's cluster gets its honest model).
"""

from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from safetensors.torch import load_file

from royalflow.attribution.diffusion.images import levels_to_unit
from royalflow.attribution.diffusion.unet import (
    DEFAULT_CONFIG, DEFAULT_SCHEDULER, build_scheduler, build_unet, limit_cpu_threads, pick_device,
)
from royalflow.attribution.families.digits import weight_file
from royalflow.training.finetune import BASE_FILE, OPTIMIZER, Trainer, seed_of
from royalflow.training.pool import ModelPool, worker_count

NULL_CLASS = 10  # the "no class" label of unconditional (public) training data
DIGIT_LEVELS = 17  # scikit-learn's digits: intensities 0..16
from royalflow.training import DEMO_FAMILY, DEMO_HOLDINGS  # noqa: F401 - re-exported


@dataclass(frozen=True)
class Dataset:
    images: np.ndarray  # (N, H, W) int64 level indices
    labels: np.ndarray  # (N,) int64

    def __add__(self, other: "Dataset") -> "Dataset":
        return Dataset(np.concatenate([self.images, other.images]), np.concatenate([self.labels, other.labels]))

    def digest(self) -> str:
        return hashlib.sha256(self.images.tobytes() + self.labels.tobytes()).hexdigest()

    def row_keys(self) -> list[bytes]:
        return [hashlib.sha256(img.tobytes() + lab.tobytes()).digest() for img, lab in zip(self.images, self.labels)]

    def canonical(self) -> "Dataset":
        """Rows deduplicated and sorted by content hash: the same data in any order or split
        trains the same model (so a cluster of shells trains exactly its source's model)."""
        keys = self.row_keys()
        order = sorted({k: i for i, k in reversed(list(enumerate(keys)))}.items())
        idx = np.array([i for _, i in order], dtype=np.int64)
        return Dataset(self.images[idx], self.labels[idx])


@dataclass(frozen=True)
class TrainingPlan:
    steps_base: int = 1200
    steps_finetune: int = 300
    batch: int = 64
    lr_base: float = 2e-3
    lr_finetune: float = 2e-3
    samples: int = 32  # Monte-Carlo timesteps per likelihood (estimator setting of the family)
    control: str = "random_labels"  # v(∅): "random_labels" (fair control) or "base" (pre-v2 behaviour)
    null_dropout: float = 0.15  # P(conditioning -> null class) in every fine-tune
    # Measured and left off by default (README ablation): mixing randomly-labelled public rows
    # into coalition fine-tunes and starting them from the control both blurred the
    # conditioning (holder top-1 45% with both).
    public_mix: float = 0.0  # fraction of each coalition batch from the randomly-labelled public data
    start: str = "base"  # coalition fine-tunes start from "control" or "base"

    def fairness(self) -> dict[str, Any]:
        return {"control": self.control, "null_dropout": self.null_dropout, "public_mix": self.public_mix,
                "start": self.start}


def digits_corpus(holdings: dict[str, tuple[int, ...]], *, public_fraction: float = 0.3) -> tuple[Dataset, dict[str, Dataset]]:
    """scikit-learn's digits (shipped in the package): a public split for the base model, and
    each owner's classes from the rest. Deterministic."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images, labels = digits.images.astype(np.int64), digits.target.astype(np.int64)
    public_idx, private_idx = [], []
    for c in range(10):
        idx = np.flatnonzero(labels == c)
        cut = int(round(len(idx) * public_fraction))
        public_idx.extend(idx[:cut]), private_idx.extend(idx[cut:])
    # The base model p_0 is unconditional: public images carry the null class (10), so the
    # meaning of each digit class comes only from the owners who contribute it.
    public = Dataset(images[public_idx], np.full(len(public_idx), NULL_CLASS, dtype=np.int64))
    private = np.array(private_idx)
    owners = {}
    for owner, classes in holdings.items():
        sel = private[np.isin(labels[private], classes)]
        owners[owner] = Dataset(images[sel], labels[sel])
    return public, owners


def folder_corpus(root: Path, *, size: int = 8, levels: int = DIGIT_LEVELS) -> tuple[Dataset, dict[str, Dataset]]:
    """<root>/<owner>/<class>/*.png (or <root>/<owner>/*.png, class 0); <root>/_public is the base."""
    from PIL import Image

    def load(folder: Path) -> Dataset:
        images, labels = [], []
        for path in sorted(folder.rglob("*.png")):
            label = int(path.parent.name) if path.parent != folder and path.parent.name.isdigit() else 0
            pixels = np.asarray(Image.open(path).convert("L").resize((size, size)), dtype=np.float64)
            images.append(np.rint(pixels * (levels - 1) / 255.0).astype(np.int64))
            labels.append(label)
        return Dataset(np.array(images).reshape(-1, size, size), np.array(labels, dtype=np.int64))

    owners = {p.name: load(p) for p in sorted(root.iterdir()) if p.is_dir() and p.name != "_public"}
    public = load(root / "_public") if (root / "_public").is_dir() else Dataset(np.zeros((0, size, size), np.int64), np.zeros(0, np.int64))
    return public, owners


def train_family(
    out_dir: Path, family_id: str, version: str, public: Dataset, owners: dict[str, Dataset], *,
    mode: str = "exact", plan: TrainingPlan = TrainingPlan(), pool_fraction: str = "3/10",
    levels: int = DIGIT_LEVELS, device: str = "auto", progress: bool = True, cache_dir: Path | None = None,
    clusters: bool = True, workers: int | None = None,
) -> Path:
    """Train (or resume) a family and write its manifest last, so a manifest means complete.

    ``cache_dir`` (default ``<out_dir>/.cache``) keeps every trained model under a key of
    (architecture, plan, start model, training data): coalitions with the same data, in this
    family or another, are trained once. With ``clusters``, same-source owners found at
    training time (see clusters.py) are players of one cluster, and exact mode trains only the
    coalitions that are unions of clusters (2^clusters models). After the base and the control,
    coalition models train on ``workers`` processes (default: one per core; 1: sequential, in
    this process), with the same weights bit for bit (pool.py).
    """
    from royalflow.training.clusters import find_clusters

    if mode not in ("exact", "compositional"):
        raise ValueError(f"mode must be exact or compositional, got {mode!r}")
    names = list(owners)
    n = len(names)
    target = Path(out_dir) / family_id / version
    target.mkdir(parents=True, exist_ok=True)
    # One extra class embedding, the last: the null class (public data, dropout, content-only).
    num_classes = int(max([NULL_CLASS - 1, *[d.labels.max(initial=0) for d in owners.values()]]) + 2)
    config = {**DEFAULT_CONFIG, "num_class_embeds": num_classes}
    public = Dataset(public.images, np.full(len(public.labels), num_classes - 1, dtype=np.int64))
    torch_device = pick_device(device)
    limit_cpu_threads(torch_device)
    torch.use_deterministic_algorithms(True, warn_only=True)
    cache = Path(cache_dir) if cache_dir is not None else Path(out_dir) / ".cache"
    cache.mkdir(parents=True, exist_ok=True)
    singles = [1 << i for i in range(n)]
    columns = (TextColumn("training {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not progress) as bar:
        full = (1 << n) - 1 if mode == "exact" else 0
        total = plan.steps_base + plan.steps_finetune * (1 + n + max(0, full - n))
        task = bar.add_task(f"{family_id} v{version} ({mode}, {torch_device})", total=total)
        trainer = Trainer(target, cache, config, plan, public, torch_device, levels, bar, task)
        clock = time.perf_counter()
        # The control fine-tunes from the base like every coalition model, so it trains on the
        # pool beside them; only when coalitions start from the control must it come first.
        control_first = plan.start == "control" and plan.control != "base"
        union = lambda mask: _union([owners[names[i]] for i in range(n) if mask >> i & 1])  # noqa: E731
        with ModelPool(trainer, target / BASE_FILE, target / weight_file(0),
                       worker_count(torch_device, 1 + n + max(0, full - n), workers)) as pool, \
                ThreadPoolExecutor(1, thread_name_prefix="proposal") as side:
            if not (target / BASE_FILE).exists():
                pool.prestart()  # the workers start up on the second core while the base trains on the first
            base = trainer.base()
            seconds = {"base": time.perf_counter() - clock}
            if control_first:
                trainer.control(base)
            seconds["control"] = time.perf_counter() - clock - sum(seconds.values())
            # The cluster evidence needs the control and the single-owner models. In exact mode the
            # grand coalition is always a model of the family (the union of all clusters), so it
            # trains in this batch too, keeping every worker busy to the end of the batch.
            first = {0: None, **{mask: owners[names[mask.bit_length() - 1]] for mask in singles}}
            if mode == "exact" and full not in singles:
                first[full] = union(full)
            pool.train(first)
            seconds["single_owner_models"] = time.perf_counter() - clock - sum(seconds.values())
            # The timestep proposal needs only the control and the single-owner models: with a pool it
            # is computed on a thread of this process (draws from its own seeded generator) while
            # the cluster evidence and the other coalition models are worked on. Not beside
            # in-process training, whose initial weights come from the global RNG.
            data = _union(list(owners.values()))
            proposal = side.submit(_timestep_proposal, target, config, data, levels, n) if pool.parallel else None
            evidence = find_clusters(target, config, names, owners, public, levels, enabled=clusters,
                                     pair_models=(lambda ms: pool.train({m: union(m) for m in ms})) if mode == "exact" else None)
            seconds["cluster_evidence"] = time.perf_counter() - clock - sum(seconds.values())
            groups = [sum(1 << names.index(o) for o in c) for c in evidence["clusters"]]
            masks = [0, *singles] if mode == "compositional" else sorted(
                {sum(g for j, g in enumerate(groups) if t >> j & 1) for t in range(1 << len(groups))} | {0, *singles})
            pool.train({mask: union(mask) for mask in masks if mask and mask not in first})
            bar.update(task, completed=total)
            seconds["coalition_models"] = time.perf_counter() - clock - sum(seconds.values())
            q = proposal.result() if proposal is not None else _timestep_proposal(target, config, data, levels, n)
            seconds["timestep_proposal"] = time.perf_counter() - clock - sum(seconds.values())  # what was left
    manifest = {
        "kind": "diffusion", "family_id": family_id, "version": version, "mode": mode, "owners": names,
        "pool_fraction": pool_fraction, "levels": levels, "unet": config, "scheduler": DEFAULT_SCHEDULER,
        "null_class": num_classes - 1,
        # Events without a label: every coalition scored on the grand model's class posterior
        # (README, *Content only by the class posterior*: on three draws the holder tops 91-94%
        # exact and 73-74% compositional, against 84-88% and 69-74% by the class mixture).
        "content_only": "class_posterior",
        "estimator": {"samples": plan.samples, "target_std_error": 0.01, "max_permutations": 2000,
                      "timestep_proposal": q},
        "data_sizes": {"_base": max(1, len(public.labels)), **{o: len(d.labels) for o, d in owners.items()}},
        "clusters": evidence["clusters"], "cluster_evidence": evidence["evidence"],
        # Distinct images per cluster: the mixture weight of a cluster (duplicates count once).
        "cluster_data_sizes": [len(_union([owners[o] for o in c]).canonical().labels) for c in evidence["clusters"]],
        "training": {**plan.__dict__, "fairness": plan.fairness(), "optimizer": OPTIMIZER,
                     "data_digests": {o: d.digest() for o, d in owners.items()} | {"_base": public.digest()},
                     "base_weights": hashlib.sha256(base.read_bytes()).hexdigest(),
                     # Where this run's time went (cache hits and resumed models cost ~0).
                     "seconds": {k: round(v, 1) for k, v in seconds.items()}},
        "weights": {hex(m): hashlib.sha256((target / weight_file(m)).read_bytes()).hexdigest() for m in masks},
    }
    (target / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return target


def _timestep_proposal(target: Path, config: dict[str, Any], data: Dataset, levels: int, n: int) -> list[float]:
    """q(s) ~ sqrt(E[(L^{i}_{s-1} - L^{base}_{s-1})^2]) over the single-owner models: sample the
    timesteps where coalition models disagree. Mixed with 10% uniform so that every timestep
    keeps probability (the estimator stays unbiased whatever q is)."""
    from royalflow.attribution.diffusion.elbo import ElboEstimator

    models = []
    for mask in [0, *[1 << i for i in range(n)]]:
        model = build_unet(config)
        model.load_state_dict(load_file(str(target / weight_file(mask))))
        models.append(model.eval())
    estimator = ElboEstimator(build_scheduler(DEFAULT_SCHEDULER), levels=levels, samples=2)
    x0 = torch.from_numpy(levels_to_unit(data.images, levels))[:, None]
    scale = estimator.term_differences(models, x0, torch.from_numpy(data.labels), draws_per_step=24,
                                       seed=seed_of(data.digest(), "proposal"))
    q = scale / scale.sum()
    q = 0.9 * q + 0.1 / len(q)
    return [float(v) for v in q / q.sum()]


def _union(parts: list[Dataset]) -> Dataset:
    out = parts[0]
    for part in parts[1:]:
        out = out + part
    return out


def ensure_demo_family(families_dir: Path, *, progress: bool = True, device: str = "auto") -> tuple[str, str]:
    """The README's demo family (4 owners, exact mode): trained on first use, then cached."""
    family_id, version = DEMO_FAMILY
    if not (Path(families_dir) / family_id / version / "manifest.json").exists():
        public, owners = digits_corpus(DEMO_HOLDINGS)
        train_family(Path(families_dir), family_id, version, public, owners, mode="exact", device=device, progress=progress)
    return family_id, version
