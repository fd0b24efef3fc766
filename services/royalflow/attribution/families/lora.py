"""A LoRA family served to the agent: one pretrained latent text-to-image pipeline, resident
once on its device, and LoRA adapters on its UNet (applied by ``multilora``, no peft).

exact mode:          one adapter per coalition mask S (2^n - 1, plus the control 0x0);
                     v(S) = ELBO of the image's latent under UNet + adapter_S.
compositional mode:  one adapter per owner plus the control (absent: the plain base); with
                     data sizes w_j, v(S) = log((w_0 p_0 + sum_{i in S} w_i p_i) / (w_0 +
                     sum_{i in S} w_i)) from the n+1 component likelihoods
                     (``shapley.mixture``). Two paths to those likelihoods:
  * full:            every component's batched forward, (n+1)(K+1) UNet rows per event;
  * screen+refine:   (``screen.py``) one forward and one backward of the control screen every
                     owner to first order, then the full forward only for the few owners that
                     can change a share: (K+1)(3 + refined) row-equivalents, whatever n is.
                     Used from ``estimator.screen.min_owners`` owners up (default 256).

The utility is in ``latent.py`` (ELBO of the VAE posterior mean, text-conditioned). Every
owner's factors are read and checked when the family loads (an error names the bad file); on
the device only a bounded pool of adapters is resident (``resident.py``). bf16 on CUDA, fp32 on CPU.

Events carry a prompt (``conditioning.prompt``) or nothing: no prompt means the empty prompt,
the unconditional embedding that caption dropout trained. A class label is refused: this
family is conditioned on text, and a label would be silently ignored otherwise.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from royalflow.attribution.diffusion.elbo import ElboEstimator
from royalflow.attribution.diffusion.unet import inference_dtype, limit_cpu_threads, pick_device
from royalflow.attribution.families.adapters import Factors, linear_shapes, read_factors
from royalflow.attribution.families.base import BasePipeline, ddpm_scheduler, load_base
from royalflow.attribution.families.content import decode_rgb, to_unit
from royalflow.attribution.families.latent import latent_log_likelihood_samples, pair_log_likelihood_samples
from royalflow.attribution.families.manifest import LoraManifest, parse_manifest
from royalflow.attribution.families.multilora import AdapterBank, FactorStack
from royalflow.attribution.families.resident import DEFAULT_CAPACITY, ResidentPool
from royalflow.attribution.families.screen import FirstOrderScreen, calibrated, event_gradients, refine_more
from royalflow.attribution.family import Attribution, Prepared, seed_for
from royalflow.contracts import GenerationEvent
from royalflow.errors import ConfigurationError, ContractError
from royalflow.attribution.families.valuation import EXACT_SHAPLEY_MAX_OWNERS, compositional_attribution, exact_attribution
from royalflow.shapley import mixture_shapley

MAX_CACHED_PROMPTS = 1024  # bound on the prompt-embedding cache
MAX_REPORTED_PROBLEMS = 10  # bad adapter files named in one load error


def base_folder(manifest: LoraManifest, path: Path) -> Path:
    base = Path(manifest.base)
    return base if base.is_absolute() else (path / base)


class LoraFamily:
    kind = "lora"

    def __init__(self, manifest: LoraManifest, base: BasePipeline, device: torch.device,
                 factors: Sequence[Factors | None]) -> None:
        self.manifest = manifest
        self.family_id = manifest.family_id
        self.version = manifest.version
        self.owners = tuple(manifest.owners)
        self.pool_fraction = Fraction(manifest.pool_fraction)
        self.mode = manifest.mode
        self.resolution = manifest.resolution
        self.base = base
        self.device = device
        self.dtype = inference_dtype(device)
        limit_cpu_threads(device)
        n = len(self.owners)
        # Slots: every coalition mask the mode needs, mask 0 (the control) first.
        self.masks = list(range(1 << n)) if self.mode == "exact" else [0, *[1 << i for i in range(n)]]
        if len(factors) != len(self.masks):
            raise ConfigurationError(f"family {self.family_id}: {len(factors)} adapters for {len(self.masks)} slots")
        host = FactorStack.build(factors, linear_shapes(base.unet))
        settings = manifest.estimator
        self.screen_settings = settings.screen
        self.screened = self.mode == "compositional" and n >= settings.screen.min_owners
        capacity = DEFAULT_CAPACITY if self.screened else len(self.masks)
        self.pool = ResidentPool(host, capacity, device=device, dtype=self.dtype)
        self.bank = AdapterBank(base.unet, self.pool.stack)
        self.screen = FirstOrderScreen(host, device) if self.screened else None
        scheduler = ddpm_scheduler(base.scheduler_config)
        if scheduler.config.prediction_type != "epsilon":
            raise ConfigurationError(f"base {base.folder} predicts {scheduler.config.prediction_type!r}; "
                                     "the ELBO utility needs an epsilon-prediction UNet")
        self.estimator = ElboEstimator(scheduler, levels=256, samples=settings.samples,
                                       proposal=settings.timestep_proposal, stratified=settings.timesteps == "stratified")
        sizes = manifest.data_sizes
        self.log_weights = np.log(np.array([sizes["_base"], *[sizes[o] for o in self.owners]], dtype=np.float64))
        training = manifest.training or {}
        rule = training.get("fairness")
        self.fairness = None if rule is None else {
            "control": str(rule["control"]), "null_dropout": float(rule["null_dropout"]),
            "public_mix": float(rule["public_mix"]), "start": str(rule["start"])}
        self._prompts: OrderedDict[str, torch.Tensor] = OrderedDict()

    @classmethod
    def load(cls, document: dict[str, Any], path: Path, *, device: str = "auto") -> "LoraFamily":
        manifest = parse_manifest(document, str(path))
        if not isinstance(manifest, LoraManifest):
            raise ConfigurationError(f"family at {path} is not of kind 'lora'")
        target = pick_device(device)
        base = load_base(base_folder(manifest, Path(path)), device=target, dtype=inference_dtype(target))
        shapes = linear_shapes(base.unet)
        # Every file read and checked now: bad ones among thousands fail the load, each by name.
        factors: list[Factors | None] = []
        problems: list[str] = []
        for entry in manifest.slot_files():
            try:
                factors.append(None if entry is None else
                               read_factors(Path(path) / entry.file, sha256=entry.sha256, expected=shapes))
            except ConfigurationError as exc:
                problems.append(str(exc))
        if problems:
            shown = "; ".join(problems[:MAX_REPORTED_PROBLEMS])
            more = f" (and {len(problems) - MAX_REPORTED_PROBLEMS} more)" if len(problems) > MAX_REPORTED_PROBLEMS else ""
            raise ConfigurationError(f"family at {path}: {len(problems)} bad adapter file(s): {shown}{more}")
        torch.nn.Module.to(base.unet, device=target, dtype=inference_dtype(target))
        return cls(manifest, base, target, factors)

    # -- Family protocol ---------------------------------------------------------------
    def prepare(self, event: GenerationEvent) -> Prepared:
        if event.conditioning.class_label is not None:
            raise ContractError("bad_content", f"family {self.family_id} is conditioned on prompts; "
                                               "conditioning.class_label is not accepted")
        pixels = decode_rgb(event.content, self.resolution)
        return Prepared(event=event, item=(pixels, event.conditioning.prompt or ""), seed=seed_for(event.event_id))

    def attribute(self, batch: Sequence[Prepared], *, path: str = "auto") -> list[Attribution]:
        """``path``: "auto" (screen+refine for large compositional families), "full" or "screen"."""
        if not batch:
            return []
        k1 = self.estimator.samples + 1
        if self.mode == "exact":
            samples = self.utility_samples(batch)
            return [exact_attribution(self, samples[:, b, :].numpy(), len(self.masks) * k1) for b in range(len(batch))]
        if path == "screen" or (path == "auto" and self.screened):
            return self._screened(batch)
        samples = self.utility_samples(batch)  # (n+1, B, K)
        return [compositional_attribution(self, samples[:, b, :].numpy(), len(self.masks) * k1) for b in range(len(batch))]

    # -- utilities ---------------------------------------------------------------------
    def _inputs(self, batch: Sequence[Prepared]):  # type: ignore[no-untyped-def]
        x = torch.from_numpy(to_unit(np.stack([p.item[0] for p in batch])))
        z0 = self.base.encode_images(x)
        text = self.embed([p.item[1] for p in batch])
        return z0, text, self.estimator.draw([p.seed for p in batch], tuple(z0.shape[1:]))

    def utility_samples(self, batch: Sequence[Prepared], *, strategy: str = "batched") -> torch.Tensor:
        """v_k per slot (self.masks order), item and Monte-Carlo sample: (M, B, K) nats, every
        slot's full forward. ``strategy="switching"``: one adapter per forward (the baseline)."""
        if strategy not in ("batched", "switching"):
            raise ValueError(f"unknown strategy {strategy!r}")
        z0, text, draws = self._inputs(batch)
        rows = 1 if strategy == "switching" else self.manifest.estimator.max_rows_per_forward
        return latent_log_likelihood_samples(self.estimator, self._batched, z0, text, draws, len(self.masks), max_rows=rows)

    def embed(self, prompts: list[str]) -> torch.Tensor:
        """Text embeddings on CPU (B, L, D), cached per prompt (bounded)."""
        missing = [p for p in dict.fromkeys(prompts) if p not in self._prompts]
        if missing:
            for prompt, row in zip(missing, self.base.encode_prompts(missing).float().cpu()):
                self._prompts[prompt] = row
                if len(self._prompts) > MAX_CACHED_PROMPTS:
                    self._prompts.popitem(last=False)
        return torch.stack([self._prompts[p] for p in prompts])

    def _forward(self, latents: torch.Tensor, steps: torch.Tensor, text: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        """UNet with each row's adapter (host slot numbers), in the caller's grad mode."""
        positions = torch.tensor(self.pool.positions(slots.tolist()), dtype=torch.int64)
        self.bank.select(positions.to(self.device))
        try:
            return self.base.unet(latents.to(self.device, self.dtype), steps.to(self.device),
                                  encoder_hidden_states=text.to(self.device, self.dtype)).sample
        finally:
            self.bank.index = None

    def _batched(self, latents: torch.Tensor, steps: torch.Tensor, text: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self._forward(latents, steps, text, slots)

    # -- screen + refine ---------------------------------------------------------------
    def _screened(self, batch: Sequence[Prepared]) -> list[Attribution]:
        if self.screen is None:
            self.screen = FirstOrderScreen(self.pool.host, self.device)
        z0, text, draws = self._inputs(batch)
        b, k = draws.timesteps.shape
        # 1. One forward + backward of the control per item: l_0 samples and grad_W l (screen.py (1)).
        self.bank.captured = {}
        try:
            with torch.enable_grad():
                base_samples = pair_log_likelihood_samples(
                    self.estimator, self._forward, z0, text, draws,
                    torch.zeros(b, dtype=torch.int64), torch.arange(b), max_rows=b * (k + 1))
                base_samples.mean(dim=1).sum().backward()
            gradients = event_gradients(self.bank.captured, b)
        finally:
            self.bank.captured = None
        base_samples = base_samples.detach()
        # 2. Every slot's inner product (2); the owners' first-order gains relative to the control.
        inner = self.screen.inner_products(gradients)
        gains = (inner[:, 1:] - inner[:, :1]).numpy()  # (B, n)
        base_ll = base_samples.mean(dim=1).numpy()
        base = base_samples.numpy()
        # 3. Rounds: the screen's top owners, then whoever can still move a share ((3)-(5)).
        settings = self.screen_settings
        first = np.argsort(-(self.log_weights[1:] + gains), axis=1, kind="stable")[:, : settings.min_refined]
        todo = [[int(o) for o in row] for row in first]
        refined: list[dict[int, np.ndarray]] = [{} for _ in range(b)]
        remainders, bounds = [0.0] * b, [settings.bound_nats] * b
        tuned = [gains[i] for i in range(b)]  # each event's gains after its latest calibration (5)
        while any(todo):
            samples = self._refine(z0, text, draws, todo)
            for i, owners in enumerate(todo):
                refined[i].update(zip(owners, samples[i]))
            todo = [[] for _ in range(b)]
            for i in range(b):
                tuned[i], error = calibrated(gains[i], {o: float(v.mean() - base_ll[i]) for o, v in refined[i].items()})
                bounds[i] = max(settings.bound_nats, error)
                todo[i], remainders[i] = refine_more(
                    self.log_weights, float(base_ll[i]), tuned[i], bounds[i], set(refined[i]), settings,
                    lambda ll: mixture_shapley(self.log_weights, ll, exact_max_players=EXACT_SHAPLEY_MAX_OWNERS).values)
        out = []
        for i in range(b):
            component = base[i][None] + np.concatenate([[0.0], tuned[i]])[:, None]  # screened: control's samples + gain
            for owner, rows in refined[i].items():
                component[1 + owner] = rows
            chosen = sorted(refined[i])
            passes = (k + 1) * (3 + len(chosen))  # forward + backward (counted twice) + refined forwards
            screen = {"refined": [self.owners[o] for o in chosen], "tolerance": settings.tolerance,
                      "bound_nats": bounds[i], "remainder": remainders[i], "unet_passes": passes}
            out.append(compositional_attribution(self, component, passes, screened=chosen, screen=screen))
        return out

    def _refine(self, z0: torch.Tensor, text: torch.Tensor, draws: Any, todo: list[list[int]]) -> list[np.ndarray]:
        """Full likelihood samples (K,) of each event's listed owners, all pairs batched."""
        k = draws.timesteps.shape[1]
        slots = torch.tensor([1 + owner for owners in todo for owner in owners], dtype=torch.int64)
        items = torch.tensor([i for i, owners in enumerate(todo) for _ in owners], dtype=torch.int64)
        parts = []
        with torch.inference_mode():  # at most `capacity` pairs per call: their adapters all fit the pool
            for first in range(0, slots.numel(), self.pool.capacity):
                parts.append(pair_log_likelihood_samples(
                    self.estimator, self._batched, z0, text, draws, slots[first:first + self.pool.capacity],
                    items[first:first + self.pool.capacity], max_rows=self.manifest.estimator.max_rows_per_forward))
        rows = torch.cat(parts).numpy() if parts else np.zeros((0, k))
        out, start = [], 0
        for owners in todo:
            out.append(rows[start:start + len(owners)])
            start += len(owners)
        return out
