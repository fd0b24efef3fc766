"""Training a LoRA family over a local pretrained pipeline: one adapter per coalition (exact)
or per owner (compositional), through diffusers' peft integration (``unet.add_adapter``), saved
with diffusers' own LoRA serialisation: exact ``adapters/<mask>/pytorch_lora_weights.safetensors``,
compositional ``components/<index>.safetensors`` (00000 the control, then the owners in order).

The fair control (issue #9's rule, with prompts instead of class labels): every adapter that
enters the game goes through the SAME fine-tune (steps, batch, learning rate, rank, and the
same seeded noise/timestep draws), and they differ only in data:
  * control 0x0  : the public images with their captions SHUFFLED across images, so the text
                   pathway is tuned without any owner's pairing of words and pictures;
  * coalition S  : the union of S's images and captions, with a fraction ``public_mix`` of every
                   batch drawn from the same shuffled public data;
  * every adapter starts from the same seeded initialisation, so identical data train
    identical adapters (a twin is paid exactly what its original is);
  * every fine-tune replaces the caption by the empty prompt with probability
    ``caption_dropout``, so p_S(x | "") models S's images: prompt-less events use it.
Without ``_public`` images the control is the plain base (recorded as control "base").
Resumable: adapters already on disk are kept.

Latents are the VAE posterior mean, scaled (the same latent the utility evaluates).
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from royalflow.attribution.diffusion.unet import pick_device
from royalflow.attribution.families.adapters import LORA_FILE, sha256_file
from royalflow.attribution.families.base import BasePipeline, ddpm_scheduler, load_base
from royalflow.attribution.families.content import to_unit
from royalflow.attribution.families.manifest import (
    CONTROL, EXACT_MAX_OWNERS, LORA_ESTIMATOR_RULE, MAX_OWNERS, check_owner_ids, component_file, parse_manifest,
)
from royalflow.attribution.registry import check_family_ref
from royalflow.errors import ConfigurationError
from royalflow.training.images import ImageSet
from royalflow.training.rows import ORDERS, Encoded, build_rows, concat

TARGET_MODULES = ("to_q", "to_k", "to_v", "to_out.0")
ENCODE_BATCH = 64  # images per VAE/text-encoder call while preparing data
MAX_STEPS = 1_000_000
MAX_PROPOSAL_DRAWS = 1024
PROPOSAL_MAX_OWNERS = 16  # single-owner adapters that measure the timestep proposal (cost bound)


@dataclass(frozen=True)
class LoraPlan:
    steps: int = 400
    batch: int = 16
    learning_rate: float = 5e-3
    rank: int = 8
    caption_dropout: float = 0.15
    public_mix: float = 0.25
    samples: int = 16  # K Monte-Carlo timesteps per likelihood at attribution time
    seed: int = 0
    # How attribution draws its K timesteps (manifest estimator, issue #15's ablation in the
    # README): "independent" or "stratified"; proposal_draws > 0 measures the timestep proposal
    # (where single-owner adapters disagree with the control) with that many draws per timestep.
    timesteps: str = str(LORA_ESTIMATOR_RULE["timesteps"])
    proposal_draws: int = 0
    # v(S) counted down to this SNR (elbo.py (6)); None: the full bound, the rule before.
    snr_cut: float | None = float(LORA_ESTIMATOR_RULE["snr_cut"])
    # A coalition's training rows (rows.py): "canonical", its distinct rows in content-key order
    # (equal data train equal adapters whoever holds them: what the split defence compares), or
    # "owners", the owners' rows concatenated in owner order (families trained before).
    data_order: str = "canonical"

    def fairness(self, has_control: bool) -> dict[str, object]:
        return {"control": "shuffled_captions" if has_control else "base", "null_dropout": self.caption_dropout,
                "public_mix": self.public_mix if has_control else 0.0, "start": "base"}


def encode_set(base: BasePipeline, images: ImageSet, captions: list[str] | None = None) -> Encoded:
    captions = list(images.captions) if captions is None else captions
    latents, text = [], []
    for start in range(0, len(images), ENCODE_BATCH):
        x = torch.from_numpy(to_unit(images.pixels[start:start + ENCODE_BATCH]))
        latents.append(base.encode_images(x))
        text.append(base.encode_prompts(captions[start:start + ENCODE_BATCH]).float().cpu())
    device = next(base.unet.parameters()).device
    return Encoded(torch.cat(latents).to(device), torch.cat(text).to(device))


def coalition_rows(base: BasePipeline, owners: dict[str, ImageSet], names: list[str],
                   order: str) -> tuple[Callable[[list[str]], Encoded], Callable[[dict[str, list[int]]], Encoded] | None]:
    """owners -> their coalition's training rows, in the plan's ``data_order`` (rows.py); and,
    in canonical order, chosen pictures -> their rows (None in owner order)."""
    if order == "canonical":
        table = build_rows(base, {o: owners[o] for o in names})
        return table.coalition, table.pictures
    encoded = {o: encode_set(base, owners[o]) for o in names}
    return (lambda members: concat([encoded[o] for o in members])), None


def train_adapter(base: BasePipeline, data: Encoded, public: Encoded | None, empty: torch.Tensor, name: str,
                  plan: LoraPlan, progress: Progress | None = None, *, public_mix: float) -> dict[str, torch.Tensor]:
    """Fine-tune one LoRA adapter on ``data`` (+ ``public_mix`` of ``public``); its state dict
    in diffusers' format. The adapter is removed from the UNet afterwards (memory stays flat)."""
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict
    from diffusers.utils import convert_state_dict_to_diffusers

    unet = base.unet
    scheduler = ddpm_scheduler(base.scheduler_config)
    # The same initial A matrices for every adapter (peft draws them from torch's global RNG):
    # owners with identical data then train identical adapters and are paid identical shares.
    with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
        warnings.filterwarnings("ignore", message="Already found a `peft_config`", category=UserWarning)
        torch.manual_seed(plan.seed)
        unet.add_adapter(LoraConfig(r=plan.rank, lora_alpha=plan.rank, init_lora_weights="gaussian",
                                    target_modules=list(TARGET_MODULES)), adapter_name=name)
    unet.set_adapter(name)
    params = [p for n, p in unet.named_parameters() if f".{name}." in n]
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=plan.learning_rate, weight_decay=0.0)
    # The same seed for every adapter: identical noise and timestep draws (the fair schedule).
    gen = torch.Generator(device="cpu").manual_seed(plan.seed)
    device = data.latents.device
    n_public = round(plan.batch * public_mix) if public is not None and len(public.latents) else 0
    task = progress.add_task(name, total=plan.steps) if progress else None
    unet.train()
    for _ in range(plan.steps):
        own = torch.randint(0, len(data.latents), (plan.batch - n_public,), generator=gen)
        z, text = data.latents[own], data.text[own]
        if n_public:
            pub = torch.randint(0, len(public.latents), (n_public,), generator=gen)
            z, text = torch.cat([z, public.latents[pub]]), torch.cat([text, public.text[pub]])
        drop = torch.rand(plan.batch, generator=gen) < plan.caption_dropout
        text = torch.where(drop.to(device)[:, None, None], empty.to(device)[None], text)
        noise = torch.randn(z.shape, generator=gen).to(device)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (plan.batch,), generator=gen).to(device)
        noisy = scheduler.add_noise(z, noise, t)
        loss = torch.nn.functional.mse_loss(unet(noisy, t, encoder_hidden_states=text).sample.float(), noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if progress is not None and task is not None:
            progress.advance(task)
    unet.eval()
    state = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet, adapter_name=name))
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in state.items()}
    unet.delete_adapters(name)
    return state


