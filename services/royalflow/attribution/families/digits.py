"""The digits family (kind ``diffusion`` in manifests; the embedded demo): a trained diffusion
family served to the agent, all its models resident on one device.

exact mode:          one UNet per coalition S (2^n), v(S) = ELBO of model S.
compositional mode:  base + one component per owner (n+1 UNets); with data sizes w_j,
    v(S) = log( (w_0 p_0(x) + sum_{i in S} w_i p_i(x)) / (w_0 + sum_{i in S} w_i) )       (1)
computed from the n+1 component log-likelihoods by royalflow.shapley.mixture (the one
definition of (1)): exact Shapley values up to 14 players, its deterministic quadrature above.

Players are the manifest's clusters of owners (quotient game, royalflow.shapley.quotient):
Shapley values over clusters, split within a cluster by data size. Without clusters every
owner is its own cluster. Mask 0 is the family's control (the fair v(∅), see
royalflow.training.digits).
Events without a class label are attributed from content alone, by the manifest's
``content_only`` rule (CONTENT_RULES): the null class, the class mixture, or (families
trained since demo v3) every coalition on the grand model's class posterior (_posterior).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from math import factorial
from pathlib import Path
from typing import Any, get_args

import numpy as np
import torch
from safetensors.torch import load_file

from royalflow.attribution.diffusion.elbo import ElboEstimator
from royalflow.attribution.diffusion.images import decode_content, levels_to_unit
from royalflow.attribution.diffusion.unet import (
    CPU_THREADS, build_scheduler, build_unet, inference_dtype, limit_cpu_threads, pick_device, place,
)
from royalflow.attribution.families.manifest import ContentRule
from royalflow.attribution.family import Attribution, Prepared, seed_for
from royalflow.contracts import GenerationEvent
from royalflow.errors import AttributionError, ConfigurationError, ContractError
from royalflow.shapley import ShapleyResult, batch_means_std_errors, exact_shapley, mixture_shapley
from royalflow.shapley.quotient import membership, quotient_masks, split_matrix

EXACT_SHAPLEY_MAX_OWNERS = 14  # compositional families above this use the mixture quadrature
MAX_CPU_THREADS = 64  # as Settings.attribution_cpu_threads


def weight_file(mask: int) -> str:
    return f"coalition-0x{mask:x}.safetensors"


def shapley_matrix(n: int) -> np.ndarray:
    """A (n, 2^n) with phi = A @ v: A[i, S+i] = w(|S|), A[i, S] = -w(|S|) for S without i."""
    masks = np.arange(1 << n)
    sizes = np.array([bin(m).count("1") for m in masks])
    weights = np.array([factorial(s) * factorial(n - s - 1) / factorial(n) for s in range(n)])
    matrix = np.zeros((n, 1 << n))
    for i in range(n):
        without = masks[(masks >> i) & 1 == 0]
        matrix[i, without | (1 << i)] += weights[sizes[without]]
        matrix[i, without] -= weights[sizes[without]]
    return matrix


CONTENT_RULES: tuple[str, ...] = get_args(ContentRule)  # the manifest's "content_only" values


def _mixture(per_class: torch.Tensor) -> torch.Tensor:
    """(masks, C, K) per-class samples -> (masks, K) samples of v = log (1/C) sum_c exp(mean_k v_kc).
    The log-sum-exp is taken over the class MEANS (over per-sample values it would chase each
    sample's noisiest class: measured flatter shares); the samples are its first-order
    expansion v + sum_c softmax_c (v_kc - mean_c), whose mean is v exactly and whose spread
    gives the delta-method standard error."""
    means = per_class.mean(dim=2)
    value = torch.logsumexp(means, dim=1) - np.log(per_class.shape[1])
    weights = torch.softmax(means, dim=1)
    return value[:, None] + (weights[:, :, None] * (per_class - means[:, :, None])).sum(dim=1)


def _posterior(per_class: torch.Tensor, grand: torch.Tensor) -> torch.Tensor:
    """(masks, C, K) per-class samples -> (masks, K) samples of v = sum_c pi_c log p_S(x | c),
    with pi = softmax_c(grand) the class posterior of the grand model (uniform prior).

    First read what the content shows, then value every coalition on it: pi is one weighting
    for all coalitions, so v is a convex combination of the C labelled games and each owner's
    Shapley value is sum_c pi_c phi_i(c) (every axiom, the quotient game included, holds per
    class). No log-sum-exp per coalition chases a coalition's noisiest class. 100 generations
    per draw, three draws: the class holder tops 91-94% exact (mean share 0.81-0.88) and 73-74%
    compositional (0.67-0.69), against 84-91% (0.68-0.74) and 69-74% (0.61-0.66) for
    ``class_mixture`` on the same items (README, *Content only by the class posterior*)."""
    pi = torch.softmax(grand.to(torch.float64), dim=0)
    return (pi[None, :, None] * per_class).sum(dim=1)


class DiffusionFamily:
    kind = "diffusion"

    def __init__(self, manifest: dict[str, Any], models: dict[int, torch.nn.Module], device: torch.device,
                 cpu_threads: int = 1) -> None:
        self.manifest = manifest
        self.family_id = manifest["family_id"]
        self.version = str(manifest["version"])
        self.owners = tuple(manifest["owners"])
        self.pool_fraction = Fraction(manifest["pool_fraction"])
        self.mode = manifest["mode"]
        self.size = int(manifest["unet"]["sample_size"])
        self.levels = int(manifest["levels"])
        self.num_classes = int(manifest["unet"]["num_class_embeds"])
        self.models = models  # mask -> UNet, resident on ``device``
        self.device = device
        self.dtype = inference_dtype(device)
        limit_cpu_threads(device)
        # On CPU, the coalition models of a batch run side by side on ``cpu_threads`` threads, each
        # model on one thread with one intra-op thread (2 threads: 2.2x the events/s of one, the
        # same numbers bit for bit). On a GPU its kernels are the parallelism: one thread.
        threads = min(max(1, cpu_threads), MAX_CPU_THREADS) if device.type == "cpu" else 1
        # OpenMP's thread count is per thread: each new thread sets its own to one, or every op on
        # it would start a team of one thread per core (4 busy threads on 2 cores, spin-waiting).
        self._threads = ThreadPoolExecutor(threads, thread_name_prefix="coalitions", initializer=torch.set_num_threads,
                                           initargs=(CPU_THREADS,)) if threads > 1 else None
        self.estimator = ElboEstimator(
            build_scheduler(manifest["scheduler"]), levels=self.levels, samples=int(manifest["estimator"]["samples"]),
            proposal=manifest["estimator"].get("timestep_proposal"),
            stratified=manifest["estimator"].get("timesteps") == "stratified",
        )
        sizes = manifest["data_sizes"]
        self.log_weights = np.log(np.array([sizes["_base"], *[sizes[o] for o in self.owners]], dtype=np.float64))
        self.null_class = manifest.get("null_class")  # None: a pre-v2 family, labels required
        # Content-only items (no label): "null" scores p_S(x | null); "class_mixture" scores
        # log (1/C) sum_c p_S(x | c) over the C classes; "class_posterior" sum_c pi_c log p_S(x | c),
        # pi the grand model's class posterior (_posterior). Both cost C times the evaluations.
        self.content_rule = manifest.get("content_only", "null")
        if self.content_rule not in CONTENT_RULES:
            raise ConfigurationError(f"family {self.family_id}: unknown content_only rule {self.content_rule!r}")
        self.clusters = tuple(tuple(c) for c in manifest.get("clusters") or [[o] for o in self.owners])
        self.members = membership(self.owners, self.clusters)
        self.cluster_indices = [np.flatnonzero(row).tolist() for row in self.members]
        self.split = split_matrix(self.members, np.exp(self.log_weights[1:]))
        if manifest.get("cluster_data_sizes"):  # mixture weights: a cluster's duplicates count once
            distinct = np.array(manifest["cluster_data_sizes"], dtype=np.float64)
            raw = self.members @ np.exp(self.log_weights[1:])
            self.log_weights[1:] += np.log(distinct / raw) @ self.members
        self.quotient = quotient_masks(self.members)
        rule = (manifest.get("training") or {}).get("fairness")
        self.fairness = None if rule is None else {  # floats stay floats in the audit contract
            "control": str(rule["control"]), "null_dropout": float(rule["null_dropout"]),
            "public_mix": float(rule["public_mix"]), "start": str(rule["start"])}
        self._matrix = shapley_matrix(len(self.clusters)) if self.mode == "exact" else None

    @classmethod
    def load(cls, manifest: dict[str, Any], path: Path, *, device: str = "auto", cpu_threads: int = 1) -> "DiffusionFamily":
        target = pick_device(device)
        dtype = inference_dtype(target)
        models: dict[int, torch.nn.Module] = {}
        for key, digest in manifest["weights"].items():
            mask = int(key, 16)
            file = path / weight_file(mask)
            if hashlib.sha256(file.read_bytes()).hexdigest() != digest:
                raise ConfigurationError(f"{file} does not match its manifest checksum")
            model = build_unet(manifest["unet"])
            model.load_state_dict(load_file(str(file)))
            # Placement is explicit: every model of the family lives on ``target`` in ``dtype``.
            models[mask] = place(model, target, dtype)
        return cls(manifest, models, target, cpu_threads)

    # -- Family protocol ---------------------------------------------------------------
    def prepare(self, event: GenerationEvent) -> Prepared:
        label = event.conditioning.class_label
        content_only = label is None and self.null_class is not None
        if content_only:
            label = int(self.null_class)  # p_S(x | null) models the coalition's data
        if label is None or not 0 <= label < self.num_classes:
            raise ContractError("bad_content", f"conditioning.class_label must be in [0, {self.num_classes})")
        image = decode_content(event.content, size=self.size, levels=self.levels)
        return Prepared(event=event, item=(image, label, content_only), seed=seed_for(event.event_id))

    def attribute(self, batch: Sequence[Prepared]) -> list[Attribution]:
        if not batch:
            return []
        # 1. Rows: one per labelled item; a content-only item under a class rule gets one row per
        #    class c (same draws), combined below by the rule (_content).
        classes = self.null_class if self.content_rule != "null" else 0  # every other rule is a class rule
        rows = [[b] * (classes if len(p.item) > 2 and p.item[2] and classes else 1) for b, p in enumerate(batch)]
        index = [b for r in rows for b in r]
        x0 = torch.from_numpy(np.stack([levels_to_unit(batch[b].item[0], self.levels) for b in index]))[:, None]
        labels = torch.tensor([c if len(r) > 1 else batch[b].item[1] for r in rows for c, b in enumerate(r)], dtype=torch.int64)
        draws = self.estimator.draw([p.seed for p in batch], tuple(x0.shape[1:]))
        pick = torch.tensor(index, dtype=torch.int64)
        draws = type(draws)(draws.timesteps[pick], draws.noise[pick], draws.noise_first[pick])
        # 2. Every model on the same draws (common random numbers): samples[m] is (rows, K).
        #    Each model is evaluated by one thread at a time (inference only: nothing is written).
        masks = sorted(self.models)

        def evaluate(mask: int) -> torch.Tensor:
            return self.estimator.log_likelihood_samples(self.models[mask], x0, labels, draws,
                                                         device=self.device, dtype=self.dtype)

        samples = torch.stack(list(self._threads.map(evaluate, masks)) if self._threads else [evaluate(m) for m in masks])
        # 3. Per item (masks, K): its row, or its class rows combined by the content rule (_content).
        starts = np.cumsum([0, *[len(r) for r in rows]])
        per_item = [samples[:, a, :] if z - a == 1 else self._content(masks, samples[:, a:z, :])
                    for a, z in zip(starts[:-1], starts[1:])]
        evaluations = [len(masks) * (self.estimator.samples + 1) * len(r) for r in rows]
        if self.mode == "exact":
            return [self._exact(masks, per_item[b].numpy(), evaluations[b]) for b in range(len(batch))]
        return [self._compositional(masks, per_item[b].numpy(), evaluations[b]) for b in range(len(batch))]

    # -- internals ---------------------------------------------------------------------
    def _content(self, masks: list[int], per_class: torch.Tensor) -> torch.Tensor:
        """A content-only item's (masks, K) samples from its (masks, C, K) per-class rows."""
        if self.content_rule == "class_mixture":
            return _mixture(per_class)
        means = per_class.mean(dim=2).to(torch.float64)  # (masks, C)
        if self.mode == "exact":  # the grand coalition's model: every owner's data
            every = (1 << len(self.owners)) - 1
            if every not in masks:
                raise AttributionError(f"exact family {self.family_id} lacks its grand coalition's model {hex(every)}")
            grand = means[masks.index(every)]
        else:  # the owners' mixture: log sum_j w_j p_j(x | c) over every owner's component. Not
            # the control's: trained on random labels, it reads no class, and it is often the likeliest
            # component, so its flat per-class noise would pick the class.
            order = [masks.index(1 << i) for i in range(len(self.owners))]
            grand = torch.logsumexp(torch.from_numpy(self.log_weights[1:])[:, None] + means[order], dim=0)
        return _posterior(per_class, grand)

    def _exact(self, masks: list[int], per_sample: np.ndarray, evaluations: int) -> Attribution:
        missing = set(self.quotient.tolist()) - set(masks)
        if missing:
            raise AttributionError(f"exact family {self.family_id} lacks coalition models {sorted(map(hex, missing))}")
        # Quotient game: rows of the cluster coalitions; phi_k = S A v_k per Monte-Carlo sample k.
        rows = per_sample[[masks.index(int(m)) for m in self.quotient]]  # (2^clusters, K)
        phi_samples = self.split @ (self._matrix @ rows)  # (n, K)
        k = per_sample.shape[1]
        utilities = per_sample.mean(axis=1)
        utility_se = per_sample.std(axis=1, ddof=1) / np.sqrt(k)
        result = exact_shapley(len(self.clusters), rows.mean(axis=1))
        return Attribution(
            owners=self.owners,
            shapley_values=self.split @ result.values,
            std_errors=phi_samples.std(axis=1, ddof=1) / np.sqrt(k),
            method="exact",
            mode="exact",
            coalition_utilities={hex(m): float(u) for m, u in zip(masks, utilities)},
            utility_std_errors={hex(m): float(s) for m, s in zip(masks, utility_se)},
            model_evaluations=evaluations,
            clusters=self.clusters,
            fairness=self.fairness,
        )

    def _shapley(self, component_ll: np.ndarray) -> ShapleyResult:
        """Shapley values of the clusters: the quotient of the mixture (1) over the clusters,
        exact up to 14, royalflow.shapley.mixture's quadrature above."""
        return mixture_shapley(self.log_weights, component_ll, clusters=self.cluster_indices,
                               exact_max_players=EXACT_SHAPLEY_MAX_OWNERS)

    def _compositional(self, masks: list[int], per_sample: np.ndarray, evaluations: int) -> Attribution:
        n = len(self.owners)
        expected = [0, *[1 << i for i in range(n)]]
        if masks != sorted(expected):
            raise AttributionError(f"compositional family {self.family_id} needs base + one component per owner")
        order = [masks.index(m) for m in expected]  # rows: base, owner 0, owner 1, ...
        component = per_sample[order]  # (n+1, K)
        k = component.shape[1]
        means = component.mean(axis=1)
        result = self._shapley(means)
        mc_se = batch_means_std_errors(self._shapley, component)  # nonlinear utility
        total_se = self.split @ np.sqrt(mc_se**2 + result.std_errors**2)
        names = ["component:_base", *[f"component:{o}" for o in self.owners]]
        se = component.std(axis=1, ddof=1) / np.sqrt(k)
        return Attribution(
            owners=self.owners,
            shapley_values=self.split @ result.values,
            std_errors=total_se,
            method=result.method,
            mode="compositional",
            coalition_utilities=dict(zip(names, map(float, means))),
            utility_std_errors=dict(zip(names, map(float, se))),
            model_evaluations=evaluations,
            clusters=self.clusters,
            fairness=self.fairness,
        )
