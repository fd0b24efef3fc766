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

MAX_ROWS_PER_FORWARD = 4096  # bound on one forward (memory); chunks hold whole (adapter, item) pairs

# forward(latents (R,C,H,W), steps (R,), text (R,L,D), adapter slot (R,)) -> eps_hat (R,C,H,W)
Forward = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def latent_log_likelihood_samples(
    estimator: ElboEstimator, forward: Forward, z0: torch.Tensor, text: torch.Tensor, draws: Draws, adapters: int,
    *, max_rows: int = MAX_ROWS_PER_FORWARD,
) -> torch.Tensor:
    """v_k per adapter, item and sample: (M, B, K) float64 nats, all adapters on the same draws."""
    batch, k = draws.timesteps.shape
    slots = torch.arange(adapters).repeat_interleave(batch)  # adapter-major: the bank's no-gather path
    items = torch.arange(batch).repeat(adapters)
    return pair_log_likelihood_samples(estimator, forward, z0, text, draws, slots, items,
                                       max_rows=max_rows).reshape(adapters, batch, k)


def pair_log_likelihood_samples(
    estimator: ElboEstimator, forward: Forward, z0: torch.Tensor, text: torch.Tensor, draws: Draws,
    slots: torch.Tensor, items: torch.Tensor, *, max_rows: int = MAX_ROWS_PER_FORWARD,
) -> torch.Tensor:
    """v_k for every (adapter slot, item) pair: (P, K) float64 nats. Each pair runs its item's
    K + 1 rows (the K sampled timesteps and s = 1; K under a cut (6)) on the item's common random numbers, so
    pairs of one item under different adapters differ only by the adapter. Differentiable: the
    screen (``screen.py``) runs it with autograd on; the family otherwise under inference mode."""
    rows = torch.arange(estimator.rows_per_likelihood)  # (6) has no decoder term: its row is not run
    terms = row_losses(estimator, forward, z0, text, draws, slots, items, rows, max_rows=max_rows)
    return samples_from(estimator, z0, items, terms)


def prior_terms(estimator: ElboEstimator, z0: torch.Tensor) -> torch.Tensor:
    """(2) per item: (B,) float64, the same under every adapter."""
    z0d = z0.to(torch.float64)
    abar_T = estimator.abar[-1]
    return 0.5 * (abar_T * z0d**2 + (1 - abar_T) - 1 - torch.log(1 - abar_T)).sum(dim=tuple(range(1, z0.dim())))


def samples_from(estimator: ElboEstimator, z0: torch.Tensor, items: torch.Tensor, terms: torch.Tensor) -> torch.Tensor:
    """v_k (P, K) from a pair's row losses (``row_losses``): the K sampled rows, then the decoder
    row, which counts only in the full bound (``estimator.decoder``; (6) leaves it out)."""
    k = estimator.samples
    decoder = terms[:, k:k + 1] if estimator.decoder else torch.zeros_like(terms[:, :1])
    return -(prior_terms(estimator, z0)[items, None] + decoder + terms[:, :k])


