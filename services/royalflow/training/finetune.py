"""One fine-tune of a family's model (base, control or coalition), cached by what defines it.

See digits.py for the fair-control rule these fine-tunes implement.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.progress import Progress
from safetensors.torch import load_file, save_file

from royalflow.attribution.diffusion.images import levels_to_unit
from royalflow.attribution.diffusion.unet import DEFAULT_SCHEDULER, build_scheduler, build_unet
from royalflow.attribution.families.digits import weight_file

BASE_FILE = "base.safetensors"  # the pretrained start of every fine-tune (not a player's model)
OPTIMIZER = "adamw-fused"  # part of every cached model's key: another optimizer kernel rounds otherwise


def seed_of(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("|".join(parts).encode()).digest()[:8], "big") & (2**63 - 1)


@dataclass(frozen=True)
class Source:
    """What one fine-tune draws from: owners' data (labels kept) and/or public data whose labels
    are redrawn uniformly from ``vocabulary`` at every step (no owner's information)."""

    owned: Any
    public: Any
    public_fraction: float  # of each batch, when both are present
    vocabulary: int  # random labels are drawn from 0..vocabulary-1
    null_class: int
    null_dropout: float


def _train(model: torch.nn.Module, source: Source, steps: int, lr: float, plan: Any, seed: int,
           device: torch.device, levels: int, on_step) -> None:  # type: ignore[no-untyped-def]
    """Standard epsilon-prediction training: ||eps - eps_theta(sqrt(abar) x0 + sqrt(1-abar) eps, t, c)||^2."""
    scheduler = build_scheduler(DEFAULT_SCHEDULER)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    parts = [(d, owned) for d, owned in ((source.owned, True), (source.public, False)) if d is not None and len(d.labels)]
    tensors = [(torch.from_numpy(levels_to_unit(d.images, levels))[:, None], torch.from_numpy(d.labels), owned) for d, owned in parts]
    n_public = 0 if len(tensors) == 1 else int(round(plan.batch * source.public_fraction))
    model.to(device).train()
    # fused: one kernel updates all ~100 parameter tensors (measured on CPU: a training step
    # 34.4 -> 32.1 ms against foreach, itself 25-40% cheaper than a loop). Its rounding is not
    # foreach's, so the cache key names the optimizer (OPTIMIZER): earlier models are not reused.
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0, fused=True)
    abar = scheduler.alphas_cumprod
    for _ in range(steps):
        xs, ys = [], []
        for x_all, y_all, owned in tensors:
            count = plan.batch if len(tensors) == 1 else (plan.batch - n_public if owned else n_public)
            idx = torch.randint(0, len(x_all), (count,), generator=gen)
            xs.append(x_all[idx])
            # Public rows: conditioning independent of content (the fair control's rule).
            ys.append(y_all[idx] if owned else torch.randint(0, source.vocabulary, (count,), generator=gen))
        x0, y = torch.cat(xs), torch.cat(ys)
        if source.null_dropout > 0:
            y = torch.where(torch.rand(len(y), generator=gen) < source.null_dropout, torch.full_like(y, source.null_class), y)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (len(y),), generator=gen)
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


def _save(model: torch.nn.Module, path: Path, cached: Path) -> None:
    tmp = path.parent / f".{path.name}.tmp"
    save_file({k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}, str(tmp))
    os.replace(tmp, path)
    # Atomic in the cache too: workers of a pool (pool.py) read it while others write it.
    cached_tmp = cached.parent / f".{cached.name}.{os.getpid()}.tmp"
    shutil.copyfile(path, cached_tmp)
    os.replace(cached_tmp, cached)


class Trainer:
    """Trains (or takes from the cache) the base, the control and coalition models of a family."""

    def __init__(self, target: Path, cache: Path, config: dict[str, Any], plan: Any, public: Any,
                 device: torch.device, levels: int, bar: Progress, task: Any) -> None:
        self.target, self.cache, self.config, self.plan, self.public = target, cache, config, plan, public
        self.device, self.levels, self.bar, self.task = device, levels, bar, task
        self.null_class = int(config["num_class_embeds"]) - 1
        self.config_key = json.dumps(config, sort_keys=True)

    def _source(self, owned: Any, public_fraction: float) -> Source:
        public = self.public if public_fraction > 0 and len(self.public.labels) else None
        return Source(owned, public, public_fraction, self.null_class, self.null_class, self.plan.null_dropout)

    def _fit(self, path: Path, start: Path | None, source: Source, key_parts: list[str], steps: int, lr: float) -> Path:
        cached = self.cache / f"{seed_of(self.config_key, OPTIMIZER, *key_parts):016x}.safetensors"
        if path.exists():
            return path
        if cached.exists():
            shutil.copyfile(cached, path)
            self.bar.advance(self.task, steps)
            return path
        seed = seed_of(self.config_key, *key_parts, "train")
        torch.manual_seed(seed)  # the base's initial weights, too, follow from its data
        model = build_unet(self.config)
        if start is not None:
            model.load_state_dict(load_file(str(start)))
        _train(model, source, steps, lr, self.plan, seed, self.device, self.levels, lambda: self.bar.advance(self.task))
        _save(model, path, cached)
        return path

    def base(self) -> Path:
        p = self.plan
        source = Source(self.public, None, 0.0, self.null_class, self.null_class, 0.0)  # public carries the null class
        return self._fit(self.target / BASE_FILE, None, source,
                         ["base", str(p.steps_base), str(p.lr_base), str(p.batch), self.public.digest()], p.steps_base, p.lr_base)

    def _finetune_key(self, start: Path) -> list[str]:
        p = self.plan
        return ["finetune", json.dumps(p.fairness(), sort_keys=True), str(p.steps_finetune), str(p.lr_finetune),
                str(p.batch), hashlib.sha256(start.read_bytes()).hexdigest(), self.public.digest()]

    def control(self, base: Path) -> Path:
        """v(∅): the coalition schedule on public data with random conditioning (or the base)."""
        if self.plan.control == "base":
            path = self.target / weight_file(0)
            if not path.exists():
                shutil.copyfile(base, path)
            return path
        if self.plan.control != "random_labels":
            raise ValueError(f"control must be random_labels or base, got {self.plan.control!r}")
        return self._fit(self.target / weight_file(0), base, self._source(None, 1.0), [*self._finetune_key(base), "control"],
                         self.plan.steps_finetune, self.plan.lr_finetune)

    def coalition(self, mask: int, data: Any, base: Path, control: Path) -> Path:
        start = control if self.plan.start == "control" and self.plan.control != "base" else base
        mix = self.plan.public_mix if self.plan.control != "base" else 0.0
        data = data.canonical()
        return self._fit(self.target / weight_file(mask), start, self._source(data, mix),
                         [*self._finetune_key(start), data.digest()], self.plan.steps_finetune, self.plan.lr_finetune)
