"""Same-source evidence (fingerprints), clustered families and content-only events, on cheap
random-weight families (the trained demo family is covered by tests/training/test_quality.py)."""

from __future__ import annotations

import numpy as np
import pytest

from royalflow.training.cli import suspected_clusters
from royalflow.attribution.families.digits import DiffusionFamily
from royalflow.errors import AttributionError, ContractError
from royalflow.training.clusters import average_hash, duplicate_fraction
from royalflow.training.digits import DEMO_HOLDINGS, digits_corpus
from tests.attribution.diffusion_factory import digit_png, event, random_family


def test_fingerprints_find_copies_and_near_copies_only() -> None:
    _, owners = digits_corpus(DEMO_HOLDINGS)
    a = owners["owner-a"].images
    assert duplicate_fraction(a, a.copy()) == 1.0
    nudged = a.copy()
    nudged[:, 0, 0] = np.clip(nudged[:, 0, 0] + 1, 0, 16)  # one level on one pixel: still a copy
    assert duplicate_fraction(a, nudged) >= 0.9
    # Honest owners of the demo (distinct digits) and even two halves of one owner share no copies.
    for other in ("owner-b", "owner-c", "owner-d"):
        assert duplicate_fraction(a, owners[other].images) == 0.0
    assert duplicate_fraction(a[::2], a[1::2]) < 0.05
    assert average_hash(np.zeros((1, 16, 16), np.int64)).shape == (1,)  # larger images are pooled to 8x8


def clustered(mode: str, clusters: list[list[str]]) -> DiffusionFamily:
    base = random_family(3, mode, seed=3)
    manifest = {**base.manifest, "clusters": clusters, "null_class": 10,
                "training": {"fairness": {"control": "random_labels", "null_dropout": 0.15, "public_mix": 0.25, "start": "control"}}}
    return DiffusionFamily(manifest, base.models, base.device)


@pytest.mark.parametrize("mode", ["exact", "compositional"])
def test_cluster_members_split_the_cluster_value_by_data_size(mode: str) -> None:
    family = clustered(mode, [["owner-0", "owner-2"], ["owner-1"]])
    items = [family.prepare(event(family, f"e{i}", digit_png(i))) for i in range(3)]
    sizes = np.array([100, 110, 120], dtype=float)
    for attribution in family.attribute(items):
        phi = attribution.shapley_values
        assert phi[2] / phi[0] == pytest.approx(sizes[2] / sizes[0])
        assert attribution.clusters == (("owner-0", "owner-2"), ("owner-1",))
        assert attribution.fairness is not None and attribution.fairness["control"] == "random_labels"
        if mode == "exact":  # efficiency over the quotient game
            u = attribution.coalition_utilities
            assert phi.sum() == pytest.approx(u["0x7"] - u["0x0"])


def test_exact_family_needs_only_the_unions_of_clusters() -> None:
    family = clustered("exact", [["owner-0", "owner-2"], ["owner-1"]])
    for mask in (0b001, 0b100, 0b011, 0b110):  # never a player's coalition in the quotient game
        family.models.pop(mask)
    item = family.prepare(event(family, "e", digit_png(1)))
    assert len(family.attribute([item])[0].shapley_values) == 3
    family.models.pop(0b101)
    with pytest.raises(AttributionError):
        family.attribute([item])


def test_content_only_events_use_the_null_class() -> None:
    family = clustered("exact", [["owner-0"], ["owner-1"], ["owner-2"]])
    prepared = family.prepare(event(family, "e", digit_png(1), label=None))  # type: ignore[arg-type]
    assert prepared.item[1] == 10
    legacy = random_family(2)  # a family trained before the null class: a label is still required
    with pytest.raises(ContractError):
        legacy.prepare(event(legacy, "e", digit_png(1), label=None))  # type: ignore[arg-type]


def test_families_show_lists_suspected_clusters_for_review() -> None:
    text = suspected_clusters([["a", "b"], ["c"]], [{"owners": ["a", "b"], "merged": True, "reasons": ["duplicates"],
                                                     "duplicate_fraction": 1.0, "profile_distance": 0.01}])
    assert "a + b" in text and "duplicates" in text and "review" in text
    assert "none" in suspected_clusters([["a"], ["c"]], [])


def test_content_only_by_class_mixture_scores_every_class() -> None:
    base = clustered("exact", [["owner-0"], ["owner-1"], ["owner-2"]])
    family = DiffusionFamily({**base.manifest, "content_only": "class_mixture"}, base.models, base.device)
    png = digit_png(7)
    mixed = family.attribute([family.prepare(event(family, "e", png, label=None))])[0]  # type: ignore[arg-type]
    per_class = family.attribute([family.prepare(event(family, "e", png, label=c)) for c in range(10)])
    assert mixed.model_evaluations == 10 * per_class[0].model_evaluations
    for key, value in mixed.coalition_utilities.items():
        best = max(a.coalition_utilities[key] for a in per_class)  # same event id: the same draws
        assert best - np.log(10) - 1e-6 <= value  # log (1/C) sum_c p_c >= max_c log p_c - log C
    with pytest.raises(Exception, match="content_only"):
        DiffusionFamily({**base.manifest, "content_only": "guess"}, base.models, base.device)


@pytest.mark.parametrize("mode", ["exact", "compositional"])
def test_content_only_by_class_posterior_is_the_posterior_weighted_labelled_attribution(mode: str) -> None:
    base = clustered(mode, [["owner-0"], ["owner-1"], ["owner-2"]])
    family = DiffusionFamily({**base.manifest, "content_only": "class_posterior"}, base.models, base.device)
    png = digit_png(7)
    content = family.attribute([family.prepare(event(family, "e", png, label=None))])[0]  # type: ignore[arg-type]
    per_class = family.attribute([family.prepare(event(family, "e", png, label=c)) for c in range(10)])
    assert content.model_evaluations == 10 * per_class[0].model_evaluations
    # pi: the grand model's class posterior (exact: the grand coalition; compositional: the
    # mixture of the owners' components, without the control, which reads no class).
    keys = list(per_class[0].coalition_utilities)
    table = np.array([[a.coalition_utilities[k] for k in keys] for a in per_class])  # (C, coalitions)
    if mode == "exact":
        grand = table[:, keys.index("0x7")]
    else:
        grand = np.logaddexp.reduce(family.log_weights[None, 1:] + table[:, 1:], axis=1)
    pi = np.exp(grand - np.logaddexp.reduce(grand))
    # v = sum_c pi_c v_c for every coalition, so (exact: Shapley is linear) phi = sum_c pi_c phi(c).
    assert [content.coalition_utilities[k] for k in keys] == pytest.approx(pi @ table, abs=1e-9)
    if mode == "exact":
        expected = pi @ np.stack([a.shapley_values for a in per_class])
        assert content.shapley_values == pytest.approx(expected, abs=1e-9)
        assert content.shapley_values.sum() == pytest.approx(pi @ (table[:, keys.index("0x7")] - table[:, keys.index("0x0")]))


def test_components_are_the_clusters_of_merged_pairs() -> None:
    from royalflow.training.clusters import components

    assert components(4, []) == [[0], [1], [2], [3]]
    assert components(5, [(3, 1), (1, 4)]) == [[0], [1, 3, 4], [2]]
    assert components(4, [(0, 2), (2, 0), (1, 3)]) == [[0, 2], [1, 3]]  # repeated and reversed edges
