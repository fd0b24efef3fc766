"""The categorical family: a cheap, exact, documented utility (walking skeleton, benchmarks).

Each owner i licensed examples of some classes; ``class_counts[i][c]`` says how many. The
component model of owner i is the Laplace-smoothed class distribution
    p_i(c) = (count_i(c) + alpha) / (N_i + alpha * K)
and the base model p_0 is the same over a public corpus. As in the compositional families of
the brief, the model of a coalition S is the data-size-weighted mixture
    p_S(c) = (N_0 p_0(c) + sum_{i in S} N_i p_i(c)) / (N_0 + sum_{i in S} N_i)
and the utility of S for an item generated with class label c is v(S) = log p_S(c), in nats.
It is a true log-likelihood (of the conditioning label), so owners who hold the item's class
earn positive Shapley value and the others do not. It needs no GPU and runs in microseconds,
which makes it the model of choice where the model itself must not be what is measured.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from royalflow.attribution.diffusion.images import content_bytes
from royalflow.attribution.family import Attribution, Prepared, seed_for
from royalflow.contracts import GenerationEvent
from royalflow.errors import ContractError
from royalflow.shapley import exact_shapley, sample_shapley

SMOOTHING_ALPHA = 0.5
EXACT_MAX_OWNERS = 14  # 2^14 coalitions; above that, permutation sampling
SAMPLING_TARGET_STD_ERROR = 1e-3  # nats
SAMPLING_MAX_PERMUTATIONS = 2000


class CategoricalFamily:
    kind = "categorical"

    def __init__(
        self,
        family_id: str,
        version: str,
        owners: Sequence[str],
        class_counts: dict[str, dict[int, int]],
        base_counts: dict[int, int],
        pool_fraction: Fraction,
        num_classes: int,
    ) -> None:
        self.family_id = family_id
        self.version = version
        self.owners = tuple(owners)
        self.pool_fraction = pool_fraction
        self.num_classes = num_classes
        # 1. Component likelihood table p[k, c], k = 0 (base) .. n, and data sizes N_k.
        counts = np.zeros((len(self.owners) + 1, num_classes), dtype=np.float64)
        for c, count in base_counts.items():
            counts[0, int(c)] = count
        for k, owner in enumerate(self.owners, start=1):
            for c, count in class_counts.get(owner, {}).items():
                counts[k, int(c)] = count
        self.data_sizes = counts.sum(axis=1)
        self.probs = (counts + SMOOTHING_ALPHA) / (self.data_sizes[:, None] + SMOOTHING_ALPHA * num_classes)
        # 2. Exact attributions by class label: with exact Shapley values the utility, and so the
        #    whole attribution, depends on the label alone (the seed only drives sampling). Each
        #    label is computed once (about 50 us of numpy per generation otherwise). Two threads
        #    racing on a label store the same values; every caller gets its own copies.
        self._exact: dict[int, Attribution] = {}

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any], path: Path | None = None) -> "CategoricalFamily":
        return cls(
            family_id=manifest["family_id"],
            version=str(manifest["version"]),
            owners=manifest["owners"],
            class_counts={o: {int(c): int(n) for c, n in cc.items()} for o, cc in manifest["class_counts"].items()},
            base_counts={int(c): int(n) for c, n in manifest["base_counts"].items()},
            pool_fraction=Fraction(manifest["pool_fraction"]),
            num_classes=int(manifest.get("num_classes", 10)),
        )

    # -- Family protocol ---------------------------------------------------------------
    def prepare(self, event: GenerationEvent) -> Prepared:
        label = event.conditioning.class_label
        if label is None or not (0 <= label < self.num_classes):
            raise ContractError(
                "bad_content", f"family {self.family_id} needs conditioning.class_label in [0, {self.num_classes})"
            )
        # The utility needs only the label, but the content must still be there and hash right:
        # inline, or by reference from under the content root (never any readable path).
        content_bytes(event.content)
        return Prepared(event=event, item=label, seed=seed_for(event.event_id))

    def attribute(self, batch: Sequence[Prepared]) -> list[Attribution]:
        return [self._attribute_one(int(p.item), p.seed) for p in batch]

    # -- internals ---------------------------------------------------------------------
    def _utility(self, label: int):
        weights = self.data_sizes[1:] * self.probs[1:, label]  # N_i p_i(c)
        base = self.data_sizes[0] * self.probs[0, label]  # N_0 p_0(c)

        def v(coalitions: np.ndarray) -> np.ndarray:
            # v(S) = log( (N_0 p_0 + sum_S N_i p_i) / (N_0 + sum_S N_i) )
            member = coalitions.astype(np.float64)
            return np.log((base + member @ weights) / (self.data_sizes[0] + member @ self.data_sizes[1:]))

        return v

    def _attribute_one(self, label: int, seed: int) -> Attribution:
        if len(self.owners) <= EXACT_MAX_OWNERS:
            cached = self._exact.get(label)
            if cached is None:
                cached = self._exact[label] = self._compute(label, seed)
            return replace(cached, shapley_values=cached.shapley_values.copy(), std_errors=cached.std_errors.copy(),
                           coalition_utilities=dict(cached.coalition_utilities))
        return self._compute(label, seed)

    def _compute(self, label: int, seed: int) -> Attribution:
        n = len(self.owners)
        v = self._utility(label)
        if n <= EXACT_MAX_OWNERS:
            masks = np.arange(2**n, dtype=np.int64)
            members = ((masks[:, None] >> np.arange(n)) & 1).astype(bool)
            utilities = v(members)
            result = exact_shapley(n, utilities)
            coalition_utilities = {hex(int(m)): float(u) for m, u in zip(masks, utilities)}
            evaluations = 2**n
        else:
            result = sample_shapley(
                n, v, seed=seed, target_std_error=SAMPLING_TARGET_STD_ERROR, max_permutations=SAMPLING_MAX_PERMUTATIONS
            )
            coalition_utilities = {"0x0": float(v(np.zeros((1, n), bool))[0]), "full": float(v(np.ones((1, n), bool))[0])}
            evaluations = int(result.n_evaluations)
        return Attribution(
            owners=self.owners,
            shapley_values=np.asarray(result.values, dtype=np.float64),
            std_errors=np.asarray(result.std_errors, dtype=np.float64),
            method=result.method,
            mode="categorical",
            coalition_utilities=coalition_utilities,
            utility_std_errors={},
            model_evaluations=evaluations,
        )


def demo_manifest(family_id: str = "digits-categorical", version: str = "1") -> dict[str, Any]:
    """Four owners holding different digit classes, a public base corpus, 30% royalty pool."""
    holdings = {"owner-a": (0, 1, 2), "owner-b": (3, 4, 5), "owner-c": (6, 7), "owner-d": (8, 9)}
    return {
        "kind": "categorical",
        "family_id": family_id,
        "version": version,
        "owners": list(holdings),
        "pool_fraction": "3/10",
        "num_classes": 10,
        "class_counts": {o: {str(c): 150 for c in cs} for o, cs in holdings.items()},
        "base_counts": {str(c): 20 for c in range(10)},
    }


def write_manifest(families_dir: Path, manifest: dict[str, Any]) -> Path:
    """Write a categorical family into the on-disk registry layout <dir>/<id>/<version>/manifest.json."""
    target = Path(families_dir) / manifest["family_id"] / str(manifest["version"])
    target.mkdir(parents=True, exist_ok=True)
    (target / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return target
