"""The quality bar on real diffusion families (the demo family is trained once per session,
about 5 minutes on 2 idle cores; every other family here reuses its cached models and adds a
few fine-tunes). The full-size table is `python benchmarks/quality.py`."""

from __future__ import annotations

import pytest

from royalflow.attribution.registry import DiskFamilyRegistry
from royalflow.training.digits import DEMO_HOLDINGS, digits_corpus, ensure_demo_family, train_family
from royalflow.training.quality import (
    derive_compositional, evaluate, generations, identical_owner_gap, manipulation_gain, shell_owners,
)

# Training the families is the long part (about 5 minutes on 2 idle cores).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]


@pytest.fixture(scope="session")
def families(tmp_path_factory: pytest.TempPathFactory) -> tuple[DiskFamilyRegistry, str, str]:
    root = tmp_path_factory.mktemp("families")
    family_id, version = ensure_demo_family(root, progress=False, device="cpu")
    derive_compositional(root, family_id, version, "digits-compositional")
    return DiskFamilyRegistry(root, device="cpu"), family_id, version


def test_class_holder_gets_a_sharp_share_conditioned_and_from_content(families) -> None:  # type: ignore[no-untyped-def]
    registry, family_id, version = families
    exact = registry.get(family_id, version)
    assert exact.clusters == tuple((o,) for o in DEMO_HOLDINGS)  # honest owners: never merged
    # Content only costs one pass per class: 4 of the 10 generations per class keep CI short.
    report = evaluate(exact, registry.get("digits-compositional", version), DEMO_HOLDINGS, per_class=10, seed=1,
                      content_per_class=4)
    assert report.generations == 100
    # Bars below the figures measured on this draw, with room for the host: the same code and seeds
    # gave 98% / 0.91 on the host where the bars were set and 95% / 0.83 on an AMD EPYC host with
    # AVX-512 (torch picks its kernels by CPU, so the trained weights differ by host, bit for bit
    # repeatable on each). Content only 82.5-95%, 0.66-0.80 on 40 items; compositional 70-82%.
    # The README's table (100 other generations) has more.
    assert report.top_owner_rate >= 0.90, str(report)
    assert report.holder_share >= 0.80, str(report)
    assert report.content_top_owner_rate >= 0.75, str(report)
    assert report.content_holder_share >= 0.60, str(report)
    assert report.compositional_top_owner_rate >= 0.60, str(report)


def test_owners_with_identical_data_get_equal_shares(families) -> None:  # type: ignore[no-untyped-def]
    registry, _, version = families
    public, owners = digits_corpus(DEMO_HOLDINGS)
    # Three owners keep the suite fast: every model of this family is in the cache already.
    twins = {"owner-a": owners["owner-a"], "owner-a-twin": owners["owner-a"], "owner-c": owners["owner-c"]}
    train_family(registry.families_dir, "digits-twins", version, public, twins, mode="exact", device="cpu", progress=False)
    family = registry.get("digits-twins", version)
    assert family.clusters == (("owner-a", "owner-a-twin"), ("owner-c",))
    assert identical_owner_gap(family, "owner-a", "owner-a-twin", [0, 1, 2, 6], per_class=4, seed=2) == 0.0


@pytest.mark.parametrize("duplicated", [False, True], ids=["disjoint-halves", "duplicated-data"])
def test_a_split_owner_gains_nothing(families, duplicated: bool) -> None:  # type: ignore[no-untyped-def]
    """owner-a registers as two shells. Cheap in exact mode too: the shells' cluster reuses
    owner-a's cached models, so only the two shells' own models are new (none for copies)."""
    registry, family_id, version = families
    public, owners = digits_corpus(DEMO_HOLDINGS)
    fid = f"digits-shells-{'dup' if duplicated else 'split'}"
    train_family(registry.families_dir, fid, version, public, shell_owners(owners, "owner-a", 2, duplicated=duplicated),
                 mode="exact", device="cpu", progress=False)
    honest = registry.get(family_id, version)
    items = generations(registry.get(family_id, version), list(range(10)), 3, seed=4)
    report = manipulation_gain(honest, registry.get(fid, version), "owner-a", items, DEMO_HOLDINGS["owner-a"])
    assert report.merged and report.false_merges == 0, report
    assert report.gain <= 1.05, report


def test_attribution_is_deterministic(families) -> None:  # type: ignore[no-untyped-def]
    registry, family_id, version = families
    family = registry.get(family_id, version)
    items = generations(family, [3], 3, seed=5)
    first, again = family.attribute(items), family.attribute(items)
    for a, b in zip(first, again):  # same event, same numbers, bit for bit
        assert a.shapley_values.tolist() == b.shapley_values.tolist()
        assert a.coalition_utilities == b.coalition_utilities
    reordered = family.attribute(items[::-1])[::-1]  # draws are per event, not per batch position
    for a, b in zip(first, reordered):
        assert abs(a.shapley_values - b.shapley_values).max() < 1e-6