def row_losses(
    estimator: ElboEstimator, forward: Forward, z0: torch.Tensor, text: torch.Tensor, draws: Draws,
    slots: torch.Tensor, items: torch.Tensor, rows: torch.Tensor, *, max_rows: int = MAX_ROWS_PER_FORWARD,
) -> torch.Tensor:
    """The loss terms of the listed rows of every (slot, item) pair: (P, J) float64. ``rows``:
    (J,) for every pair, or (P, J) per pair. Row j < K is sample j's importance-weighted KL term
    (3)/(5), w_s ||eps - eps_hat||^2 / q(s); row K is the decoder term (4) at s = 1. Then
    v_k = -(prior + row K + row k), so a pair's rows can be computed in parts: the screen
    evaluates a few rows of many owners, then the rest of a few (``screen.py``)."""
    batch, k = draws.timesteps.shape
    dims = tuple(range(1, z0.dim()))
    rows = rows.to(torch.int64)
    rows = rows.expand(slots.numel(), -1) if rows.dim() == 1 else rows
    width = rows.shape[1]

    # 1. Noised latents per item: its K sampled timesteps, then s = 1: (B, K+1, C, H, W).
    s = draws.timesteps  # (B, K), paper index 2..T
    eps = draws.noise  # (B, K, C, H, W)
    a = estimator.abar[s - 1].float()
    z_s = a.sqrt().view(batch, k, *[1] * (z0.dim() - 1)) * z0[:, None] \
        + (1 - a).sqrt().view(batch, k, *[1] * (z0.dim() - 1)) * eps
    z_1 = estimator.abar[0].sqrt().float() * z0 + (1 - estimator.abar[0]).sqrt().float() * draws.noise_first
    rows_of = torch.cat([z_s, z_1[:, None]], dim=1)
    steps_of = torch.cat([s - 1, torch.zeros((batch, 1), dtype=torch.int64)], dim=1)

    # 2. The pairs' rows through the forward, whole pairs per chunk (bounded rows per forward).
    per_chunk = max(1, max_rows // width)
    outputs = []
    for first in range(0, slots.numel(), per_chunk):
        pair_slots, pair_items = slots[first:first + per_chunk], items[first:first + per_chunk]
        pair_rows = rows[first:first + per_chunk]
        count = pair_slots.numel()
        out = forward(rows_of[pair_items[:, None], pair_rows].reshape(count * width, *z0.shape[1:]),
                      steps_of[pair_items[:, None], pair_rows].reshape(-1),
                      text[pair_items].repeat_interleave(width, 0), pair_slots.repeat_interleave(width))
        outputs.append(out.to(device="cpu", dtype=torch.float64).reshape(count, width, *z0.shape[1:]))
    eps_hat = torch.cat(outputs)  # (P, J, C, H, W)
    inner = tuple(range(2, eps_hat.dim()))

    # 3. (3) sampled KL terms with (5) importance weights, as ElboEstimator (rows < K).
    sampled = rows < k
    j = rows.clamp(max=k - 1)
    steps = s[items[:, None], j]  # (P, J)
    sq_err = ((eps_hat - eps[items[:, None], j].to(torch.float64)) ** 2).sum(dim=inner)
    kl = estimator.weights[steps - 1] * sq_err / estimator.proposal[steps - 2]

    # 4. (4) continuous Gaussian decoder around mu_theta(z_1, 1), variance beta_1 (row K).
    beta1, alpha1 = estimator.betas[0], estimator.alphas[0]
    z1 = z_1[items].to(torch.float64)[:, None]
    mu = (z1 - beta1 / (1 - estimator.abar[0]).sqrt() * eps_hat) / alpha1.sqrt()
    decoder = 0.5 * ((z0.to(torch.float64)[items][:, None] - mu) ** 2 / beta1
                     + math.log(2 * math.pi) + torch.log(beta1)).sum(dim=inner)
    return torch.where(sampled, kl, decoder)


def latent_term_differences(estimator: ElboEstimator, forward: Forward, z0: torch.Tensor, text: torch.Tensor,
                            slots: list[int], *, draws_per_step: int, seed: int,
                            max_rows: int = MAX_ROWS_PER_FORWARD) -> torch.Tensor:
    """sqrt(E[(L^m_{s-1} - L^c_{s-1})^2]) averaged over the adapters m of ``slots[1:]`` against
    the control c = ``slots[0]``, for every s = 2..T, on the SAME draws for all adapters: the
    timesteps where coalitions disagree, which is what Shapley values measure (the latent
    counterpart of ``ElboEstimator.term_differences``; a proposal for (5)). ``z0`` (N, C, H, W)
    scaled latents with their caption embeddings ``text`` (N, L, D), e.g. the owners' data."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    steps = torch.arange(2, estimator.T + 1).repeat_interleave(draws_per_step)  # (R,) paper index s
    idx = torch.randint(0, len(z0), (steps.numel(),), generator=gen)
    eps = torch.randn((steps.numel(), *z0.shape[1:]), generator=gen)
    a = estimator.abar[steps - 1].float().view(-1, *[1] * (z0.dim() - 1))
    z_s = a.sqrt() * z0[idx] + (1 - a).sqrt() * eps
    terms = []
    for slot in slots:  # (3): the KL term of each adapter at each drawn (s, eps)
        out = torch.cat([forward(z_s[i:i + max_rows], steps[i:i + max_rows] - 1, text[idx[i:i + max_rows]],
                                 torch.full((min(max_rows, steps.numel() - i),), slot)).to("cpu", torch.float64)
                         for i in range(0, steps.numel(), max_rows)])
        terms.append(estimator.weights[steps - 1] * ((out - eps.to(torch.float64)) ** 2).sum(dim=tuple(range(1, z0.dim()))))
    stacked = torch.stack(terms).reshape(len(slots), estimator.T - 1, draws_per_step)
    return (stacked[1:] - stacked[:1]).pow(2).mean(dim=(0, 2)).sqrt()


def mixed_proposal(scale: torch.Tensor, uniform: float = 0.1) -> list[float]:
    """q(s) ~ scale, mixed with ``uniform`` of the uniform law so that every timestep keeps
    probability (the estimator stays unbiased whatever q is), as the digits kind's proposal."""
    q = scale / scale.sum() if float(scale.sum()) > 0 else torch.full_like(scale, 1.0 / len(scale))
    q = (1 - uniform) * q + uniform / len(q)
    return [float(v) for v in q / q.sum()]
