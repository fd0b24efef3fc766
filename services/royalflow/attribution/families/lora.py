"""A LoRA family served to the agent: one pretrained latent text-to-image pipeline, resident
once on its device, and LoRA adapters on its UNet.

exact mode:          one adapter per coalition mask S (2^n - 1, plus the control 0x0);
                     v(S) = ELBO of the image's latent under UNet + adapter_S.
compositional mode:  one adapter per owner plus the control (0x0; absent: the plain base);
                     with data sizes w_j, v(S) = log((w_0 p_0 + sum_{i in S} w_i p_i) / (w_0 +
                     sum_{i in S} w_i)) from the n+1 likelihoods by log-sum-exp, as the digits
                     family's compositional mode.

The utility is in ``latent.py`` (ELBO of the VAE posterior mean, text-conditioned). All
adapters of a batch run in ONE batched UNet forward with per-row adapter selection
(``multilora.AdapterBank``); ``strategy="switching"`` instead calls peft's ``set_adapters``
once per adapter (the benchmark's baseline). bf16 on CUDA, fp32 on CPU.

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
from royalflow.attribution.families.adapters import load_adapter_file
from royalflow.attribution.families.base import BasePipeline, ddpm_scheduler, load_base
from royalflow.attribution.families.content import decode_rgb, to_unit
from royalflow.attribution.families.latent import latent_log_likelihood_samples
from royalflow.attribution.families.manifest import LoraManifest, parse_manifest
from royalflow.attribution.families.multilora import AdapterBank
from royalflow.attribution.family import Attribution, Prepared, seed_for
from royalflow.contracts import GenerationEvent
from royalflow.errors import AttributionError, ConfigurationError, ContractError
from royalflow.shapley import batch_means_std_errors, exact_shapley, sample_shapley

EXACT_SHAPLEY_MAX_OWNERS = 14  # compositional families above this use permutation sampling
MAX_CACHED_PROMPTS = 1024  # bound on the prompt-embedding cache


def adapter_name(mask: int) -> str:
    return f"coalition_0x{mask:x}"


def base_folder(manifest: LoraManifest, path: Path) -> Path:
    base = Path(manifest.base)
    return base if base.is_absolute() else (path / base)


class LoraFamily:
    kind = "lora"

    def __init__(self, manifest: LoraManifest, base: BasePipeline, device: torch.device) -> None:
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
        # Slots of the adapter bank: every coalition mask the mode needs, mask 0 first.
        self.masks = list(range(1 << n)) if self.mode == "exact" else [0, *[1 << i for i in range(n)]]
        names = [adapter_name(m) if hex(m) in manifest.adapters else None for m in self.masks]
        self.bank = AdapterBank(base.unet, names)
        self.names = names
        scheduler = ddpm_scheduler(base.scheduler_config)
        if scheduler.config.prediction_type != "epsilon":
            raise ConfigurationError(f"base {base.folder} predicts {scheduler.config.prediction_type!r}; "
                                     "the ELBO utility needs an epsilon-prediction UNet")
        self.estimator = ElboEstimator(scheduler, levels=256, samples=manifest.estimator.samples)
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
        for key, entry in sorted(manifest.adapters.items()):
            load_adapter_file(base.unet, Path(path) / entry.file, adapter_name(int(key, 16)), sha256=entry.sha256)
        torch.nn.Module.to(base.unet, device=target, dtype=inference_dtype(target))
        return cls(manifest, base, target)

    # -- Family protocol ---------------------------------------------------------------
    def prepare(self, event: GenerationEvent) -> Prepared:
        if event.conditioning.class_label is not None:
            raise ContractError("bad_content", f"family {self.family_id} is conditioned on prompts; "
                                               "conditioning.class_label is not accepted")
        pixels = decode_rgb(event.content, self.resolution)
        return Prepared(event=event, item=(pixels, event.conditioning.prompt or ""), seed=seed_for(event.event_id))

    def attribute(self, batch: Sequence[Prepared]) -> list[Attribution]:
        if not batch:
            return []
        samples = self.utility_samples(batch)  # (M, B, K)
        evaluations = len(self.masks) * (self.estimator.samples + 1)
        if self.mode == "exact":
            return [self._exact(samples[:, b, :].numpy(), evaluations) for b in range(len(batch))]
        return [self._compositional(samples[:, b, :].numpy(), evaluations, p.seed) for b, p in enumerate(batch)]

    # -- utilities ---------------------------------------------------------------------
    def utility_samples(self, batch: Sequence[Prepared], *, strategy: str = "batched") -> torch.Tensor:
        """v_k per slot (self.masks order), item and Monte-Carlo sample: (M, B, K) nats."""
        x = torch.from_numpy(to_unit(np.stack([p.item[0] for p in batch])))
        z0 = self.base.encode_images(x)
        text = self.embed([p.item[1] for p in batch])
        draws = self.estimator.draw([p.seed for p in batch], tuple(z0.shape[1:]))
        if strategy == "batched":
            return latent_log_likelihood_samples(self.estimator, self._batched, z0, text, draws, len(self.masks),
                                                 max_rows=self.manifest.estimator.max_rows_per_forward)
        if strategy == "switching":
            try:  # one adapter per forward: max_rows=1 puts a single adapter block in each chunk
                return latent_log_likelihood_samples(self.estimator, self._switching, z0, text, draws, len(self.masks),
                                                     max_rows=1)
            finally:
                self.base.unet.disable_adapters()  # back to the bank's path
        raise ValueError(f"unknown strategy {strategy!r}")

    def embed(self, prompts: list[str]) -> torch.Tensor:
        """Text embeddings on CPU (B, L, D), cached per prompt (bounded)."""
        missing = [p for p in dict.fromkeys(prompts) if p not in self._prompts]
        if missing:
            for prompt, row in zip(missing, self.base.encode_prompts(missing).float().cpu()):
                self._prompts[prompt] = row
                if len(self._prompts) > MAX_CACHED_PROMPTS:
                    self._prompts.popitem(last=False)
        return torch.stack([self._prompts[p] for p in prompts])

    def _unet(self, latents: torch.Tensor, steps: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.base.unet(latents.to(self.device, self.dtype), steps.to(self.device),
                                  encoder_hidden_states=text.to(self.device, self.dtype)).sample

    def _batched(self, latents: torch.Tensor, steps: torch.Tensor, text: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        self.bank.select(slots.to(self.device))
        try:
            return self._unet(latents, steps, text)
        finally:
            self.bank.index = None

    def _switching(self, latents: torch.Tensor, steps: torch.Tensor, text: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        name = self.names[int(slots[0])]
        if name is None:
            self.base.unet.disable_adapters()
        else:
            self.base.unet.enable_adapters()
            self.base.unet.set_adapters([name])
        return self._unet(latents, steps, text)

    # -- Shapley -----------------------------------------------------------------------
    def _exact(self, per_sample: np.ndarray, evaluations: int) -> Attribution:
        n = len(self.owners)
        k = per_sample.shape[1]
        utilities = per_sample.mean(axis=1)
        result = exact_shapley(n, utilities)
        # Standard error: Shapley values are linear in v, so phi per Monte-Carlo sample k.
        phi_samples = np.stack([exact_shapley(n, per_sample[:, j]).values for j in range(k)])
        keys = [hex(m) for m in self.masks]
        return Attribution(
            owners=self.owners, shapley_values=result.values,
            std_errors=phi_samples.std(axis=0, ddof=1) / np.sqrt(k), method="exact", mode="exact",
            coalition_utilities=dict(zip(keys, map(float, utilities))),
            utility_std_errors=dict(zip(keys, map(float, per_sample.std(axis=1, ddof=1) / np.sqrt(k)))),
            model_evaluations=evaluations, fairness=self.fairness,
        )

    def _mixture_shapley(self, component_ll: np.ndarray, seed: int):  # type: ignore[no-untyped-def]
        terms = self.log_weights + component_ll
        weights = np.exp(self.log_weights)

        def v(coalitions: np.ndarray) -> np.ndarray:
            member = np.concatenate([np.ones((coalitions.shape[0], 1), bool), coalitions.astype(bool)], axis=1)
            masked = np.where(member, terms, -np.inf)
            top = masked.max(axis=1, keepdims=True)
            log_num = top[:, 0] + np.log(np.exp(masked - top).sum(axis=1))
            return log_num - np.log(np.where(member, weights, 0.0).sum(axis=1))

        n = len(self.owners)
        if n <= EXACT_SHAPLEY_MAX_OWNERS:
            return exact_shapley(n, v)
        settings = self.manifest.estimator
        return sample_shapley(n, v, seed=seed, target_std_error=settings.target_std_error,
                              max_permutations=settings.max_permutations)

    def _compositional(self, component: np.ndarray, evaluations: int, seed: int) -> Attribution:
        # Rows follow self.masks: base/control, owner 0, owner 1, ...
        if not np.all(np.isfinite(component)):
            raise AttributionError(f"family {self.family_id}: non-finite component likelihoods")
        k = component.shape[1]
        means = component.mean(axis=1)
        result = self._mixture_shapley(means, seed)
        mc_se = batch_means_std_errors(lambda m: self._mixture_shapley(m, seed), component)  # nonlinear utility
        names = ["component:_base", *[f"component:{o}" for o in self.owners]]
        return Attribution(
            owners=self.owners, shapley_values=result.values,
            std_errors=np.sqrt(mc_se**2 + result.std_errors**2), method=result.method, mode="compositional",
            coalition_utilities=dict(zip(names, map(float, means))),
            utility_std_errors=dict(zip(names, map(float, component.std(axis=1, ddof=1) / np.sqrt(k)))),
            model_evaluations=evaluations, fairness=self.fairness,
        )
