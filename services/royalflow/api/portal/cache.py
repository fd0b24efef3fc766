"""A short-lived, bounded cache of the owner page's heavier figures (earnings by day and family,
this period's top generations): an owner reloading the page, or many sessions of one owner, cost
one pair of queries per ``portal_cache_seconds`` instead of one per view. The balance is never
cached: it is read live on every view, so it always equals what the API returns."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

MAX_ENTRIES = 4096  # owners kept; the least recently used goes first


class TtlCache:
    def __init__(self, ttl_seconds: float, max_entries: int = MAX_ENTRIES) -> None:
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, Any]] = OrderedDict()

    async def get(self, key: str, compute: Callable[[], Awaitable[Any]]) -> Any:
        """The cached value of ``key`` if younger than the TTL, else ``await compute()`` (kept)."""
        if self.ttl_seconds <= 0:
            return await compute()
        now = time.monotonic()
        hit = self._entries.get(key)
        if hit is not None and now - hit[0] < self.ttl_seconds:
            self._entries.move_to_end(key)
            return hit[1]
        value = await compute()
        self._entries[key] = (now, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return value
