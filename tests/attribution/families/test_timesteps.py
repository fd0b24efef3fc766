"""The LoRA kind's timestep settings (issue #15): the manifest's ``timesteps`` rule,
``timestep_proposal`` and ``snr_cut`` reach the estimator, and the proposal measured from adapters that differ
from the control only at some timesteps puts its mass there. Random tiny pipeline, no training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from royalflow.attribution.families.base import load_base
from royalflow.attribution.families.content import png
from royalflow.attribution.families.latent import latent_term_differences, mixed_proposal
from royalflow.attribution.families.lora import LoraFamily
from royalflow.attribution.families.manifest import LoraManifest
from royalflow.errors import ConfigurationError
from royalflow.producer.events import generation_event
from royalflow.training.tiny import build_tiny_pipeline, random_factors


def family(folder: Path, estimator: dict) -> LoraFamily:  # type: ignore[type-arg]
    if not (folder / "unet").is_dir():
        build_tiny_pipeline(folder)
    base = load_base(folder, device=torch.device("cpu"))
    owners = ["owner-a", "owner-b"]
    manifest = LoraManifest.model_validate({
        "kind": "lora", "family_id": "steps", "version": "1", "owners": owners, "pool_fraction": "3/10",
        "mode": "compositional", "base": str(folder), "resolution": 32, "rank": 8, "target_modules": ["to_q"],
        "components": {key: {"file": f"components/{i:05d}.safetensors", "sha256": "0" * 64}
                       for i, key in enumerate(["_control", *owners])},
        "data_sizes": {"_base": 10, "owner-a": 10, "owner-b": 10}, "estimator": estimator,
    })
    return LoraFamily(manifest, base, torch.device("cpu"), random_factors(base.unet, 3, scale=0.5))


def test_manifest_timestep_settings_reach_the_estimator(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    old = family(tmp_path / "base", {"samples": 8})
    assert not old.estimator.stratified  # manifests before issue #15 keep their draws
    q = [float(i + 1) for i in range(old.estimator.T - 1)]
    new = family(tmp_path / "base", {"samples": 8, "timesteps": "stratified", "timestep_proposal": q})
    assert new.estimator.stratified
    assert torch.allclose(new.estimator.proposal, torch.tensor(q, dtype=torch.float64) / sum(q))
    with pytest.raises(ValueError):
        LoraManifest.model_validate({**new.manifest.model_dump(), "estimator": {"samples": 8, "timesteps": "sobol"}})
    assert old.estimator.snr_cut is None and old.estimator.decoder  # before the cut: the full bound
    cut = family(tmp_path / "base", {"samples": 8, "timesteps": "stratified", "snr_cut": 1.0})
    assert cut.estimator.snr_cut == 1.0 and not cut.estimator.decoder and cut.estimator.first_step > 2
    for bad in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            LoraManifest.model_validate({**new.manifest.model_dump(), "estimator": {"samples": 8, "snr_cut": bad}})
    with pytest.raises(ConfigurationError, match="snr_cut"):  # below the base schedule's last SNR
        family(tmp_path / "base", {"samples": 8, "snr_cut": 1e-9})
    prepared = [cut.prepare(generation_event(event_id=f"cut-{i}", family_id="steps", family_version="1",
                                             revenue_amount=1000, currency="USD", content=png(np.zeros((32, 32, 3), np.uint8)),
                                             prompt="a photo")) for i in range(2)]
    attribution = cut.attribute(prepared)[0]
    assert attribution.model_evaluations == cut.slot_count * 8  # K rows per slot: no decoder row under the cut


def test_the_measured_proposal_follows_where_adapters_differ(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    fam = family(tmp_path / "base", {"samples": 8})
    gen = torch.Generator().manual_seed(0)
    z0, text = torch.randn((6, 4, 8, 8), generator=gen), fam.embed(["a photo"] * 6)

    def forward(latents, steps, text, slots):  # type: ignore[no-untyped-def]
        # Adapters differ from the control only at t >= 50: the proposal must go there.
        out = fam._batched(latents, steps, text, slots)  # noqa: SLF001
        control = fam._batched(latents, steps, text, torch.zeros_like(slots))  # noqa: SLF001
        return torch.where((steps >= 50).view(-1, 1, 1, 1), out, control)

    scale = latent_term_differences(fam.estimator, forward, z0, text, [0, 1, 2], draws_per_step=2, seed=0)
    assert scale.shape == (fam.estimator.T - 1,) and torch.all(scale[:48] == 0) and torch.all(scale[49:] > 0)
    q = mixed_proposal(scale)
    assert sum(q) == pytest.approx(1.0) and min(q) >= 0.1 / len(q) * 0.99 and sum(q[49:]) > 0.9
    assert mixed_proposal(torch.zeros(5)) == pytest.approx([0.2] * 5)  # nothing differs: uniform
