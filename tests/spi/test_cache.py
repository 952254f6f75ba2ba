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


# --- when a stored result can be found --------------------------------------------------

CACHED = "in x: Int\ny = Counted(x) with cache: 1min\nout y"


def _counted() -> tuple[Any, list[int]]:
    from constellation import module

    calls: list[int] = []

    @module("Counted")
    def counted(x: int) -> int:
        calls.append(x)
        return x * 2

    return counted, calls


def test_the_in_memory_cache_has_a_result_as_soon_as_run_returns() -> None:
    """The built-in in-memory cache is written in the node's turn (its set never blocks):
    a run right after another finds the result, every time."""
    from constellation import Constellation

    counted, calls = _counted()
    with Constellation([counted]) as engine:
        pipeline = engine.compile(CACHED)
        for x in range(50):
            assert engine.run(pipeline, {"x": x}).outputs == {"y": 2 * x}
            assert engine.run(pipeline, {"x": x}).outputs == {"y": 2 * x}
    assert calls == list(range(50))


def test_wait_for_cache_stores_waits_for_a_slow_backend_and_is_bounded() -> None:
    import threading
    import time

    import pytest

    from constellation import Backends, ConfigurationError, Constellation
    from tests.faults import GatedCache

    counted, calls = _counted()
    slow = GatedCache(hang_set=True)
    with Constellation([counted], backends=Backends(cache=slow)) as engine:
        pipeline = engine.compile(CACHED)
        engine.run(pipeline, {"x": 1})
        t0 = time.monotonic()
        assert engine.wait_for_cache_stores(0.2) is False  # the backend does not answer
        assert 0.15 < time.monotonic() - t0 < 2.0
        threading.Timer(0.1, slow.gate.set).start()
        assert engine.wait_for_cache_stores(5.0) is True
        assert slow.stored_on
        assert slow.stored_on[0].startswith("constellation-cache-stores")
        engine.run(pipeline, {"x": 1})  # found
        assert calls == [1]
        assert engine.wait_for_cache_stores(0) is True  # nothing pending: at once
        for bad in (-1, float("nan"), "1", True, None):
            with pytest.raises(ConfigurationError):
                engine.wait_for_cache_stores(bad)  # type: ignore[arg-type]
        assert engine.wait_for_cache_stores(float("inf")) is True
