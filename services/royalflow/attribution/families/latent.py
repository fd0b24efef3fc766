"""v(S) for latent text-to-image families: the ELBO of the image's VAE latent under coalition
S's UNet, in nats, with the estimator of ``attribution/diffusion/elbo.py`` (read its docstring
for equations (1)-(5)).

    z0   = scaling_factor * (mean of q(z | x) - shift)      the posterior MEAN, no sampling noise
    v(S) = ELBO of z0 under UNet_S( . | text embedding of the prompt)

Reused from ``ElboEstimator`` unchanged: the common random numbers (``draw``: per-event seeded
timesteps and noise, the same for every coalition), the per-timestep KL weights of (3), the
timestep proposal of (5) and its importance weights, and the prior term (2). Two things differ
from pixels, and only these:
  * the forward is conditioned on ``encoder_hidden_states`` (the prompt's embedding) and runs
    ALL adapters in one batch (``multilora.AdapterBank``), rows adapter-major;
  * the decoder term L_0 (4) is a continuous Gaussian density, -log N(z0; mu_theta(z_1, 1),
    beta_1 I), because latents are not quantised. v is then a bound on the log-DENSITY of z0;
    the VAE's own term log p(x | z0) is the same for every coalition (one shared VAE), so it
    cancels in every difference v(S u {i}) - v(S) and is left out.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from royalflow.attribution.diffusion.elbo import Draws, ElboEstimator

MAX_ROWS_PER_FORWARD = 4096  # bound on one forward (memory); chunks hold whole adapter blocks

# forward(latents (R,C,H,W), steps (R,), text (R,L,D), adapter slot (R,)) -> eps_hat (R,C,H,W)
Forward = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def latent_log_likelihood_samples(
    estimator: ElboEstimator, forward: Forward, z0: torch.Tensor, text: torch.Tensor, draws: Draws, adapters: int,
    *, max_rows: int = MAX_ROWS_PER_FORWARD,
) -> torch.Tensor:
    """v_k per adapter, item and sample: (M, B, K) float64 nats, all adapters on the same draws."""
    batch, k = draws.timesteps.shape
    dims = tuple(range(1, z0.dim()))
    view = (-1, *[1] * (z0.dim() - 1))
    z0d = z0.to(torch.float64)
    abar_T = estimator.abar[-1]
    prior = 0.5 * (abar_T * z0d**2 + (1 - abar_T) - 1 - torch.log(1 - abar_T)).sum(dim=dims)  # (2)

    # Noised latents for the K sampled timesteps plus s = 1, per item: (B*(K+1), C, H, W).
    s = draws.timesteps.reshape(-1)
    eps = draws.noise.reshape(batch * k, *z0.shape[1:])
    z_s = estimator.abar[s - 1].sqrt().float().view(view) * z0.repeat_interleave(k, 0) \
        + (1 - estimator.abar[s - 1]).sqrt().float().view(view) * eps
    z_1 = estimator.abar[0].sqrt().float() * z0 + (1 - estimator.abar[0]).sqrt().float() * draws.noise_first
    per_item = torch.cat([z_s, z_1])
    steps = torch.cat([s - 1, torch.zeros(batch, dtype=torch.int64)])
    item_of_row = torch.cat([torch.arange(batch).repeat_interleave(k), torch.arange(batch)])
    rows = per_item.shape[0]

    # Every adapter on the same rows (common random numbers), adapter-major, whole blocks per chunk.
    per_chunk = max(1, max_rows // rows)
    outputs = []
    for first in range(0, adapters, per_chunk):
        count = min(per_chunk, adapters - first)
        slots = torch.arange(first, first + count).repeat_interleave(rows)
        out = forward(per_item.repeat(count, 1, 1, 1), steps.repeat(count), text[item_of_row].repeat(count, 1, 1), slots)
        outputs.append(out.to(device="cpu", dtype=torch.float64).reshape(count, rows, *z0.shape[1:]))
    eps_hat = torch.cat(outputs)  # (M, rows, C, H, W)

    # (3) sampled KL terms and (5) importance weights, as ElboEstimator.
    sq_err = ((eps_hat[:, : batch * k] - eps.to(torch.float64)) ** 2).sum(dim=tuple(range(2, eps_hat.dim())))
    kl = (estimator.weights[s - 1] * sq_err).reshape(adapters, batch, k)

    # (4) continuous Gaussian decoder around mu_theta(z_1, 1), variance beta_1.
    beta1, alpha1 = estimator.betas[0], estimator.alphas[0]
    mu = (z_1.to(torch.float64) - beta1 / (1 - estimator.abar[0]).sqrt() * eps_hat[:, batch * k :]) / alpha1.sqrt()
    decoder = 0.5 * ((z0d - mu) ** 2 / beta1 + math.log(2 * math.pi) + torch.log(beta1)).sum(dim=tuple(range(2, mu.dim())))

    return -(prior[None, :, None] + decoder[:, :, None] + kl / estimator.proposal[draws.timesteps - 2])
