"""RedisCacheBackend against a real Redis server, through the cache contract."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from constellation.spi._redis import RedisCacheBackend
from tests.spi.contracts import CacheContract
from tests.spi.services import redis_client


class TestRedisCache(CacheContract):
    @pytest.fixture(autouse=True)
    def _client(self) -> Any:
        self.client = redis_client()
        self.caches: list[RedisCacheBackend] = []
        yield
        for c in self.caches:
            c.clear()
        self.client.close()

    def make(self) -> Any:
        cache = RedisCacheBackend(client=self.client,
                                  prefix=f"constellation-test:{uuid.uuid4().hex}:")
        self.caches.append(cache)
        return cache

    def advance(self, seconds: float) -> None:
        time.sleep(seconds)  # Redis expires keys on its own clock


def test_clear_leaves_other_keys_alone() -> None:
    client = redis_client()
    other = f"not-ours:{uuid.uuid4().hex}"
    client.set(other, b"keep", px=60_000)
    cache = RedisCacheBackend(client=client, prefix=f"constellation-test:{uuid.uuid4().hex}:")
    cache.set("a", 1, ttl=60)
    cache.clear()
    assert client.get(other) == b"keep"
    client.delete(other)
    client.close()


def test_cache_option_with_the_redis_backend_by_name(monkeypatch: pytest.MonkeyPatch,
                                                     engine_factory: Any) -> None:
    """``cache_backend: "redis"`` builds the registered Redis backend (its URL from
    CONSTELLATION_REDIS_URL) and caches module results there, with Redis' own TTL."""
    from constellation import module
    from tests.spi.services import REDIS_URL

    client = redis_client()
    monkeypatch.setenv("CONSTELLATION_REDIS_URL", REDIS_URL)
    calls: list[int] = []
    name = f"RedisCached{uuid.uuid4().hex[:8]}"  # no result from another run can match

    @module(name)
    def cached(x: int) -> int:
        calls.append(x)
        return x * 3

    engine = engine_factory([cached])
    src = f'in x: Int\ny = {name}(x) with cache: 1s, cache_backend: "redis"\nout y'
    try:
        assert engine.run(src, {"x": 2}).outputs == {"y": 6}
        assert engine.wait_for_cache_stores(10)  # stored after run() returned
        assert engine.run(src, {"x": 2}).outputs == {"y": 6}
        assert calls == [2]
        keys = [k.decode() for k in client.scan_iter(match=f"constellation:cache:module:"
                                                          f"{name}:*")]
        assert len(keys) == 1
        assert 0 < client.pttl(keys[0]) <= 1000  # the TTL is Redis' own
        assert engine.run(src, {"x": 3}).outputs == {"y": 9}  # another input misses
        assert calls == [2, 3]
        time.sleep(1.2)
        assert engine.run(src, {"x": 2}).outputs == {"y": 6}  # expired in Redis
        assert calls == [2, 3, 2]
    finally:
        for k in client.scan_iter(match=f"constellation:cache:module:{name}:*"):
            client.delete(k)
        client.close()
