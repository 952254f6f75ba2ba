"""RedisCacheBackend against a real Redis server, through the cache contract."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from spi._redis import RedisCacheBackend
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
