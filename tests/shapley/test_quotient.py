"""The quotient game: clusters as players, split within a cluster by data size."""

from __future__ import annotations

import numpy as np
import pytest

from royalflow.errors import AttributionError
from royalflow.shapley import exact_shapley
from royalflow.shapley.quotient import membership, quotient_coalitions, quotient_masks, split_matrix


GENERIC_GAIN = 10.0


def data_game(holdings: list[float], shared_source: list[int]) -> np.ndarray:
    """v(S) = GENERIC_GAIN [S nonempty] + sum over sources of sqrt(data of that source held by
    S): a gain every coalition enjoys (extra optimisation) plus a concave data value. Plain
    Shapley splits the generic gain per player, so shells collect more of it."""
    n = len(holdings)
    v = np.zeros(1 << n)
    for mask in range(1 << n):
        per_source: dict[int, float] = {}
        for i in range(n):
            if mask >> i & 1:
                per_source[shared_source[i]] = per_source.get(shared_source[i], 0.0) + holdings[i]
        v[mask] = GENERIC_GAIN * (mask != 0) + sum(np.sqrt(x) for x in per_source.values())
    return v


def quotient_values(owners: list[str], clusters: list[list[str]], v: np.ndarray, sizes: list[float]) -> np.ndarray:
    members = membership(owners, clusters)
    return split_matrix(members, np.array(sizes)) @ exact_shapley(len(clusters), v[quotient_masks(members)]).values


def test_singleton_clusters_are_plain_shapley() -> None:
    v = data_game([4, 9, 1], [0, 1, 2]) + np.random.default_rng(0).normal(size=8)
    owners = ["a", "b", "c"]
    got = quotient_values(owners, [["a"], ["b"], ["c"]], v, [1, 1, 1])
    assert np.allclose(got, exact_shapley(3, v).values)


def test_split_owner_gains_nothing_and_shells_share_by_data_size() -> None:
    # a (data 16) and b (data 9) are distinct sources; honest game vs a split into shells of 4 + 12.
    v_honest = data_game([16, 9], [0, 1])
    honest = exact_shapley(2, v_honest).values
    v_split = data_game([4, 12, 9], [0, 0, 1])
    plain = exact_shapley(3, v_split).values
    assert plain[:2].sum() / honest[0] > 1.05  # the attack works against plain Shapley values ...
    got = quotient_values(["a1", "a2", "b"], [["a1", "a2"], ["b"]], v_split, [4, 12, 9])
    assert got[:2].sum() == pytest.approx(honest[0])  # ... and not against the quotient game
    assert got[1] == pytest.approx(3 * got[0])  # data-size split within the cluster
    assert got[2] == pytest.approx(honest[1])
    assert got.sum() == pytest.approx(v_split[-1] - v_split[0])  # efficiency


def test_quotient_masks_and_coalitions_map_clusters_to_owners() -> None:
    members = membership(["a", "b", "c", "d"], [["a", "c"], ["b"], ["d"]])
    assert quotient_masks(members).tolist() == [0, 0b0101, 0b0010, 0b0111, 0b1000, 0b1101, 0b1010, 0b1111]
    got = quotient_coalitions(members, np.array([[True, False, True], [False, True, False]]))
    assert got.tolist() == [[True, False, True, True], [False, True, False, False]]


@pytest.mark.parametrize("clusters", [[["a"]], [["a", "b"], ["b"]], [["a", "x"], ["b"]], [["a", "b"], []]])
def test_clusters_must_partition_the_owners(clusters: list[list[str]]) -> None:
    with pytest.raises(AttributionError):
        membership(["a", "b"], clusters)


def test_data_sizes_must_be_positive() -> None:
    with pytest.raises(AttributionError):
        split_matrix(membership(["a", "b"], None), np.array([1.0, 0.0]))
