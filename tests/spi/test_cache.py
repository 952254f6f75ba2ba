"""The in-memory cache backend against the cache contract."""

from __future__ import annotations

from typing import Any

from constellation.spi import MISSING, InMemoryCacheBackend
from tests.spi.contracts import CacheContract


class TestInMemoryCache(CacheContract):
    def make(self) -> Any:
        self.now = 1000.0
        return InMemoryCacheBackend(max_entries=1000, clock=lambda: self.now)

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_least_recently_used_values_are_evicted_and_counted() -> None:
    cache = InMemoryCacheBackend(max_entries=2)
    cache.set("a", 1, ttl=60)
    cache.set("b", 2, ttl=60)
    cache.get("a")  # a is now more recent than b
    cache.set("c", 3, ttl=60)
    assert cache.get("b") is MISSING
    assert cache.get("a") == 1
    stats = cache.stats()
    assert stats.evictions == 1
    assert stats.entries == 2
    assert 0 < stats.hit_rate < 1
