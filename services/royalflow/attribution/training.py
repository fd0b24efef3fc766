"""Training model families: the base model p_0 on public data, then coalition models (exact
mode, 2^n fine-tunes from the base) or one component per owner (compositional mode).

Resumable: each model is written atomically as ``coalition-0x<mask>.safetensors``; a rerun
skips models already on disk. Seeds derive from a hash of the training data, so two owners
holding identical data get identical models (and exactly symmetric shares).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from safetensors.torch import load_file, save_file

from royalflow.attribution.diffusion.family import weight_file
from royalflow.attribution.diffusion.images import levels_to_unit
from royalflow.attribution.diffusion.unet import (
    DEFAULT_CONFIG, DEFAULT_SCHEDULER, build_scheduler, build_unet, limit_cpu_threads, pick_device,
)

NULL_CLASS = 10  # the "no class" label of unconditional (public) training data
DIGIT_LEVELS = 17  # scikit-learn's digits: intensities 0..16
DEMO_HOLDINGS = {"owner-a": (0, 1, 2), "owner-b": (3, 4, 5), "owner-c": (6, 7), "owner-d": (8, 9)}
DEMO_FAMILY = ("digits-diffusion", "1")


@dataclass(frozen=True)
class Dataset:
    images: np.ndarray  # (N, H, W) int64 level indices
    labels: np.ndarray  # (N,) int64

    def __add__(self, other: "Dataset") -> "Dataset":
        return Dataset(np.concatenate([self.images, other.images]), np.concatenate([self.labels, other.labels]))

    def digest(self) -> str:
        return hashlib.sha256(self.images.tobytes() + self.labels.tobytes()).hexdigest()


@dataclass(frozen=True)
class TrainingPlan:
    steps_base: int = 1200
    steps_finetune: int = 300
    batch: int = 64
    lr_base: float = 2e-3
    lr_finetune: float = 2e-3
    samples: int = 32  # Monte-Carlo timesteps per likelihood (estimator setting of the family)


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


def _seed(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("|".join(parts).encode()).digest()[:8], "big") & (2**63 - 1)


def _train(model: torch.nn.Module, data: Dataset, steps: int, lr: float, plan: TrainingPlan, seed: int,
           device: torch.device, levels: int, on_step) -> None:  # type: ignore[no-untyped-def]
    """Standard epsilon-prediction training: ||eps - eps_theta(sqrt(abar) x0 + sqrt(1-abar) eps, t, c)||^2."""
    scheduler = build_scheduler(DEFAULT_SCHEDULER)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    x_all = torch.from_numpy(levels_to_unit(data.images, levels))[:, None]
    y_all = torch.from_numpy(data.labels)
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    abar = scheduler.alphas_cumprod
    for _ in range(steps):
        idx = torch.randint(0, len(x_all), (plan.batch,), generator=gen)
        x0, y = x_all[idx], y_all[idx]
        t = torch.randint(0, scheduler.config.num_train_timesteps, (plan.batch,), generator=gen)
        eps = torch.randn(x0.shape, generator=gen)
        a = abar[t].view(-1, 1, 1, 1)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * eps
        pred = model(x_t.to(device), t.to(device), class_labels=y.to(device)).sample
        loss = torch.nn.functional.mse_loss(pred, eps.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        on_step()
    model.eval()


def train_family(
    out_dir: Path, family_id: str, version: str, public: Dataset, owners: dict[str, Dataset], *,
    mode: str = "exact", plan: TrainingPlan = TrainingPlan(), pool_fraction: str = "3/10",
    levels: int = DIGIT_LEVELS, device: str = "auto", progress: bool = True, cache_dir: Path | None = None,
) -> Path:
    """Train (or resume) a family and write its manifest last, so a manifest means complete.

    ``cache_dir`` (default ``<out_dir>/.cache``) keeps every trained model under a key of
    (architecture, plan, base, training data): coalitions with the same data, in this family
    or another, are trained once.
    """
    if mode not in ("exact", "compositional"):
        raise ValueError(f"mode must be exact or compositional, got {mode!r}")
    names = list(owners)
    n = len(names)
    target = Path(out_dir) / family_id / version
    target.mkdir(parents=True, exist_ok=True)
    masks = list(range(1 << n)) if mode == "exact" else [0, *[1 << i for i in range(n)]]
    config = {**DEFAULT_CONFIG, "num_class_embeds": int(max([public.labels.max(initial=0), *[d.labels.max(initial=0) for d in owners.values()]]) + 1)}
    torch_device = pick_device(device)
    limit_cpu_threads(torch_device)
    torch.use_deterministic_algorithms(True, warn_only=True)
    base_file = target / weight_file(0)
    cache = Path(cache_dir) if cache_dir is not None else Path(out_dir) / ".cache"
    cache.mkdir(parents=True, exist_ok=True)
    todo = [m for m in masks if not (target / weight_file(m)).exists()]
    total = sum(plan.steps_base if m == 0 else plan.steps_finetune for m in todo)
    columns = (TextColumn("training {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not progress) as bar:
        task = bar.add_task(f"{family_id} v{version} ({len(todo)}/{len(masks)} models to go, {torch_device})", total=total)
        for mask in todo:
            members = [names[i] for i in range(n) if mask >> i & 1]
            data = public if mask == 0 else _union([owners[o] for o in members])
            base_key = "" if mask == 0 else hashlib.sha256(base_file.read_bytes()).hexdigest()
            cache_key = _seed(json.dumps(config, sort_keys=True), json.dumps(plan.__dict__, sort_keys=True), base_key, data.digest())
            cached = cache / f"{cache_key:016x}.safetensors"
            if cached.exists():
                shutil.copyfile(cached, target / weight_file(mask))
                bar.advance(task, plan.steps_base if mask == 0 else plan.steps_finetune)
                continue
            config_key = json.dumps(config, sort_keys=True)
            if mask == 0:
                model_seed = _seed(config_key, data.digest(), "base")
                torch.manual_seed(model_seed)  # the base's initial weights, too, follow from its data
                model = build_unet(config)
                steps, lr = plan.steps_base, plan.lr_base
            else:
                model = build_unet(config)
                model.load_state_dict(load_file(str(base_file)))  # fine-tune from the shared base
                model_seed = _seed(config_key, data.digest(), "finetune")
                steps, lr = plan.steps_finetune, plan.lr_finetune
            _train(model, data, steps, lr, plan, model_seed, torch_device, levels, lambda: bar.advance(task))
            tmp = target / f".{weight_file(mask)}.tmp"
            save_file({k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}, str(tmp))
            os.replace(tmp, target / weight_file(mask))
            shutil.copyfile(target / weight_file(mask), cached)
    proposal = _timestep_proposal(target, config, _union(list(owners.values())), levels, n)
    manifest = {
        "kind": "diffusion", "family_id": family_id, "version": version, "mode": mode, "owners": names,
        "pool_fraction": pool_fraction, "levels": levels, "unet": config, "scheduler": DEFAULT_SCHEDULER,
        "estimator": {"samples": plan.samples, "target_std_error": 0.01, "max_permutations": 2000,
                      "timestep_proposal": proposal},
        "data_sizes": {"_base": max(1, len(public.labels)), **{o: len(d.labels) for o, d in owners.items()}},
        "training": {**plan.__dict__, "data_digests": {o: d.digest() for o, d in owners.items()} | {"_base": public.digest()}},
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
                                       seed=_seed(data.digest(), "proposal"))
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