def save_adapter(state: dict[str, torch.Tensor], folder: Path) -> Path:
    """Write with diffusers' LoRA serialisation, atomically (a rerun keeps finished adapters)."""
    from diffusers import StableDiffusionPipeline

    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    StableDiffusionPipeline.save_lora_weights(str(tmp), unet_lora_layers=state, weight_name=LORA_FILE)
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder / LORA_FILE


def save_component(state: dict[str, torch.Tensor], file: Path) -> Path:
    """One compositional component as a single file (diffusers' serialisation, atomically)."""
    written = save_adapter(state, file.with_name(file.stem + ".folder"))
    os.replace(written, file)
    shutil.rmtree(written.parent)
    return file


def progress_bar(*, disable: bool = False) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), disable=disable)


def train_lora_family(families_dir: Path, family_id: str, version: str, base_folder: Path, public: ImageSet,
                      owners: dict[str, ImageSet], *, mode: str = "exact", resolution: int, plan: LoraPlan = LoraPlan(),
                      pool_fraction: str = "3/10", device: str = "auto", show_progress: bool = True,
                      clusters: bool = True) -> Path:
    """Train every adapter of the family into ``<families_dir>/<id>/<version>`` and write its manifest.
    With ``clusters``, same-source owners (``lora_clusters.py``: near-copies among their images,
    adapters that explain each other's pictures) are found and written in as clusters."""
    if mode not in ("exact", "compositional"):
        raise ConfigurationError(f"mode must be exact or compositional, got {mode!r}")
    if not 1 <= plan.steps <= MAX_STEPS:
        raise ConfigurationError(f"steps must be in [1, {MAX_STEPS}]")
    if plan.timesteps not in ("independent", "stratified") or not 0 <= plan.proposal_draws <= MAX_PROPOSAL_DRAWS:
        raise ConfigurationError(f"timesteps must be independent or stratified and proposal_draws in "
                                 f"[0, {MAX_PROPOSAL_DRAWS}], got {plan.timesteps!r}, {plan.proposal_draws}")
    if plan.data_order not in ORDERS:
        raise ConfigurationError(f"data_order must be one of {ORDERS}, got {plan.data_order!r}")
    Fraction(pool_fraction)
    check_family_ref(family_id, version)
    names = sorted(owners)
    n = len(names)
    if n == 0 or n > (EXACT_MAX_OWNERS if mode == "exact" else MAX_OWNERS):
        raise ConfigurationError(f"{mode} mode needs 1..{EXACT_MAX_OWNERS if mode == 'exact' else MAX_OWNERS} "
                                 f"owners (exact trains 2^n adapters), got {n}")
    check_owner_ids(names)
    target = pick_device(device)
    base = load_base(Path(base_folder), device=target)
    out = Path(families_dir) / family_id / version
    out.mkdir(parents=True, exist_ok=True)

    rng = np.random.default_rng(plan.seed)
    shuffled = list(public.captions)
    rng.shuffle(shuffled)  # the control's captions: paired with the wrong images
    public_encoded = encode_set(base, public, shuffled) if len(public) else None
    rows, pictures = coalition_rows(base, owners, names, plan.data_order)
    empty = base.encode_prompts([""]).float()[0]

    masks = list(range(1 << n)) if mode == "exact" else [0, *[1 << i for i in range(n)]]
    if public_encoded is None:
        masks.remove(0)  # no public data: v(∅) is the plain base
    adapters, components = {}, {}
    with progress_bar() if show_progress else _NoProgress() as progress:
        for mask in masks:
            if mode == "exact":
                file = out / "adapters" / f"0x{mask:x}" / LORA_FILE
            else:  # slot 0 the control, owner i slot i + 1 (mask 1 << i)
                file = out / component_file(mask.bit_length())
            if not file.is_file():
                if mask == 0:
                    data, mix = public_encoded, 0.0
                else:
                    data, mix = rows([o for i, o in enumerate(names) if mask >> i & 1]), plan.public_mix
                # compositional names by slot: a mask of 1,024 owners is 257 hex digits
                name = f"coalition_0x{mask:x}" if mode == "exact" else f"component_{mask.bit_length():05d}"
                state = train_adapter(base, data, public_encoded, empty, name, plan,
                                      progress if show_progress else None, public_mix=mix)
                if mode == "exact":
                    save_adapter(state, file.parent)
                else:
                    file.parent.mkdir(parents=True, exist_ok=True)
                    save_component(state, file)
            entry = {"file": str(file.relative_to(out)), "sha256": sha256_file(file)}
            if mode == "exact":
                adapters[hex(mask)] = entry
            else:
                components[CONTROL if mask == 0 else names[mask.bit_length() - 1]] = entry

    manifest = {
        "kind": "lora", "family_id": family_id, "version": version, "owners": names, "pool_fraction": pool_fraction,
        "mode": mode, "base": str(Path(base_folder).resolve()), "resolution": resolution, "rank": plan.rank,
        "target_modules": list(TARGET_MODULES), "adapters": adapters, "components": components,
        "data_sizes": {"_base": max(1, len(public)), **{o: len(owners[o]) for o in names}},
        "estimator": {"samples": plan.samples, "timesteps": plan.timesteps,
                      **({} if plan.snr_cut is None else {"snr_cut": plan.snr_cut})},
        "training": {"plan": asdict(plan), "fairness": plan.fairness(public_encoded is not None)},
    }
    write_manifest(out, manifest)
    if plan.proposal_draws > 0:
        manifest["estimator"]["timestep_proposal"] = measure_proposal(out, manifest, rows, names, plan, target)
        write_manifest(out, manifest)
    if clusters and n > 1:
        from royalflow.training.cluster_components import retrain_cluster_coalitions, write_cluster_components
        from royalflow.training.lora_clusters import add_clusters

        threads = torch.get_num_threads()  # loading the family for the evidence may change it
        manifest, kept = add_clusters(out, manifest, public if len(public) else None, owners, device=device)
        if mode == "compositional":  # each multi-owner cluster's own component, on its distinct rows

            def cluster_adapter(j: int, members: list[str]) -> dict[str, torch.Tensor]:
                # The thread count the owners' adapters trained with: float sums follow it, and the
                # cluster's adapter must equal a single owner's on the same rows bit for bit.
                torch.set_num_threads(threads)
                # Near-copies once (canonical order): shells holding copies train on the owner's pictures.
                data = pictures(kept[j]) if pictures is not None and kept.get(j) else rows(members)
                return train_adapter(base, data, public_encoded, empty, f"cluster_{j:05d}", plan,
                                     public_mix=plan.public_mix)

            write_cluster_components(out, manifest, cluster_adapter)
        elif pictures is not None and kept:  # exact: a cluster's coalitions, near-copies once

            def coalition_adapter(mask: int, selection: dict[str, list[int]]) -> dict[str, torch.Tensor]:
                torch.set_num_threads(threads)  # as above
                return train_adapter(base, pictures(selection), public_encoded, empty, f"coalition_0x{mask:x}", plan,
                                     public_mix=plan.public_mix)

            retrain_cluster_coalitions(out, manifest, kept, coalition_adapter)
    return out


