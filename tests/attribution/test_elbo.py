"""The DDPM evidence lower bound: correct per-timestep weights and constants (checked against
models whose answer is known in closed form), unbiased importance sampling, common random numbers."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from royalflow.attribution.diffusion.elbo import ElboEstimator
from royalflow.attribution.diffusion.unet import DEFAULT_SCHEDULER, build_scheduler

LEVELS = 17
CPU = torch.device("cpu")


class PointMassModel(torch.nn.Module):
    """The optimal noise predictor when the data is one image c (plus a constant error ``offset``):
    eps_theta(x_s, s) = (x_s - sqrt(abar_s) c) / sqrt(1 - abar_s) + offset."""

    def __init__(self, c: torch.Tensor, abar: torch.Tensor, offset: float = 0.0) -> None:
        super().__init__()
        self.c, self.abar, self.offset = c, abar.to(torch.float32), offset

    def forward(self, x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor) -> SimpleNamespace:
        a = self.abar[t].view(-1, 1, 1, 1)
        return SimpleNamespace(sample=(x - a.sqrt() * self.c) / (1 - a).sqrt() + self.offset)


@pytest.fixture
def estimator() -> ElboEstimator:
    return ElboEstimator(build_scheduler(DEFAULT_SCHEDULER), levels=LEVELS, samples=8)


def image(seed: int = 0) -> torch.Tensor:
    levels = np.random.default_rng(seed).integers(0, LEVELS, (1, 1, 8, 8))
    return torch.from_numpy(levels / (LEVELS - 1) * 2 - 1).float()


def analytic_bound(est: ElboEstimator, c: torch.Tensor, offset: float) -> float:
    """log p lower bound of a point-mass model, summed over ALL timesteps in closed form: with
    eps_theta - eps = offset everywhere, L_{s-1} = w_s * D * offset^2 and mu_theta(x_1) = c - shift."""
    x0 = c.double().flatten()
    d = x0.numel()
    abar_T = est.abar[-1]
    prior = 0.5 * float((abar_T * x0**2 + (1 - abar_T) - 1 - torch.log(1 - abar_T)).sum())
    kl = float(est.weights[1:].sum()) * d * offset**2
    shift = float(est.betas[0] / (1 - est.abar[0]).sqrt() / est.alphas[0].sqrt()) * offset
    sigma = float(est.betas[0].sqrt())
    half = 1 / (LEVELS - 1)
    normal = torch.distributions.Normal(x0 - shift, sigma)
    upper = torch.where(x0 >= 1 - 1e-6, 1.0, normal.cdf(x0 + half))
    lower = torch.where(x0 <= -1 + 1e-6, 0.0, normal.cdf(x0 - half))
    return -(prior + kl - float(torch.log(upper - lower).sum()))


def test_kl_weights_follow_ho_et_al(estimator: ElboEstimator) -> None:
    # beta_s^2 / (2 btilde_s alpha_s (1 - abar_s)) simplifies to beta_s / (2 alpha_s (1 - abar_{s-1})).
    s = torch.arange(1, estimator.T)  # index of paper timesteps 2..T
    expected = estimator.betas[s] / (2 * estimator.alphas[s] * (1 - estimator.abar[s - 1]))
    torch.testing.assert_close(estimator.weights[1:], expected)
    assert estimator.weights[0] == 0


def test_perfect_model_meets_the_closed_form_bound(estimator: ElboEstimator) -> None:
    c = image()
    model = PointMassModel(c, estimator.abar)
    draws = estimator.draw([1, 2], tuple(c.shape[1:]))
    v = estimator.log_likelihood_samples(model, torch.cat([c, c]), torch.tensor([0, 0]), draws, device=CPU,
                                         dtype=torch.float32)
    expected = analytic_bound(estimator, c, 0.0)
    # A bound on log p = 0 (the data is that one image), close to it, identical for every sample.
    assert expected < 0
    np.testing.assert_allclose(v.numpy(), expected, atol=1e-3)


@pytest.mark.parametrize("proposal", ["uniform", "skewed"])
def test_importance_sampled_estimate_is_unbiased(proposal: str) -> None:
    q = None if proposal == "uniform" else list(np.linspace(1.0, 5.0, DEFAULT_SCHEDULER["num_train_timesteps"] - 1))
    est = ElboEstimator(build_scheduler(DEFAULT_SCHEDULER), levels=LEVELS, samples=256, proposal=q)
    c, offset = image(1), 0.05
    model = PointMassModel(c, est.abar, offset=offset)
    draws = est.draw([7], tuple(c.shape[1:]))
    v = est.log_likelihood_samples(model, c, torch.tensor([0]), draws, device=CPU, dtype=torch.float32)[0].numpy()
    mean, se = v.mean(), v.std(ddof=1) / np.sqrt(len(v))
    expected = analytic_bound(est, c, offset)
    assert abs(mean - expected) < 4 * se + 1e-3, (mean, se, expected)
    assert expected < analytic_bound(est, c, 0.0)  # a worse denoiser has a lower likelihood


def test_common_random_numbers_do_not_depend_on_the_batch(estimator: ElboEstimator) -> None:
    alone = estimator.draw([42], (1, 8, 8))
    together = estimator.draw([5, 42, 9], (1, 8, 8))
    assert torch.equal(alone.timesteps[0], together.timesteps[1])
    assert torch.equal(alone.noise[0], together.noise[1])
    assert torch.equal(alone.noise_first[0], together.noise_first[1])
    assert alone.timesteps.min() >= 2 and alone.timesteps.max() <= estimator.T


def test_estimator_rejects_bad_settings() -> None:
    scheduler = build_scheduler(DEFAULT_SCHEDULER)
    with pytest.raises(ValueError):
        ElboEstimator(scheduler, levels=LEVELS, samples=1)
    with pytest.raises(ValueError):
        ElboEstimator(scheduler, levels=LEVELS, samples=4, proposal=[1.0, 2.0])


@pytest.mark.parametrize("proposal", ["uniform", "linear"])
def test_stratified_timesteps_cover_the_proposal_and_stay_unbiased(proposal: str) -> None:
    t = DEFAULT_SCHEDULER["num_train_timesteps"]
    q = None if proposal == "uniform" else list(np.linspace(1.0, 5.0, t - 1))
    est = ElboEstimator(build_scheduler(DEFAULT_SCHEDULER), levels=LEVELS, samples=16, proposal=q, stratified=True)
    steps = est.draw([3, 4], (1, 8, 8)).timesteps
    cdf = torch.cumsum(est.proposal, 0)
    for row in steps:  # the k-th draw lies in the k-th 1/K of q's mass
        assert torch.all(torch.diff(row) >= 0) and row.min() >= 2 and row.max() <= est.T
        mass_below = torch.cat([torch.zeros(1, dtype=torch.float64), cdf])[row - 2]
        assert torch.all(mass_below <= (torch.arange(16) + 1) / 16 + 1e-9)
        assert torch.all(cdf[row - 2] >= torch.arange(16) / 16 - 1e-9)
    # Unbiased: the mean over many events of the stratified estimate meets the closed form.
    c, offset = image(1), 0.05
    model = PointMassModel(c, est.abar, offset=offset)
    draws = est.draw(list(range(32)), tuple(c.shape[1:]))
    v = est.log_likelihood_samples(model, c.repeat(32, 1, 1, 1), torch.zeros(32, dtype=torch.int64), draws,
                                   device=CPU, dtype=torch.float32).mean(dim=1).numpy()
    expected = analytic_bound(est, c, offset)
    assert abs(v.mean() - expected) < 4 * v.std(ddof=1) / np.sqrt(len(v)) + 1e-3, (v.mean(), expected)


def truncated_bound(est: ElboEstimator, c: torch.Tensor, offset: float) -> float:
    """(6) of a point-mass model in closed form: L_T and the KL terms at s >= s_c only."""
    x0 = c.double().flatten()
    abar_T = est.abar[-1]
    prior = 0.5 * float((abar_T * x0**2 + (1 - abar_T) - 1 - torch.log(1 - abar_T)).sum())
    return -(prior + float(est.weights[est.first_step - 1:].sum()) * x0.numel() * offset**2)


def test_the_snr_cut_is_the_first_timestep_at_or_below_it() -> None:
    from royalflow.attribution.diffusion.elbo import first_step_at

    est = ElboEstimator(build_scheduler(DEFAULT_SCHEDULER), levels=LEVELS, samples=8, snr_cut=1.0)
    snr = est.abar / (1 - est.abar)
    s = est.first_step
    assert snr[s - 1] <= 1.0 < snr[s - 2] and 2 < s < est.T
    assert first_step_at(est.abar, float(snr[0]) * 2) == 2  # a cut above every SNR keeps every step
    for bad in (0.0, -1.0, float(snr[-1]) / 2):
        with pytest.raises(ValueError):
            first_step_at(est.abar, bad)
    with pytest.raises(ValueError):
        ElboEstimator(build_scheduler(DEFAULT_SCHEDULER), levels=LEVELS, samples=8, snr_cut=0.0)


@pytest.mark.parametrize("stratified", [False, True])
def test_a_cut_draws_only_counted_timesteps_and_is_unbiased_for_its_bound(stratified: bool) -> None:
    est = ElboEstimator(build_scheduler(DEFAULT_SCHEDULER), levels=LEVELS, samples=64, snr_cut=1.0,
                        stratified=stratified)
    assert not est.decoder and abs(float(est.proposal.sum()) - 1.0) < 1e-12
    assert torch.all(est.proposal[: est.first_step - 2] == 0)
    c, offset = image(1), 0.05
    model = PointMassModel(c, est.abar, offset=offset)
    draws = est.draw(list(range(16)), tuple(c.shape[1:]))
    assert draws.timesteps.min() >= est.first_step and draws.timesteps.max() <= est.T
    v = est.log_likelihood_samples(model, c.repeat(16, 1, 1, 1), torch.zeros(16, dtype=torch.int64), draws,
                                   device=CPU, dtype=torch.float32).mean(dim=1).numpy()
    expected = truncated_bound(est, c, offset)
    assert abs(v.mean() - expected) < 4 * v.std(ddof=1) / np.sqrt(len(v)) + 1e-3, (v.mean(), expected)
    # Fewer nats are counted than by the full bound: the fine-detail terms and L_0 are left out.
    assert expected > analytic_bound(est, c, offset)


def test_without_a_cut_the_estimator_is_the_one_before() -> None:
    # Manifests without snr_cut replay bit-for-bit: the same proposal and the same draws.
    scheduler = build_scheduler(DEFAULT_SCHEDULER)
    est = ElboEstimator(scheduler, levels=LEVELS, samples=8)
    assert est.decoder and est.first_step == 2
    assert torch.equal(est.proposal, torch.full((est.T - 1,), 1.0 / (est.T - 1), dtype=torch.float64))


def test_rows_are_split_into_the_fewest_even_chunks() -> None:
    from royalflow.attribution.diffusion.elbo import even_chunk

    assert even_chunk(6336, 1024) == 906  # 7 chunks: 6 x 906 + 900, not 6 x 1024 + 192
    assert even_chunk(1056, 1024) == 528
    assert even_chunk(1024, 1024) == 1024 and even_chunk(33, 1024) == 33 and even_chunk(1, 1) == 1
    for rows in range(1, 3000, 37):
        chunk = even_chunk(rows, 1024)
        count = -(-rows // chunk)
        assert chunk <= 1024 and count == -(-rows // 1024)  # the fewest chunks the limit allows
    with pytest.raises(ValueError):
        even_chunk(0, 1024)
