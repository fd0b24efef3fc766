"""A tiny Stable-Diffusion-style pipeline built from configs (random initialisation), for
tests, benchmarks and demos: UNet2DConditionModel (latent 4x8x8), AutoencoderKL (32x32 RGB),
CLIPTextModel and a CLIPTokenizer whose vocabulary and merges are written here (no hub).

Its layout on disk is exactly a diffusers pipeline folder (``save_pretrained``), so everything
that reads a platform's local pipeline reads this one the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

WORDS = (
    "a an the of and with in on picture photo image drawing shape shapes small big large "
    "red green blue yellow white black orange purple gray grey dark light bright pale "
    "circle circles square squares triangle triangles stripe stripes striped dot dots dotted "
    "ring rings cross crosses line lines checker checkered texture pattern noise blob blobs "
    "style art owner public random abstract plain soft solid"
).split()
RESOLUTION = 32  # pixels; the VAE downsamples by 4 -> latent 4x8x8
# Linear betas over 100 steps (as the digits family): abar_T ~ 5e-5 and flat ELBO weights, so
# a few Monte-Carlo timesteps give a low-variance bound on CPU.
SCHEDULER = {"num_train_timesteps": 100, "beta_schedule": "linear", "beta_start": 0.001, "beta_end": 0.2,
             "prediction_type": "epsilon", "clip_sample": False, "steps_offset": 1}
# steps_offset 1 is what diffusers pipelines expect of a saved config (else a FutureWarning);
# sample_latents samples with offset 0, so all 100 training timesteps 0..99 are visited.


def write_tokenizer_files(folder: Path, words: tuple[str, ...] | list[str] = WORDS) -> None:
    """CLIP BPE files for a small closed vocabulary: every character (with and without the
    end-of-word mark) plus one merge chain per word, so each known word is one token."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab: dict[str, int] = {}

    def add(token: str) -> None:
        vocab.setdefault(token, len(vocab))

    for c in "abcdefghijklmnopqrstuvwxyz0123456789.,!?'-":
        add(c)
        add(c + "</w>")
    merges: list[str] = []
    for word in dict.fromkeys(words):
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        current = pieces[0]
        for piece in pieces[1:]:
            merge = f"{current} {piece}"
            if merge not in merges:
                merges.append(merge)
            current += piece
            add(current)
    add("<|startoftext|>")
    add("<|endoftext|>")
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")


def build_tiny_pipeline(folder: Path, *, seed: int = 0):  # type: ignore[no-untyped-def]
    """Write a random-initialised tiny pipeline to ``folder`` and return it (CPU, fp32)."""
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    folder = Path(folder)
    write_tokenizer_files(folder / "tokenizer")
    tokenizer = CLIPTokenizer(str(folder / "tokenizer" / "vocab.json"), str(folder / "tokenizer" / "merges.txt"),
                              model_max_length=16)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=RESOLUTION // 4, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32, attention_head_dim=8,
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        layers_per_block=1, norm_num_groups=8, sample_size=RESOLUTION, mid_block_add_attention=False,
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(json.loads((folder / "tokenizer" / "vocab.json").read_text())), hidden_size=32,
        intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=16,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    ))
    pipeline = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=DDPMScheduler(**SCHEDULER),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipeline.save_pretrained(folder)
    return pipeline


