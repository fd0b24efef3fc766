"""Screen + refine (families/screen.py) against the full compositional path on a small family
of synthetic adapters over the tiny pipeline: the refined owners' likelihoods are the full
path's, and every Shapley value is within its own stated standard error of the full path's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from royalflow.attribution.families.base import load_base
from royalflow.attribution.families.lora import LoraFamily
from royalflow.attribution.families.manifest import LoraManifest
from royalflow.attribution.family import Prepared
from royalflow.training.tiny import build_tiny_pipeline, random_factors

N_OWNERS = 8


def small_family(folder: Path, n: int, *, screen: dict | None = None, scale: float = 0.05,  # type: ignore[type-arg]
                 estimator: dict | None = None) -> LoraFamily:  # type: ignore[type-arg]
    if not (folder / "unet").is_dir():
        build_tiny_pipeline(folder)
    base = load_base(folder, device=torch.device("cpu"))
    owners = [f"owner-{i}" for i in range(n)]
    manifest = LoraManifest.model_validate({
        "kind": "lora", "family_id": "screened", "version": "1", "owners": owners, "pool_fraction": "3/10",
        "mode": "compositional", "base": str(folder), "resolution": 32, "rank": 8, "target_modules": ["to_q"],
        "components": {key: {"file": f"components/{i:05d}.safetensors", "sha256": "0" * 64}
                       for i, key in enumerate(["_control", *owners])},
        "data_sizes": {"_base": 40, **{o: 10 + 5 * i for i, o in enumerate(owners)}},
        "estimator": {"samples": 8, "screen": screen or {}, **(estimator or {})},
    })
    return LoraFamily(manifest, base, torch.device("cpu"), random_factors(base.unet, n + 1, scale=scale))


@pytest.fixture(scope="module")
def family(tmp_path_factory: pytest.TempPathFactory) -> LoraFamily:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield small_family(tmp_path_factory.mktemp("tiny") / "base", N_OWNERS,
                           screen={"min_owners": 1, "max_refined": 3, "tolerance": 0.05})
    finally:
        torch.set_num_threads(threads)


def items(count: int) -> list[Prepared]:
    rng = np.random.default_rng(7)
    return [Prepared(event=None, item=(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), "a red circle"),  # type: ignore[arg-type]
                     seed=1000 + i) for i in range(count)]


def test_screen_and_refine_agrees_with_the_full_path_within_its_bound(family: LoraFamily) -> None:
    batch = items(4)
    full = family.attribute(batch, path="full")
    screened = family.attribute(batch, path="screen")
    for f, s in zip(full, screened):
        assert s.screen is not None and 1 <= len(s.screen["refined"]) <= 3
        # Refined owners' likelihoods are the full path's, on the same common random numbers (to
        # float32 rounding: the screen runs a pair's rows in other batches than the full path).
        for owner in s.screen["refined"]:
            key = f"component:{owner}"
            assert s.coalition_utilities[key] == pytest.approx(f.coalition_utilities[key], rel=1e-6)
        assert s.coalition_utilities["component:_base"] == pytest.approx(f.coalition_utilities["component:_base"], abs=1e-9)
        gap = np.abs(s.shapley_values - f.shapley_values)
        assert np.all(gap <= s.std_errors + 1e-9), (gap, s.std_errors)
        assert s.screen["unet_passes"] <= 4 * (family.estimator.samples + 1)  # the default budget


def test_screened_attribution_is_deterministic_per_event(family: LoraFamily) -> None:
    first, second = family.attribute(items(2), path="screen"), family.attribute(items(2), path="screen")
    for a, b in zip(first, second):
        assert np.array_equal(a.shapley_values, b.shapley_values)
        assert a.screen == b.screen


def test_under_a_cut_the_screen_runs_no_decoder_row_and_meets_the_full_path(tmp_path: Path) -> None:
    # elbo.py (6): a pair's likelihood is K rows; refined owners' likelihoods are the full path's.
    family = small_family(tmp_path / "base", 4, screen={"min_owners": 1, "max_refined": 4, "tolerance": 0.05},
                          estimator={"snr_cut": 1.0, "timesteps": "stratified"})
    batch = items(2)
    full, screened = family.attribute(batch, path="full"), family.attribute(batch, path="screen")
    assert full[0].model_evaluations == 5 * family.estimator.samples  # n + 1 slots x K rows
    for f, s in zip(full, screened):
        assert s.screen is not None and s.screen["refined"]
        for owner in s.screen["refined"]:
            key = f"component:{owner}"
            assert s.coalition_utilities[key] == pytest.approx(f.coalition_utilities[key], rel=1e-6)
        assert s.screen["unet_passes"] <= 4 * family.estimator.samples  # the budget, in K-row units


def test_small_compositional_families_keep_the_full_path(tmp_path: Path) -> None:
    family = small_family(tmp_path / "base", 3)
    assert not family.screened
    (attribution,) = family.attribute(items(1))
    assert attribution.screen is None
    assert attribution.model_evaluations == 4 * (family.estimator.samples + 1)


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def test_memory_stays_bounded_with_a_thousand_owners(tmp_path: Path) -> None:
    from royalflow.attribution.families.resident import DEFAULT_CAPACITY

    before = rss_bytes()
    family = small_family(tmp_path / "base", 1024)
    assert family.screened  # 1,024 >= min_owners: the agent's path is screen + refine
    results = family.attribute(items(2))
    assert all(r.screen is not None and r.model_evaluations <= 7 * (family.estimator.samples + 1) for r in results)
    # The device holds a bounded pool, not the family; the host holds the factors once.
    assert family.pool.capacity == DEFAULT_CAPACITY < 1025
    per_adapter = family.pool.host.nbytes() // 1025
    assert family.pool.stack.nbytes() == DEFAULT_CAPACITY * per_adapter
    assert rss_bytes() - before < 1.5 * 2**30
