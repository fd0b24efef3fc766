"""log p(x | c) in nats by the DDPM evidence lower bound (Ho et al. 2020, eq. 5), estimated by
Monte Carlo with common random numbers.

With paper timesteps s = 1..T (diffusers index s-1), alpha_s = 1 - beta_s and
abar_s = prod_{r<=s} alpha_r:

    -log p(x0) <= L_T + sum_{s=2}^{T} L_{s-1} + L_0                                        (1)
    L_T     = KL(q(x_T|x0) || N(0, I))
            = 1/2 sum_pixels [abar_T x0^2 + (1 - abar_T) - 1 - log(1 - abar_T)]           (2)
    L_{s-1} = KL(q(x_{s-1}|x_s, x0) || N(mu_theta, btilde_s I))
            = beta_s^2 / (2 btilde_s alpha_s (1 - abar_s)) ||eps - eps_theta(x_s, s)||^2  (3)
              with btilde_s = beta_s (1 - abar_{s-1}) / (1 - abar_s)  (reverse variance = the
              true posterior variance, so the KL has no extra variance terms)
    L_0     = -log prod_pixels int_{bin(x0)} N(x; mu_theta(x_1, 1), beta_1) dx              (4)
              (discretised Gaussian decoder over the data's quantisation bins; edge bins
              extend to +-infinity), mu_theta(x_1, 1) = (x_1 - beta_1/sqrt(1-abar_1) eps_theta) / sqrt(alpha_1)

The sum in (1) is estimated by importance sampling K timesteps s_k ~ q over {2..T}:
    v_k = -(L_T + L_0 + L_{s_k-1} / q(s_k)),                                                (5)
so v = mean_k v_k is an unbiased estimate of the bound and SE = std_k(v_k) / sqrt(K). The
proposal q(s) ~ sqrt(E[L_{s-1}^2]) (Nichol & Dhariwal 2021) is measured once per family on
public data at training time and stored in its manifest; uniform q gives (T-1) L_{s_k-1}.
Every model sees the SAME (s_k, eps_k) for an item (common random numbers), drawn from a
generator seeded by the event id, so differences between coalition models are not swamped
by sampling noise and the numbers repeat exactly.

The rate down to a noise level (issue #15, ``snr_cut``). Most of the bound's nats code detail
no one sees (Ho et al. 2020, section 4.3 and Fig. 5: progressive coding). Its terms at s >= s_c
are the expected code length, under the model, of the item down to noise level s_c:

    v_c = -(L_T + sum_{s >= s_c} L_{s-1}),  s_c = min {s >= 2 : abar_s / (1 - abar_s) <= c}   (6)

so with c = 1 it counts what the model says about the item at the scales where the noise is
as strong as the signal (SNR <= 1), and leaves out L_0 and the fine-detail terms, which are
large and noisy, and on the harnesses decide nothing about whose style an item is (README,
*The rate down to SNR 1*). (6) is estimated by (5) with q restricted to s >= s_c.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from diffusers import DDPMScheduler, UNet2DModel

MAX_ROWS_PER_FORWARD = 4096  # bound on one forward pass (memory); bigger batches are chunked
# On CPU a forward's activations should stay in cache: chunks of about 1,000 rows cost 20-25% less
# CPU per row than 4,096 or 6,336 on the 2-core host (digits UNet, 8x8, measured one batch of
# 192 events x 33 rows). Chunks are even (6,336 rows: 7 of 906), never a small remainder.
CPU_ROWS_PER_FORWARD = 1024


def even_chunk(rows: int, limit: int) -> int:
    """The chunk size that splits ``rows`` into the fewest chunks of at most ``limit`` rows, all
    of (nearly) one size: ceil(rows / ceil(rows / limit))."""
    if rows <= 0 or limit <= 0:
        raise ValueError("rows and limit must be positive")
    return -(-rows // -(-rows // limit))


@dataclass(frozen=True)
class Draws:
    """The common random numbers of a batch: timesteps and noise, shared by every model."""

    timesteps: torch.Tensor  # (B, K) int64, paper index s in 2..T
    noise: torch.Tensor  # (B, K, C, H, W)
    noise_first: torch.Tensor  # (B, C, H, W), for L_0


def first_step_at(abar: torch.Tensor, snr_cut: float) -> int:
    """s_c of (6): the first paper timestep s >= 2 whose SNR abar_s / (1 - abar_s) is at most
    ``snr_cut`` (SNR falls as s grows)."""
    if not snr_cut > 0:
        raise ValueError(f"snr_cut must be positive, got {snr_cut!r}")
    snr = abar / (1.0 - abar)
    below = torch.nonzero(snr[1:] <= snr_cut)  # index s-2 over s = 2..T
    if below.numel() == 0:
        raise ValueError(f"snr_cut {snr_cut} is below every timestep's SNR (the last is {float(snr[-1]):.3g})")
    return int(below[0, 0]) + 2


class ElboEstimator:
    def __init__(
        self, scheduler: DDPMScheduler, *, levels: int, samples: int, proposal: list[float] | None = None,
        stratified: bool = False, snr_cut: float | None = None,
    ) -> None:
        if samples < 2:
            raise ValueError("need at least 2 Monte-Carlo samples for a standard error")
        self.T = int(scheduler.config.num_train_timesteps)
        self.levels = levels
        self.samples = samples
        betas = scheduler.betas.to(torch.float64)
        abar = scheduler.alphas_cumprod.to(torch.float64)
        abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
        self.betas, self.abar = betas, abar  # index s-1
        self.alphas = 1.0 - betas
        posterior_var = betas * (1.0 - abar_prev) / (1.0 - abar)
        # (3): weight of ||eps - eps_theta||^2 for s >= 2 (index 0, s = 1, is unused).
        self.weights = torch.zeros_like(betas)
        self.weights[1:] = betas[1:] ** 2 / (2.0 * posterior_var[1:] * self.alphas[1:] * (1.0 - abar[1:]))
        # (5): proposal over s = 2..T (index s-2); uniform unless the family measured one.
        q = torch.full((self.T - 1,), 1.0 / (self.T - 1), dtype=torch.float64)
        if proposal is not None:
            q = torch.tensor(proposal, dtype=torch.float64)
            if q.shape != (self.T - 1,) or torch.any(q <= 0):
                raise ValueError(f"proposal must hold {self.T - 1} positive probabilities")
            q = q / q.sum()
        # (6): the first counted timestep; None counts every term, L_0 (4) included.
        self.snr_cut = snr_cut
        self.first_step = 2 if snr_cut is None else first_step_at(abar, snr_cut)
        self.decoder = snr_cut is None
        if snr_cut is not None:  # (q untouched without a cut: recorded attributions replay bit-for-bit)
            q = torch.where(torch.arange(2, self.T + 1) >= self.first_step, q, torch.zeros_like(q))
            q = q / q.sum()
        self.proposal = q
        # Stratified timesteps (variance reduction): the k-th of K draws is q's inverse CDF at
        # (k + u_k) / K, u_k ~ U[0, 1), instead of K independent draws. Each draw is still
        # distributed as q marginally, so (5) stays unbiased; the K draws now cover q's mass
        # evenly, which removes the between-stratum part of the variance.
        self.stratified = stratified
        self._cdf = torch.cumsum(q, 0)

    @property
    def rows_per_likelihood(self) -> int:
        """Model passes one likelihood runs: the K sampled timesteps, and s = 1 for L_0 (4)
        unless a cut (6) leaves it out."""
        return self.samples + int(self.decoder)

    def draw(self, seeds: list[int], shape: tuple[int, ...]) -> Draws:
        """Per-item generators seeded from each event: the draws of an item never depend on
        what else is in the batch."""
        steps, noise, first = [], [], []
        for seed in seeds:
            gen = torch.Generator(device="cpu").manual_seed(seed)
            if self.stratified:
                u = (torch.arange(self.samples, dtype=torch.float64)
                     + torch.rand(self.samples, generator=gen, dtype=torch.float64)) / self.samples
                index = torch.searchsorted(self._cdf, u * self._cdf[-1], right=True).clamp_max(self.T - 2)
                steps.append(index + 2)
            else:
                steps.append(torch.multinomial(self.proposal, self.samples, replacement=True, generator=gen) + 2)
            noise.append(torch.randn((self.samples, *shape), generator=gen))
            first.append(torch.randn(shape, generator=gen))
        return Draws(torch.stack(steps), torch.stack(noise), torch.stack(first))

    def log_likelihood_samples(
        self, model: UNet2DModel, x0: torch.Tensor, labels: torch.Tensor, draws: Draws, *, device: torch.device, dtype: torch.dtype
    ) -> torch.Tensor:
        """v_k per item and sample, (B, K) float64 nats, for one model (all rows batched)."""
        batch, k = draws.timesteps.shape
        pixel_dims = tuple(range(1, x0.dim()))
        abar_T = self.abar[-1]
        # (2) analytic prior term.
        x0d = x0.to(torch.float64)
        prior = 0.5 * (abar_T * x0d**2 + (1 - abar_T) - 1 - torch.log(1 - abar_T)).sum(dim=pixel_dims)

        # 1. Noised inputs for all K sampled timesteps plus s = 1, stacked into one batch.
        s = draws.timesteps.reshape(-1)  # (B*K,)
        sqrt_abar = self.abar[s - 1].sqrt().to(torch.float32).view(-1, *[1] * (x0.dim() - 1))
        sqrt_1m = (1 - self.abar[s - 1]).sqrt().to(torch.float32).view(-1, *[1] * (x0.dim() - 1))
        x0_rep = x0.repeat_interleave(k, dim=0)
        eps = draws.noise.reshape(batch * k, *x0.shape[1:])
        x_s = sqrt_abar * x0_rep + sqrt_1m * eps
        x_1 = self.abar[0].sqrt().float() * x0 + (1 - self.abar[0]).sqrt().float() * draws.noise_first
        inputs = torch.cat([x_s, x_1])
        steps = torch.cat([s - 1, torch.zeros(batch, dtype=torch.int64)])
        cond = torch.cat([labels.repeat_interleave(k), labels])

        # 2. One forward over all rows (in even chunks), on the model's device and dtype.
        predicted = []
        rows = inputs.shape[0]
        chunk = even_chunk(rows, CPU_ROWS_PER_FORWARD if device.type == "cpu" else MAX_ROWS_PER_FORWARD)
        with torch.inference_mode():
            for start in range(0, rows, chunk):
                stop = start + chunk
                out = model(
                    inputs[start:stop].to(device=device, dtype=dtype),
                    steps[start:stop].to(device),
                    class_labels=cond[start:stop].to(device),
                ).sample
                predicted.append(out.to(device="cpu", dtype=torch.float64))
        eps_hat = torch.cat(predicted)

        # 3. Sampled KL terms, (3).
        sq_err = ((eps_hat[: batch * k] - eps.to(torch.float64)) ** 2).sum(dim=pixel_dims)
        kl = (self.weights[s - 1] * sq_err).reshape(batch, k)

        # 4. Decoder term, (4): discretised Gaussian around mu_theta(x_1, 1), sigma^2 = beta_1.
        beta1, alpha1 = self.betas[0], self.alphas[0]
        mu = (x_1.to(torch.float64) - beta1 / (1 - self.abar[0]).sqrt() * eps_hat[batch * k :]) / alpha1.sqrt()
        half_bin = 1.0 / (self.levels - 1)
        normal = torch.distributions.Normal(mu, beta1.sqrt())
        upper = torch.where(x0d >= 1 - 1e-6, torch.ones_like(mu), normal.cdf(x0d + half_bin))
        lower = torch.where(x0d <= -1 + 1e-6, torch.zeros_like(mu), normal.cdf(x0d - half_bin))
        decoder = -torch.log((upper - lower).clamp_min(1e-12)).sum(dim=pixel_dims)

        # 5. v_k = -(L_T + L_0 + L_{s_k-1} / q(s_k)), in nats, (5); (6) leaves L_0 out.
        if not self.decoder:
            decoder = torch.zeros_like(decoder)
        return -(prior[:, None] + decoder[:, None] + kl / self.proposal[draws.timesteps - 2])

    def term_differences(self, models: list[UNet2DModel], x0: torch.Tensor, labels: torch.Tensor, *,
                         draws_per_step: int, seed: int) -> torch.Tensor:
        """sqrt(E[(L^m_{s-1} - L^0_{s-1})^2]) averaged over models m, for every s = 2..T, on the
        SAME draws for all models: where coalition models differ, which is what Shapley values
        measure (proposal of (5))."""
        gen = torch.Generator(device="cpu").manual_seed(seed)
        scales = []
        with torch.inference_mode():
            for s in range(2, self.T + 1):
                idx = torch.randint(0, len(x0), (draws_per_step,), generator=gen)
                eps = torch.randn((draws_per_step, *x0.shape[1:]), generator=gen)
                a = self.abar[s - 1].float()
                x_s = a.sqrt() * x0[idx] + (1 - a).sqrt() * eps
                t = torch.full((draws_per_step,), s - 1, dtype=torch.int64)
                terms = torch.stack([
                    self.weights[s - 1] * ((m(x_s, t, class_labels=labels[idx]).sample - eps) ** 2).sum(dim=(1, 2, 3)).double()
                    for m in models
                ])
                scales.append((terms[1:] - terms[0]).pow(2).mean().sqrt())
        return torch.stack(scales)
