"""Screen and refine: every owner's component log-likelihood at a cost that does not grow with
the number of owners, and the full likelihood only where it can change a share.

An owner's likelihood is a sum over the event's K + 1 rows (``latent.row_losses``: K sampled
timesteps and the decoder row), and on the common random numbers most of the differences
between owners sit in a few rows: those where the control's own loss term is largest
(measured on a 16-owner trained catalogue: the largest row carries 29% of the variance of the
owners' gains, the top five 87%). The screen spends its passes there.

Screen (first order). Owner i's component model is the base with its LoRA delta dW_i = B_i A_i
on every adapted Linear layer; the control's is dW_0. Around the control, on the event's
``gradient_rows`` rows with the largest control loss,

    l_i ~ l_0 + <grad_W l(W_0), dW_i - dW_0>                                              (1)
    grad_W l = sum_{rows, tokens} delta^T x      per layer (delta = dl/dy of its output y, x its input)
    <G, B A> = sum_{o, r} B[o, r] (G A^T)[o, r]                                           (2)

so one forward and one backward of a few rows of the control give every owner's estimate; (2)
is one GEMM per layer over all owners' stacked factors, arithmetic that grows with n but is
tiny next to a UNet pass (D-TRAK, arXiv 2311.00500; DAS, arXiv 2410.18639).

Stage (6). The screen's top ``candidates`` owners (by log weight + first-order gain) run the
``candidate_rows`` rows with the largest control loss: their exact partial gains there. The
first-order gain of trained adapters misses the ELBO's quadratic term -||J dW||^2 (always
negative; correlation with the true gains about 0.7), the stage does not: it ranks the
candidates for refinement.

Refine, in rounds. Refining an owner runs its remaining rows: its likelihood is then exactly the
full path's. The first round refines the stage's ``min_refined`` best. They calibrate the rest
on this event: partial and first-order gains are scaled by the least-squares slope of true on
estimated gains over the refined owners (clipped to [0, 1]), and capped at the smallest refined
gain (both estimates ranked them below every refined owner); b is the largest error of the
calibrated estimate on the refined owners, never less than the family's ``bound_nats``       (5)

The mixture utility v(S) = log(sum_{j in S+0} w_j e^{l_j}) - log(sum w_j) is dominated by its
largest terms. Shares are phi_i^+ / sum_j phi_j^+, so an owner matters only through its
positive value. With the Shapley values phi at the calibrated likelihoods, owner i's value at
the top of its bound, l_i + b, is at most

    phi_i^up = phi_i + b a_i / (a_0 + a_i),  a_i = w_i e^{l_i + b}                         (4)

(d phi_i / d l_i = E[a_i / (s + a_i)] over the coalitions s it joins, s >= a_0). Further rounds
refine candidates in order of phi_i^up until what the rest could hold together,

    R = sum_{rest} max(phi_i^up, 0)                                                          (3)

is at most ``tolerance`` x sum_j max(phi_j, 0), or ``max_refined`` owners are refined, or the
event's budget of ``max_passes`` x (K + 1) UNet passes (K under a cut, elbo.py (6); a backward
counted as two) is spent.
The others keep their calibrated values and carry b in their standard errors; R goes into the
audit record. The calibration and its cap are estimates from this event's refined owners, not
proofs: benchmarks/scale.py measures how often the top owner and the shares agree with the
full path.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from royalflow.attribution.families.manifest import Screen
from royalflow.attribution.families.multilora import FactorStack


class FirstOrderScreen:
    """(2) for all slots of a host ``FactorStack`` (slot 0 the control), per event."""

    def __init__(self, stack: FactorStack, device: torch.device) -> None:
        self.slots = stack.slots
        # Per layer: A as (in, M*r) for one GEMM with the event gradients; B as (out, M, r).
        self.layers = {name: (a.permute(2, 0, 1).reshape(a.shape[2], -1).to(device, torch.float32).contiguous(),
                              b.permute(1, 0, 2).to(device, torch.float32).contiguous(), a.shape[1])
                       for name, (a, b) in stack.layers.items()}

    def inner_products(self, gradients: dict[str, torch.Tensor]) -> torch.Tensor:
        """<G_b, dW_m> for every event b and slot m: (B, M) float64 on CPU. ``gradients``:
        layer -> (B, out, in) summed over each event's rows and tokens."""
        total = None
        for name, g in gradients.items():
            a_flat, b_perm, rank = self.layers[name]
            batch, out_features, _ = g.shape
            ga = (g.reshape(batch * out_features, -1).to(a_flat.device, torch.float32) @ a_flat)  # (B*out, M*r)
            part = (ga.reshape(batch, out_features, self.slots, rank) * b_perm[None]).sum(dim=(1, 3))  # (2)
            total = part if total is None else total + part
        if total is None:
            raise ValueError("no adapted layers were captured")
        return total.to("cpu", torch.float64)


