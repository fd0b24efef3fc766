"""The adapters resident on the device: a fixed-capacity stacked pool with least-recently-used
eviction (the unified paging of S-LoRA, arXiv 2311.03285, in its simplest form).

Every owner's factors stay on the host (``FactorStack``, read and checked when the family
loads). A forward needs only the adapters of its rows: ``positions`` makes them resident --
copying the missing ones into free or least-recently-used pool positions -- and returns where
they are, so the bank's per-row index points into the pool. Device memory is bounded by the
capacity whatever the number of owners; a family small enough to fit is loaded whole once.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch

from royalflow.attribution.families.multilora import FactorStack
from royalflow.errors import AttributionError

DEFAULT_CAPACITY = 256  # adapters per pool: ~33 MiB of rank-8 factors on the tiny pipeline


class ResidentPool:
    def __init__(self, host: FactorStack, capacity: int, *, device: torch.device, dtype: torch.dtype) -> None:
        self.host = host
        self.capacity = min(int(capacity), host.slots)
        if self.capacity < 1:
            raise AttributionError("a resident pool needs room for at least one adapter")
        whole = self.capacity == host.slots
        # 1. A family that fits is resident whole, slot i at position i; else an empty pool.
        self.stack = host.take(list(range(self.capacity)), device=device, dtype=dtype)
        self._where: OrderedDict[int, int] = OrderedDict((i, i) for i in range(self.capacity)) if whole else OrderedDict()
        self._free = [] if whole else list(range(self.capacity))
        self.loads = 0  # adapters copied to the device since the pool was made (a metric for the benchmark)

    def positions(self, slots: Sequence[int]) -> list[int]:
        """Pool positions of ``slots`` (host slot numbers), loading the missing ones."""
        wanted = list(dict.fromkeys(int(s) for s in slots))
        if len(wanted) > self.capacity:
            raise AttributionError(f"{len(wanted)} adapters in one forward exceed the resident pool's {self.capacity}")
        for slot in wanted:
            if slot in self._where:
                self._where.move_to_end(slot)
        missing = [s for s in wanted if s not in self._where]
        if missing:
            keep = set(wanted)
            for slot in missing:
                if self._free:
                    position = self._free.pop()
                else:  # 2. Evict the least recently used adapter this forward does not need.
                    victim = next(s for s in self._where if s not in keep)
                    position = self._where.pop(victim)
                self._where[slot] = position
            targets = torch.tensor([self._where[s] for s in missing])
            fresh = self.host.take(missing)
            for name, (a, b) in self.stack.layers.items():
                fa, fb = fresh.layers[name]
                a[targets] = fa.to(a.device, a.dtype)
                b[targets] = fb.to(b.device, b.dtype)
            self.loads += len(missing)
        return [self._where[int(s)] for s in slots]