def measure_proposal(out: Path, manifest: dict, rows: Callable[[list[str]], Encoded], names: list[str],  # type: ignore[type-arg]
                     plan: LoraPlan, device: torch.device) -> list[float]:
    """The timestep proposal of (5) in elbo.py: q(s) ~ how far the single-owner adapters' ELBO
    terms at s lie from the control's, on the owners' own images (at most PROPOSAL_MAX_OWNERS
    of them, seeded), mixed with 10% uniform."""
    from royalflow.attribution.families.latent import latent_term_differences, mixed_proposal
    from royalflow.attribution.families.lora import LoraFamily

    family = LoraFamily.load(manifest, out, device=str(device))
    rng = np.random.default_rng(plan.seed)
    picked = sorted(rng.permutation(len(names))[:PROPOSAL_MAX_OWNERS].tolist())
    data = rows([names[i] for i in picked])
    slots = [family.masks.index(0), *[family.masks.index(1 << i) for i in picked]]
    with torch.inference_mode():
        scale = latent_term_differences(family.estimator, family._batched, data.latents.cpu(), data.text.cpu(),  # noqa: SLF001
                                        slots, draws_per_step=plan.proposal_draws, seed=plan.seed)
    return mixed_proposal(scale)


def write_manifest(out: Path, manifest: dict) -> None:  # type: ignore[type-arg]
    parse_manifest(manifest, str(out))  # never write a manifest the registry would refuse
    tmp = out / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    os.replace(tmp, out / "manifest.json")


class _NoProgress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