def event_gradients(captured: dict[str, list[list[torch.Tensor]]], batch: int) -> dict[str, torch.Tensor]:
    """grad_W l per event (1) from the captured [input, output gradient] of every chunk of the
    screen's forward, whose rows are item-major (each item's K+1 rows contiguous)."""
    out = {}
    for name, chunks in captured.items():
        if any(grad is None for _, grad in chunks):
            raise RuntimeError(f"layer {name}: a chunk's output gradient was not captured")
        x = torch.cat([c[0] for c in chunks]).float()
        g = torch.cat([c[1] for c in chunks]).float()
        x = x.reshape(batch, -1, x.shape[-1])  # (B, rows per item * tokens, in)
        g = g.reshape(batch, -1, g.shape[-1])  # (B, rows per item * tokens, out)
        out[name] = torch.bmm(g.transpose(1, 2), x)  # (B, out, in)
    return out


def calibrated(screened: np.ndarray, refined: dict[int, float]) -> tuple[np.ndarray, float]:
    """Owners' gains l_i - l_0 after refinement, and the screen's error bound b (5).

    The first-order gain misses the ELBO's quadratic term -||J dW||^2 (always negative), so it
    overstates large adapters. The refined owners (those the screen ranked highest) measure by
    how much on THIS event: the unrefined gains are scaled by the least-squares slope of true on
    screened gains over the refined owners (clipped to [0, 1]), and capped at the smallest
    refined gain (the screen ranked them below every refined owner). b is the largest error of
    that calibrated screen on the refined owners."""
    gains = screened.astype(np.float64).copy()
    if not refined:
        return gains, 0.0
    owners = np.fromiter(refined, dtype=np.int64)
    true = np.fromiter(refined.values(), dtype=np.float64)
    est = screened[owners]
    energy = float(est @ est)
    slope = float(np.clip(est @ true / energy, 0.0, 1.0)) if energy > 0 else 1.0
    gains = np.minimum(gains * slope, true.min())                                              # (5)
    bound = float(np.abs(est * slope - true).max())
    gains[owners] = true
    return gains, bound


def refine_more(log_weights: np.ndarray, base_ll: float, gains: np.ndarray, bound: float, done: set[int],
                eligible: set[int], room: int, settings: Screen,
                shapley_of: Callable[[np.ndarray], np.ndarray]) -> tuple[list[int], float]:
    """Owners (0-based, from ``eligible``) to refine next for one event, at most ``room`` of
    them, and R of (3) once they are, in nats."""
    n = gains.shape[0]
    # 1. Shapley values at the current likelihoods, and each unrefined owner's upper value (4).
    ll = np.concatenate([[base_ll], base_ll + gains])
    phi = shapley_of(ll)
    a_up = log_weights[1:] + base_ll + gains + bound
    headroom = 1.0 / (1.0 + np.exp(np.clip(log_weights[0] + base_ll - a_up, -700.0, 700.0)))  # a_i / (a_0 + a_i)
    phi_upper = np.maximum(phi + bound * headroom, 0.0)
    total = max(float(np.maximum(phi, 0.0).sum()), 1e-6)  # a gain near zero: refine by the budget alone
    # 2. Largest possible values first, among the eligible (the staged candidates: refining
    # them costs only their remaining rows); R of (3) is what the unrefined could still hold.
    order = [int(i) for i in np.argsort(-phi_upper, kind="stable") if int(i) not in done]
    remainder = float(phi_upper[order].sum())
    room = max(0, min(room, settings.max_refined - len(done)))
    chosen: list[int] = []
    for owner in order:
        if len(chosen) >= room or remainder <= settings.tolerance * total:
            break
        if owner in eligible:
            chosen.append(owner)
            remainder -= float(phi_upper[owner])
    return chosen, max(remainder, 0.0)


def calibrated_all(first_order: np.ndarray, partial: dict[int, float], refined: dict[int, float],
                   floor_nats: float) -> tuple[np.ndarray, float]:
    """Every owner's gain l_i - l_0 for one event after a round (5): refined owners exact, staged
    candidates from their partial gains, the rest from the first-order screen, each estimate
    calibrated on the refined owners and capped at the smallest refined gain; and the bound b."""
    gains, _ = calibrated(first_order, refined)
    staged = np.full(first_order.shape[0], np.nan)
    for owner, value in partial.items():
        staged[owner] = value
    tuned, error = calibrated(np.nan_to_num(staged), refined)
    has = ~np.isnan(staged)
    gains[has] = tuned[has]
    for owner, value in refined.items():
        gains[owner] = value
    return gains, max(floor_nats, error)