def pretrain_tiny_pipeline(folder: Path, pixels, captions: list[str], *, vae_steps: int = 300,  # type: ignore[no-untyped-def]
                           unet_steps: int = 300, batch: int = 16, seed: int = 0, codec_pixels=None) -> None:
    """Briefly pre-train the tiny pipeline in ``folder`` on public images (N, R, R, 3) uint8 with
    captions, the stand-in for a platform's pretrained model: the VAE as an autoencoder (so
    decoded generations look like their latents), its scaling_factor set to 1 / std of the
    latents (as Stable Diffusion's 0.18215), then the UNet on the latents. Saved in place.

    ``codec_pixels`` (default: ``pixels``) are the VAE's training images. A platform's VAE is a
    general image codec that has seen every kind of picture; it is shared by all coalitions and
    its term cancels in every Shapley difference, so tests may train it on all images while the
    UNet (what coalitions differ in) sees only the public ones."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    from royalflow.attribution.families.content import to_unit

    folder = Path(folder)
    gen = torch.Generator().manual_seed(seed)
    x_all = torch.from_numpy(to_unit(pixels if codec_pixels is None else codec_pixels))
    vae = AutoencoderKL.from_pretrained(folder, subfolder="vae", local_files_only=True)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=3e-3)
    vae.train()
    for _ in range(vae_steps):
        x = x_all[torch.randint(0, len(x_all), (batch,), generator=gen)]
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.mean).sample
        loss = torch.nn.functional.mse_loss(recon, x) + 1e-6 * posterior.kl().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    vae.eval().requires_grad_(False)
    x_all = torch.from_numpy(to_unit(pixels))
    with torch.no_grad():
        latents = torch.cat([vae.encode(x_all[i:i + 256]).latent_dist.mean for i in range(0, len(x_all), 256)])
    vae.register_to_config(scaling_factor=float(1.0 / latents.std()))
    vae.save_pretrained(folder / "vae")
    latents = latents * vae.config.scaling_factor

    tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer", local_files_only=True)
    text_encoder = CLIPTextModel.from_pretrained(folder / "text_encoder", local_files_only=True).eval()
    with torch.no_grad():
        ids = tokenizer(list(captions) + [""], padding="max_length", max_length=tokenizer.model_max_length,
                        truncation=True, return_tensors="pt").input_ids
        text_all = text_encoder(ids)[0]
    empty, text_all = text_all[-1], text_all[:-1]
    unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", local_files_only=True)
    scheduler = DDPMScheduler.from_pretrained(folder, subfolder="scheduler", local_files_only=True)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=2e-3)
    unet.train()
    for _ in range(unet_steps):
        idx = torch.randint(0, len(latents), (batch,), generator=gen)
        z, text = latents[idx], text_all[idx]
        drop = torch.rand(batch, generator=gen) < 0.15
        text = torch.where(drop[:, None, None], empty[None], text)
        noise = torch.randn(z.shape, generator=gen)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (batch,), generator=gen)
        loss = torch.nn.functional.mse_loss(unet(scheduler.add_noise(z, noise, t), t, encoder_hidden_states=text).sample, noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    unet.eval().save_pretrained(folder / "unet")


def sample_latents(family, mask: int, prompts: list[str], seed: int, *, guidance: float = 1.0,  # type: ignore[no-untyped-def]
                   init=None, strength: float = 1.0):
    """Ancestral DDPM samples of coalition ``mask``'s model (a LoraFamily), decoded to (B, R, R, 3)
    uint8 images: the "generations" of the tests and demos. With ``init`` images (B, R, R, 3)
    uint8 and ``strength`` < 1 it is image-to-image (SDEdit): the init latent is noised to
    timestep strength * T and denoised from there by the same model."""
    import numpy as np
    from royalflow.attribution.families.base import ddpm_sampler
    from royalflow.attribution.families.content import from_unit, to_unit

    base = family.base
    scheduler = ddpm_sampler(base.scheduler_config)
    scheduler.set_timesteps(scheduler.config.num_train_timesteps)
    gen = torch.Generator().manual_seed(seed)
    unet = base.unet
    channels, size = unet.config.in_channels, unet.config.sample_size
    z = torch.randn((len(prompts), channels, size, size), generator=gen)
    timesteps = scheduler.timesteps
    if init is not None:
        start = int(strength * scheduler.config.num_train_timesteps)
        timesteps = timesteps[timesteps < start]
        z0 = base.encode_images(torch.from_numpy(to_unit(np.asarray(init))))
        z = scheduler.add_noise(z0, z, torch.full((len(prompts),), int(timesteps[0]), dtype=torch.int64))
    text = family.embed(prompts)
    empty = family.embed([""] * len(prompts))
    slot = family.masks.index(mask)
    rows = len(prompts)
    for t in timesteps:
        steps = torch.full((rows,), int(t), dtype=torch.int64)
        if guidance == 1.0:
            eps = family._batched(z, steps, text, torch.full((rows,), slot)).float().cpu()  # noqa: SLF001
        else:
            both = family._batched(torch.cat([z, z]), torch.cat([steps, steps]), torch.cat([text, empty]),  # noqa: SLF001
                                   torch.full((2 * rows,), slot)).float().cpu()
            eps = both[rows:] + guidance * (both[:rows] - both[rows:])
        z = scheduler.step(eps, t, z, generator=gen).prev_sample
    return np.stack([from_unit(img.numpy()) for img in base.decode_latents(z)])


@dataclass(frozen=True)
class StyleFamily:
    """The tiny pipeline pre-trained on public images, and an exact LoRA family of style owners."""

    base: Path  # the saved diffusers pipeline folder
    source: Path  # the image folders (<owner>/ and _public/, imagefolder convention)
    family_path: Path  # <families>/<id>/<version>, manifest included


# The recipe of the LoRA tests and benchmarks (measured: see tests/training/conftest.py).
STYLE_PRETRAIN = {"vae_steps": 300, "unet_steps": 2000}
STYLE_PLAN = {"steps": 300, "batch": 8, "learning_rate": 1e-2, "samples": 16}


def build_style_family(root: Path, family_id: str = "tiny-lora", version: str = "1", *, per_owner: int = 48,
                       public: int = 192, owners: dict[str, str] | None = None, mode: str = "exact",
                       pretrain: dict | None = None, plan: dict | None = None,  # type: ignore[type-arg]
                       styles: dict | None = None, folders: Path | None = None,  # type: ignore[type-arg]
                       clusters: bool = True) -> StyleFamily:
    """Everything from nothing, on CPU: the synthetic style images (``styles.write_folders``;
    ``folders``: image folders written elsewhere instead, e.g. ``photos.write_photo_folders``),
    the tiny base (built, then pre-trained on the public images; its VAE on all images), and
    the family's adapters. ``owners`` renames/duplicates style owners: {new owner: style owner}
    (e.g. a twin with the same data, for the identical-owner check)."""
    import numpy as np

    from royalflow.training.images import read_image_folders
    from royalflow.training.lora import LoraPlan, train_lora_family
    from royalflow.training.styles import write_folders

    root = Path(root)
    source = folders if folders is not None else write_folders(root / "images", per_owner=per_owner, public=public,
                                                               owners=owners, styles=styles)
    public_set, owner_sets = read_image_folders(source, RESOLUTION)
    base = root / "base"
    if not (base / "unet" / "config.json").is_file():
        build_tiny_pipeline(base)
        every = np.concatenate([public_set.pixels, *[owner_sets[o].pixels for o in sorted(owner_sets)]])
        pretrain_tiny_pipeline(base, public_set.pixels, list(public_set.captions), codec_pixels=every,
                               **{**STYLE_PRETRAIN, **(pretrain or {})})
    path = train_lora_family(root / "families", family_id, version, base, public_set, owner_sets, mode=mode,
                             resolution=RESOLUTION, plan=LoraPlan(**{**STYLE_PLAN, **(plan or {})}), device="cpu",
                             show_progress=False, clusters=clusters)
    return StyleFamily(base, source, path)


def write_random_lora(file: Path, shapes: dict[str, tuple[int, int]], *, rank: int = 8, seed: int = 0,
                      targets: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0")) -> Path:
    """A random LoRA file in diffusers' format (the keys and metadata ``save_lora_weights``
    writes) on every Linear layer of ``shapes`` (``lorafiles.base_linear_shapes``) named by
    ``targets``: adapters for import and scale tests without training."""
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(seed)
    state = {}
    for layer, (out, inp) in sorted(shapes.items()):
        if any(layer == t or layer.endswith("." + t) for t in targets):
            state[f"unet.{layer}.lora.down.weight"] = torch.randn(rank, inp, generator=gen) / inp**0.5
            state[f"unet.{layer}.lora.up.weight"] = torch.randn(out, rank, generator=gen) * 0.01
    Path(file).parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(file), metadata={"format": "pt"})
    return Path(file)


def random_factors(unet, count: int, *, rank: int = 8, scale: float = 0.05, seed: int = 0):  # type: ignore[no-untyped-def]
    """``count`` random LoRA adapters (layer -> (A (r, in), B (out, r))) on the attention
    projections of ``unet``, entries N(0, scale^2 / in) and N(0, scale^2 / r): synthetic owners for
    cost benchmarks and tests, where what an adapter learned does not matter."""
    from royalflow.attribution.families.adapters import linear_shapes
    from royalflow.training.lora import TARGET_MODULES

    shapes = {name: shape for name, shape in linear_shapes(unet).items()
              if any(name.endswith("." + t) for t in TARGET_MODULES) and ".attn" in name}
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        out.append({name: (torch.randn((rank, fan_in), generator=gen) * scale / fan_in**0.5,
                           torch.randn((fan_out, rank), generator=gen) * scale / rank**0.5)
                    for name, (fan_out, fan_in) in sorted(shapes.items())})
    return out
