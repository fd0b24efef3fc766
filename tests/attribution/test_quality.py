"""The quality bar on real diffusion families (trained once per session, about 5 minutes on
2 cores; the full-size evaluation is `python benchmarks/quality.py`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from royalflow.attribution.quality import derive_compositional, evaluate, identical_owner_gap
from royalflow.attribution.registry import DiskFamilyRegistry
from royalflow.attribution.training import DEMO_HOLDINGS, digits_corpus, ensure_demo_family, train_family

# Training the families is the long part (about 5 minutes on 2 idle cores).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]


@pytest.fixture(scope="session")
def families(tmp_path_factory: pytest.TempPathFactory) -> tuple[DiskFamilyRegistry, str, str]:
    root = tmp_path_factory.mktemp("families")
    family_id, version = ensure_demo_family(root, progress=False, device="cpu")
    derive_compositional(root, family_id, version, "digits-compositional")
    return DiskFamilyRegistry(root, device="cpu"), family_id, version


def test_class_holder_gets_the_largest_share_and_modes_agree(families) -> None:  # type: ignore[no-untyped-def]
    registry, family_id, version = families
    report = evaluate(registry.get(family_id, version), registry.get("digits-compositional", version),
                      DEMO_HOLDINGS, per_class=10, seed=1)
    assert report.generations == 100
    assert report.top_owner_rate >= 0.95, str(report)
    assert report.agreement_rate >= 0.90, str(report)


def test_owners_with_identical_data_get_equal_shares(families) -> None:  # type: ignore[no-untyped-def]
    registry, _, _ = families
    public, owners = digits_corpus(DEMO_HOLDINGS)
    # Three owners keep the suite fast: coalitions without the twin pair come from the cache.
    twins = {"owner-a": owners["owner-a"], "owner-a-twin": owners["owner-a"], "owner-c": owners["owner-c"]}
    train_family(registry.families_dir, "digits-twins", "1", public, twins, mode="exact", device="cpu", progress=False)
    gap = identical_owner_gap(registry.get("digits-twins", "1"), "owner-a", "owner-a-twin", [0, 1, 2, 6],
                              per_class=4, seed=2)
    assert gap <= 0.05


def test_attribution_is_deterministic(families) -> None:  # type: ignore[no-untyped-def]
    from royalflow.attribution.quality import generations

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
