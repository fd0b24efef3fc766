"""A platform's pretrained text-to-image pipeline, read from a local diffusers folder only.

Nothing is downloaded: every component loads with ``from_pretrained(<folder>/<component>,
local_files_only=True)``, and the files each component needs are checked first, so a missing
file is an error that names it (instead of a hub lookup or a stack trace).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from royalflow.errors import ConfigurationError

# component -> alternatives: each inner tuple needs at least ONE of its files present.
REQUIRED_FILES: dict[str, tuple[tuple[str, ...], ...]] = {
    "": (("model_index.json",),),
    "unet": (("config.json",), ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")),
    "vae": (("config.json",), ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")),
    "text_encoder": (("config.json",), ("model.safetensors", "pytorch_model.bin")),
    "tokenizer": (("vocab.json", "tokenizer.json"), ("merges.txt", "tokenizer.json")),
    "scheduler": (("scheduler_config.json",),),
}


def check_base_folder(folder: Path) -> None:
    """Raise ConfigurationError naming the first missing file of a diffusers pipeline folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigurationError(f"base pipeline folder {folder} does not exist")
    for component, groups in REQUIRED_FILES.items():
        for alternatives in groups:
            if not any((folder / component / name).is_file() for name in alternatives):
                shown = " or ".join(str(folder / component / name) for name in alternatives)
                raise ConfigurationError(f"base pipeline is missing {shown}")


@dataclass
class BasePipeline:
    """The resident base: UNet (LoRA adapters attach to it), VAE, text encoder, tokenizer."""

    folder: Path
    unet: Any  # diffusers.UNet2DConditionModel
    vae: Any  # diffusers.AutoencoderKL
    text_encoder: Any  # transformers.CLIPTextModel
    tokenizer: Any  # transformers.CLIPTokenizer
    scheduler_config: dict[str, Any]

    @property
    def latent_scale(self) -> float:
        return float(self.vae.config.scaling_factor)

    @property
    def latent_shift(self) -> float:
        return float(getattr(self.vae.config, "shift_factor", None) or 0.0)

    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        """Text embeddings (B, L, D), padded to the tokenizer's max length as diffusers' pipelines
        do; longer prompts are truncated there too, so the embedding is the one the platform's
        pipeline conditioned on."""
        device = next(self.text_encoder.parameters()).device
        tokens = self.tokenizer(prompts, padding="max_length", max_length=self.tokenizer.model_max_length,
                                truncation=True, return_tensors="pt")
        with torch.inference_mode():
            return self.text_encoder(tokens.input_ids.to(device))[0]

    def encode_images(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, R, R) in [-1, 1] -> latents: posterior MEAN of q(z|x), shifted and
        scaled by the VAE's factors (the latent the UNet was trained on, without sampling noise)."""
        param = next(self.vae.parameters())
        with torch.inference_mode():
            mean = self.vae.encode(x.to(param.device, param.dtype)).latent_dist.mean
        return ((mean.float() - self.latent_shift) * self.latent_scale).cpu()

    def decode_latents(self, z: torch.Tensor) -> torch.Tensor:
        """The inverse of ``encode_images``: latents (B, C, h, w) -> images (B, 3, R, R) in [-1, 1], on CPU."""
        param = next(self.vae.parameters())
        with torch.inference_mode():
            x = self.vae.decode((z / self.latent_scale + self.latent_shift).to(param.device, param.dtype)).sample
        return x.float().clamp(-1, 1).cpu()


def load_base(folder: Path, *, device: torch.device, dtype: torch.dtype = torch.float32) -> BasePipeline:
    """Load the pipeline's components from ``folder`` (local files only), frozen, in eval mode."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    folder = Path(folder)
    check_base_folder(folder)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # belt and braces: never reach a hub from here
    try:
        unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", local_files_only=True)
        vae = AutoencoderKL.from_pretrained(folder, subfolder="vae", local_files_only=True)
        text_encoder = CLIPTextModel.from_pretrained(folder / "text_encoder", local_files_only=True)
        tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer", local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"base pipeline {folder} does not load: {exc}") from None
    import json

    scheduler_config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    for module in (unet, vae, text_encoder):
        module.requires_grad_(False)
        torch.nn.Module.to(module, device=device, dtype=dtype).eval()
    return BasePipeline(folder, unet, vae, text_encoder, tokenizer, scheduler_config)


def ddpm_scheduler(config: dict[str, Any]):  # type: ignore[no-untyped-def]
    """The base's noise schedule as a DDPMScheduler (the ELBO needs betas, not a sampler)."""
    from diffusers import DDPMScheduler

    keys = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas", "prediction_type")
    return DDPMScheduler(**{k: config[k] for k in keys if config.get(k) is not None})


def ddpm_sampler(config: dict[str, Any]):  # type: ignore[no-untyped-def]
    """The base's own DDPM sampler (clipping, variance type, spacing as its config says; steps
    counted from 0), not ``ddpm_scheduler``'s schedule alone: a latent space is not clipped to
    [-1, 1] unless the base says so."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(**{**{k: v for k, v in config.items() if not k.startswith("_")}, "steps_offset": 0})
