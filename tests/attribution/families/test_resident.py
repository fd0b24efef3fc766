"""The resident pool: a bounded number of adapters on the device, least recently used out."""

from __future__ import annotations

import pytest
import torch

from royalflow.attribution.families.multilora import FactorStack
from royalflow.attribution.families.resident import ResidentPool
from royalflow.errors import AttributionError


def host(slots: int) -> FactorStack:
    # Slot s holds the constant s in both factors, so a pool position tells which slot it holds.
    factors = [{"layer": (torch.full((2, 3), float(s)), torch.full((4, 2), float(s)))} for s in range(slots)]
    return FactorStack.build(factors, {"layer": (4, 3)})


def holds(pool: ResidentPool, position: int) -> int:
    return int(pool.stack.layers["layer"][0][position, 0, 0])


def test_a_family_that_fits_is_resident_whole() -> None:
    pool = ResidentPool(host(5), 16, device=torch.device("cpu"), dtype=torch.float32)
    assert pool.capacity == 5
    assert pool.positions([4, 0, 2]) == [4, 0, 2]
    assert pool.loads == 0


def test_least_recently_used_adapters_are_evicted_and_reloaded() -> None:
    pool = ResidentPool(host(100), 3, device=torch.device("cpu"), dtype=torch.float32)
    first = pool.positions([10, 20, 30])
    assert [holds(pool, p) for p in first] == [10, 20, 30]
    pool.positions([10])  # 20 is now the least recently used
    (where,) = pool.positions([40])
    assert where == first[1] and holds(pool, where) == 40
    assert [holds(pool, p) for p in pool.positions([10, 30, 40])] == [10, 30, 40]
    assert pool.loads == 4
    assert pool.stack.layers["layer"][0].shape[0] == 3  # device memory: the capacity, not the family


def test_repeated_slots_in_one_forward_share_a_position() -> None:
    pool = ResidentPool(host(100), 2, device=torch.device("cpu"), dtype=torch.float32)
    assert pool.positions([7, 7, 8, 7]) == [pool.positions([7])[0]] * 2 + pool.positions([8]) + pool.positions([7])


def test_a_forward_needing_more_than_the_capacity_is_refused() -> None:
    pool = ResidentPool(host(100), 2, device=torch.device("cpu"), dtype=torch.float32)
    with pytest.raises(AttributionError, match="exceed the resident pool"):
        pool.positions([1, 2, 3])
