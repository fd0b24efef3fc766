"""The valuation layer's quotient game (clusters as players, split by data size) for LoRA
families, in exact and compositional mode, on hand-made likelihood samples: no model."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from royalflow.attribution.families.valuation import (
    cluster_log_weights, compositional_attribution, exact_attribution, players_of,
)
from royalflow.errors import AttributionError
from royalflow.shapley import exact_shapley, mixture_shapley


def family(owners: list[str], mode: str, sizes: list[int], clusters: list[list[str]] | None,
           distinct: list[int] | None = None, base: int = 100) -> SimpleNamespace:
    n = len(owners)
    players = players_of(owners, clusters, sizes)
    log_w = cluster_log_weights(np.log(np.array([base, *sizes], dtype=float)), players, distinct)
    masks = list(range(1 << n)) if mode == "exact" else [0, *[1 << i for i in range(n)]]
    return SimpleNamespace(owners=tuple(owners), masks=masks, players=players, log_weights=log_w, fairness=None,
                           family_id="f")


def test_players_partition_the_owners_and_split_by_size() -> None:
    p = players_of(["a", "b", "c"], [["a", "c"], ["b"]], [1, 5, 3])
    assert not p.trivial and p.indices == [[0, 2], [1]] and p.recorded
    assert p.split(np.array([8.0, 2.0])) == pytest.approx([2.0, 2.0, 6.0])
    assert players_of(["a", "b"], None, [1, 1]).trivial and not players_of(["a", "b"], None, [1, 1]).recorded
    for bad in ([["a"], ["a", "b"]], [["a"]], [["a", "x"], ["b"]], [[], ["a", "b"]]):
        with pytest.raises(AttributionError):
            players_of(["a", "b"], bad, [1, 1])
    with pytest.raises(AttributionError, match="positive"):
        players_of(["a", "b"], None, [1, 0])


def test_exact_quotient_values_the_union_coalitions_and_splits_the_cluster() -> None:
    # Owners s1, s2 (shells of one source) and b. v depends only on whether the source's data
    # are present (either shell, or both) and on b: the honest game over {source, b}.
    rng = np.random.default_rng(0)
    k = 8
    honest = {0: 0.0, 1: 3.0, 2: 1.0, 3: 3.5}  # honest masks: bit 0 source, bit 1 b
    v = np.zeros((8, k))
    for mask in range(8):
        source = bool(mask & 0b011)
        v[mask] = honest[int(source) | (2 if mask & 0b100 else 0)] + rng.normal(0, 0.01, k)
    fam = family(["s1", "s2", "b"], "exact", [10, 30, 40], [["s1", "s2"], ["b"]])
    a = exact_attribution(fam, v, 8)
    want = exact_shapley(2, np.array([honest[m] for m in range(4)])).values
    assert a.shapley_values[0] + a.shapley_values[1] == pytest.approx(want[0], abs=0.02)
    assert a.shapley_values[1] == pytest.approx(3 * a.shapley_values[0])  # data sizes 10 : 30
    assert a.shapley_values[2] == pytest.approx(want[1], abs=0.02)
    assert a.clusters == (("s1", "s2"), ("b",))
    plain = exact_attribution(family(["s1", "s2", "b"], "exact", [10, 30, 40], None), v, 8)
    assert plain.clusters is None and plain.shapley_values[:2].sum() > want[0] - 0.02  # plain Shapley: the shells' sum


def test_compositional_duplicated_shells_weigh_their_distinct_images_once() -> None:
    # Two shells with bit-identical components (the same images): clustered with their distinct
    # count, they are valued exactly as the honest owner.
    comp = np.array([[0.0, 0.1], [4.0, 4.1], [1.0, 1.2]])  # base, red, blue; (3, K)
    honest = compositional_attribution(family(["red", "blue"], "compositional", [48, 48], None), comp, 3)
    shells = np.stack([comp[0], comp[1], comp[1], comp[2]])
    fam = family(["red-1", "red-2", "blue"], "compositional", [48, 48, 48], [["red-1", "red-2"], ["blue"]],
                 distinct=[48, 48])
    attacked = compositional_attribution(fam, shells, 4)
    assert attacked.shapley_values[:2].sum() == pytest.approx(honest.shapley_values[0])
    assert attacked.shapley_values[2] == pytest.approx(honest.shapley_values[1])
    assert attacked.clusters == (("red-1", "red-2"), ("blue",))
    undeduplicated = compositional_attribution(
        family(["red-1", "red-2", "blue"], "compositional", [48, 48, 48], [["red-1", "red-2"], ["blue"]]), shells, 4)
    assert undeduplicated.shapley_values[:2].sum() > honest.shapley_values[0]  # twice the weight: more


def test_compositional_quotient_matches_mixture_shapley_over_clusters() -> None:
    comp = np.random.default_rng(2).normal(0, 1, (5, 6))
    fam = family(["a", "b", "c", "d"], "compositional", [5, 10, 20, 40], [["a", "d"], ["b"], ["c"]])
    got = compositional_attribution(fam, comp, 5)
    want = mixture_shapley(fam.log_weights, comp.mean(axis=1), clusters=[[0, 3], [1], [2]]).values
    assert got.shapley_values[[0, 3]] == pytest.approx(want[0] * np.array([5, 40]) / 45)
    assert got.shapley_values[1:3] == pytest.approx(want[1:])
    # The screen's bound moves the clusters' values too (its standard errors stay finite).
    screened = compositional_attribution(fam, comp, 5, screened=[0], screen={"bound_nats": 0.5})
    assert np.all(np.isfinite(screened.std_errors)) and screened.std_errors.sum() >= got.std_errors.sum()


def test_cluster_log_weights_checks_its_counts() -> None:
    p = players_of(["a", "b"], [["a", "b"]], [2, 2])
    assert np.exp(cluster_log_weights(np.log([1.0, 2.0, 2.0]), p, [2])) == pytest.approx([1.0, 1.0, 1.0])
    with pytest.raises(AttributionError):
        cluster_log_weights(np.log([1.0, 2.0, 2.0]), p, [2, 3])
