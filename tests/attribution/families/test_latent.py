"""latent.py: a pair's likelihood computed in parts (row subsets, per-pair rows) is the same as
computed at once, to the last bit; the screen relies on it to refine only the missing rows."""

from __future__ import annotations

import torch
from diffusers import DDPMScheduler

from royalflow.attribution.diffusion.elbo import ElboEstimator
from royalflow.attribution.families.latent import pair_log_likelihood_samples, row_losses, samples_from

K = 6


def toy_forward(latents: torch.Tensor, steps: torch.Tensor, text: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
    # A deterministic stand-in for the UNet: depends on every input, so a wrong gather shows.
    return latents * 0.3 + torch.sin(steps.float() / 100)[:, None, None, None] \
        + 0.05 * slots.float()[:, None, None, None] + text.mean(dim=(1, 2))[:, None, None, None]


def setup() -> tuple[ElboEstimator, torch.Tensor, torch.Tensor, object]:
    estimator = ElboEstimator(DDPMScheduler(num_train_timesteps=1000), levels=256, samples=K)
    generator = torch.Generator().manual_seed(0)
    z0 = torch.randn(3, 4, 4, 4, generator=generator)
    text = torch.randn(3, 2, 8, generator=generator)
    return estimator, z0, text, estimator.draw([1, 2, 3], (4, 4, 4))


def test_rows_in_parts_equal_rows_at_once() -> None:
    estimator, z0, text, draws = setup()
    slots, items = torch.tensor([0, 1, 2, 0, 1]), torch.tensor([0, 0, 1, 2, 2])
    every = row_losses(estimator, toy_forward, z0, text, draws, slots, items, torch.arange(K + 1))
    some = row_losses(estimator, toy_forward, z0, text, draws, slots, items, torch.tensor([K, 2, 0]))
    assert torch.equal(some, every[:, [K, 2, 0]])
    per_pair = torch.tensor([[K, 1], [3, 0], [2, K], [5, 4], [0, 1]])
    mixed = row_losses(estimator, toy_forward, z0, text, draws, slots, items, per_pair)
    assert torch.equal(mixed, every.gather(1, per_pair))


def test_samples_from_rows_are_the_pair_likelihood_samples() -> None:
    estimator, z0, text, draws = setup()
    slots, items = torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2])
    every = row_losses(estimator, toy_forward, z0, text, draws, slots, items, torch.arange(K + 1))
    assert torch.equal(samples_from(estimator, z0, items, every),
                       pair_log_likelihood_samples(estimator, toy_forward, z0, text, draws, slots, items))


def test_a_cut_runs_no_decoder_row_and_counts_only_the_sampled_terms() -> None:
    # elbo.py (6): with snr_cut the pair's K sampled rows are run, not the decoder row, and
    # v_k = -(prior + row k); the screen's K + 1 rows give the same samples (its decoder row ignored).
    estimator = ElboEstimator(DDPMScheduler(num_train_timesteps=1000), levels=256, samples=K, snr_cut=1.0)
    _, z0, text, _ = setup()
    draws = estimator.draw([1, 2, 3], (4, 4, 4))
    assert draws.timesteps.min() >= estimator.first_step
    slots, items = torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2])
    rows_run = []

    def counting(latents, steps, text_, slots_):  # type: ignore[no-untyped-def]
        rows_run.append(len(latents))
        return toy_forward(latents, steps, text_, slots_)

    v = pair_log_likelihood_samples(estimator, counting, z0, text, draws, slots, items)
    assert sum(rows_run) == 3 * K
    every = row_losses(estimator, toy_forward, z0, text, draws, slots, items, torch.arange(K + 1))
    assert torch.equal(samples_from(estimator, z0, items, every), v)
    prior = samples_from(estimator, z0, items, torch.zeros_like(every))
    assert torch.equal(v, prior - every[:, :K])
