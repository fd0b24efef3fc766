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
from royalflow.attribution.families.latent import latent_log_likelihood_samples, row_losses, samples_from
from royalflow.attribution.families.manifest import LoraManifest, parse_manifest
from royalflow.attribution.families.multilora import AdapterBank, FactorStack
from royalflow.attribution.families.resident import DEFAULT_CAPACITY, ResidentPool
from royalflow.attribution.families.screen import FirstOrderScreen, calibrated_all, event_gradients, refine_more
from royalflow.attribution.family import Attribution, Prepared, seed_for
from royalflow.contracts import GenerationEvent
from royalflow.errors import ConfigurationError, ContractError
from royalflow.attribution.families.valuation import (
    EXACT_SHAPLEY_MAX_OWNERS, cluster_log_weights, compositional_attribution, exact_attribution, players_of,
)
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
        # Compositional clusters with their own component (manifest ``cluster_components``): slots
        # after the owners'; that component stands for every member in the mixture (components()).
        position = {o: i for i, o in enumerate(self.owners)}
        given = [c for c, e in zip(manifest.clusters or [], manifest.cluster_components or []) if e is not None]
        self.cluster_slots = [([position[o] for o in c], len(self.masks) + j) for j, c in enumerate(given)]
        self.slot_count = len(self.masks) + len(self.cluster_slots)
        if len(factors) != self.slot_count:
            raise ConfigurationError(f"family {self.family_id}: {len(factors)} adapters for {self.slot_count} slots")
        host = FactorStack.build(factors, linear_shapes(base.unet))
        settings = manifest.estimator
        self.screen_settings = settings.screen
        self.screened = self.mode == "compositional" and n >= settings.screen.min_owners
        capacity = DEFAULT_CAPACITY if self.screened else self.slot_count
        self.pool = ResidentPool(host, capacity, device=device, dtype=self.dtype)
        self.bank = AdapterBank(base.unet, self.pool.stack)
        self.screen = FirstOrderScreen(host, device) if self.screened else None
        scheduler = ddpm_scheduler(base.scheduler_config)
        if scheduler.config.prediction_type != "epsilon":
            raise ConfigurationError(f"base {base.folder} predicts {scheduler.config.prediction_type!r}; "
                                     "the ELBO utility needs an epsilon-prediction UNet")
        try:  # a cut below every timestep's SNR (the base's schedule decides) is the manifest's error
            self.estimator = ElboEstimator(scheduler, levels=256, samples=settings.samples,
                                           proposal=settings.timestep_proposal,
                                           stratified=settings.timesteps == "stratified", snr_cut=settings.snr_cut)
        except ValueError as exc:
            raise ConfigurationError(f"family {self.family_id}: estimator: {exc}") from exc
        sizes = manifest.data_sizes
        self.log_weights = np.log(np.array([sizes["_base"], *[sizes[o] for o in self.owners]], dtype=np.float64))
        # Players of the quotient game (valuation.py): the manifest's clusters, split by data size.
        self.players = players_of(self.owners, manifest.clusters, [sizes[o] for o in self.owners])
        self.log_weights = cluster_log_weights(self.log_weights, self.players, manifest.cluster_data_sizes)
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
        k1 = self.estimator.rows_per_likelihood  # UNet rows per slot and item
        if self.mode == "exact":
            samples = self.utility_samples(batch)
            return [exact_attribution(self, samples[:, b, :].numpy(), len(self.masks) * k1) for b in range(len(batch))]
        if path == "screen" or (path == "auto" and self.screened):
            return self._screened(batch)
        samples = self.components(self.utility_samples(batch))  # (n+1, B, K)
        return [compositional_attribution(self, samples[:, b, :].numpy(), self.slot_count * k1) for b in range(len(batch))]

    def components(self, samples: torch.Tensor) -> torch.Tensor:
        """Compositional (S, B, K) slot samples -> (n+1, B, K) component samples: the control and
        the owners, every member of a cluster with its own component taking that component's
        samples. The cluster's members' weights sum to its distinct images (cluster_log_weights),
        so the mixture holds d_C p_C(x): the cluster's adapter, trained on its distinct rows,
        is the single owner's adapter when the cluster is one owner's shells (rows.py)."""
        out = samples[: len(self.masks)].clone()
        for members, slot in self.cluster_slots:
            out[[1 + m for m in members]] = samples[slot]
        return out

    # -- utilities ---------------------------------------------------------------------
    def _inputs(self, batch: Sequence[Prepared]):  # type: ignore[no-untyped-def]
        x = torch.from_numpy(to_unit(np.stack([p.item[0] for p in batch])))
        z0 = self.base.encode_images(x)
        text = self.embed([p.item[1] for p in batch])
        return z0, text, self.estimator.draw([p.seed for p in batch], tuple(z0.shape[1:]))

    def utility_samples(self, batch: Sequence[Prepared], *, strategy: str = "batched") -> torch.Tensor:
        """v_k per slot (self.masks order, then cluster components), item and Monte-Carlo sample:
        (S, B, K) nats, every slot's full forward. ``strategy="switching"``: one adapter per forward (the baseline)."""
        if strategy not in ("batched", "switching"):
            raise ValueError(f"unknown strategy {strategy!r}")
        z0, text, draws = self._inputs(batch)
        rows = 1 if strategy == "switching" else self.manifest.estimator.max_rows_per_forward
        return latent_log_likelihood_samples(self.estimator, self._batched, z0, text, draws, self.slot_count, max_rows=rows)

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
    def _rows(self, z0: torch.Tensor, text: torch.Tensor, draws: Any, pairs: list[tuple[int, int]],
              rows: torch.Tensor) -> torch.Tensor:
        """Row losses (``latent.row_losses``) of (slot, item) pairs, ``rows`` (P, J) per pair,
        under inference mode, at most ``capacity`` pairs per call (their adapters fit the pool)."""
        slots = torch.tensor([slot for slot, _ in pairs], dtype=torch.int64)
        items = torch.tensor([item for _, item in pairs], dtype=torch.int64)
        parts = []
        with torch.inference_mode():
            for first in range(0, len(pairs), self.pool.capacity):
                last = first + self.pool.capacity
                parts.append(row_losses(self.estimator, self._batched, z0, text, draws, slots[first:last],
                                        items[first:last], rows[first:last],
                                        max_rows=self.manifest.estimator.max_rows_per_forward))
        return torch.cat(parts) if parts else torch.zeros((0, rows.shape[1]), dtype=torch.float64)

    def _screened(self, batch: Sequence[Prepared]) -> list[Attribution]:
        if self.screen is None:
            self.screen = FirstOrderScreen(self.pool.host, self.device)
        settings = self.screen_settings
        z0, text, draws = self._inputs(batch)
        b, k = draws.timesteps.shape
        width = self.estimator.rows_per_likelihood  # K + 1, or K under a cut (6): no decoder row is run
        g, c = min(settings.gradient_rows, width), min(settings.candidate_rows, width)
        budget = int(settings.max_passes * width)
        # The stage shrinks to what the budget leaves after the control, the gradient and the first round.
        spare = budget - width - 3 * g - settings.min_refined * (width - c)
        m = max(settings.min_refined, min(settings.candidates, len(self.owners), spare // c))
        # 1. The control's row losses per item. l = -(prior + row K + mean of rows < K), so a
        # row's share of l has weight 1/K (sampled rows) or 1 (decoder row); rows ranked by it.
        weight = torch.cat([torch.full((k,), 1.0 / k, dtype=torch.float64),
                            torch.ones(width - k, dtype=torch.float64)])
        control = self._rows(z0, text, draws, [(0, i) for i in range(b)], torch.arange(width).expand(b, -1))
        ranked = torch.argsort(-(control * weight), dim=1, stable=True)
        w_np = weight.numpy()
        # 2. First order (1)-(2) on each item's top g rows: one forward + backward of those rows.
        self.bank.captured = {}
        try:
            with torch.enable_grad():
                losses = row_losses(self.estimator, self._forward, z0, text, draws, torch.zeros(b, dtype=torch.int64),
                                    torch.arange(b), ranked[:, :g], max_rows=b * g)
                (-(losses * weight[ranked[:, :g]])).sum().backward()  # gradient of those rows' part of l
            gradients = event_gradients(self.bank.captured, b)
        finally:
            self.bank.captured = None
        inner = self.screen.inner_products(gradients)
        first_order = (inner[:, 1:] - inner[:, :1]).numpy()  # (B, n)
        # 3. Stage (6): the top m candidates per item run the item's top c rows.
        candidates = np.argsort(-(self.log_weights[1:] + first_order), axis=1, kind="stable")[:, :m]
        pairs = [(1 + int(o), i) for i in range(b) for o in candidates[i]]
        staged = self._rows(z0, text, draws, pairs, ranked[[i for _, i in pairs], :c]).numpy()
        control_np = control.numpy()
        partial = [{} for _ in range(b)]  # type: list[dict[int, float]]
        losses_of = [{} for _ in range(b)]  # type: list[dict[int, np.ndarray]]  # owner -> (K+1,) row losses
        for (slot, i), row in zip(pairs, staged):
            top = ranked[i, :c].numpy()
            partial[i][slot - 1] = float(w_np[top] @ (control_np[i, top] - row))
            losses_of[i][slot - 1] = np.full(width, np.nan)
            losses_of[i][slot - 1][top] = row
        base_rows = samples_from(self.estimator, z0, torch.arange(b), control).numpy()  # (B, K): l_0 samples
        used = [width + 3 * g + m * c] * b  # control forward, gradient rows again + backward (x2), stage
        # 4. Rounds: the stage's best, then whichever candidate can still move a share ((3)-(5)).
        order = [sorted(partial[i], key=lambda o, i=i: -(self.log_weights[1 + o] + partial[i][o])) for i in range(b)]
        todo = [order[i][: settings.min_refined] for i in range(b)]
        refined: list[dict[int, float]] = [{} for _ in range(b)]
        gains, bounds, remainders = [first_order[i] for i in range(b)], [settings.bound_nats] * b, [0.0] * b
        shapley = lambda ll: mixture_shapley(self.log_weights, ll, exact_max_players=EXACT_SHAPLEY_MAX_OWNERS).values  # noqa: E731
        while any(todo):
            pairs = [(1 + o, i) for i in range(b) for o in todo[i]]
            rest = [np.flatnonzero(np.isnan(losses_of[i][slot - 1])) for slot, i in pairs]
            rows = self._rows(z0, text, draws, pairs, torch.from_numpy(np.stack(rest))).numpy() if pairs else []
            for (slot, i), where, row in zip(pairs, rest, rows):
                losses_of[i][slot - 1][where] = row
                refined[i][slot - 1] = float(w_np @ (control_np[i] - losses_of[i][slot - 1]))
                used[i] += len(where)
            todo = [[] for _ in range(b)]
            for i in range(b):
                gains[i], bounds[i] = calibrated_all(first_order[i], partial[i], refined[i], settings.bound_nats)
                room = (budget - used[i]) // max(1, width - c)
                todo[i], remainders[i] = refine_more(
                    self.log_weights, float(base_rows[i].mean()), gains[i], bounds[i], set(refined[i]),
                    set(partial[i]), room, settings, shapley)
        # 5. Samples per owner: refined owners their own rows, the rest the control's samples + gain.
        out = []
        for i in range(b):
            component = base_rows[i][None] + np.concatenate([[0.0], gains[i]])[:, None]
            for owner in refined[i]:
                component[1 + owner] = samples_from(self.estimator, z0[i:i + 1], torch.zeros(1, dtype=torch.int64),
                                                    torch.from_numpy(losses_of[i][owner][None])).numpy()[0]
            chosen = sorted(refined[i])
            screen = {"refined": [self.owners[o] for o in chosen], "tolerance": settings.tolerance,
                      "bound_nats": bounds[i], "remainder": remainders[i], "unet_passes": int(used[i])}
            out.append(compositional_attribution(self, component, int(used[i]), screened=chosen, screen=screen))
        return out
