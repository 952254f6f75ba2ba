"""RedisCacheBackend: module results in Redis, msgpack-encoded, with server-side TTL.

Needs the ``redis`` extra: ``pip install 'constellation-engine[redis]'``. Keys live under
a prefix; ``clear()`` removes only those keys, never the rest of the database.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import msgpack

from constellation.core.errors import ConfigurationError
from constellation.spi._cache import MISSING, CacheStats

__all__ = ["RedisCacheBackend"]


class RedisCacheBackend:
    """A cache backend on a Redis server.

    Args:
        url: ``redis://host:port/db`` (ignored when ``client`` is given); by default the
            ``CONSTELLATION_REDIS_URL`` environment variable, else
            ``redis://127.0.0.1:6379/0`` -- so ``cache_backend: "redis"`` in a pipeline
            works without code.
        client: an existing ``redis.Redis`` client.
        prefix: the key prefix of this cache.
    """

    def __init__(self, url: str | None = None, *, client: Any = None,
                 prefix: str = "constellation:cache:") -> None:
        if url is None:
            url = os.environ.get("CONSTELLATION_REDIS_URL", "redis://127.0.0.1:6379/0")
        if client is None:
            try:
                import redis
            except ImportError:
                raise ConfigurationError(
                    "the Redis cache needs the redis package: pip install "
                    "'constellation-engine[redis]'", details={"field": "cache"}) from None
            client = redis.Redis.from_url(url)
        self._client = client
        self.prefix = prefix
        self._lock = threading.Lock()
        self._hits = self._misses = 0

    def get(self, key: str) -> Any:
        """The value, or MISSING."""
        raw = self._client.get(self.prefix + key)
        with self._lock:
            if raw is None:
                self._misses += 1
                return MISSING
            self._hits += 1
        return msgpack.unpackb(raw, raw=False, strict_map_key=False)

    def set(self, key: str, value: Any, ttl: float) -> None:
        """Store for ``ttl`` seconds (rounded up to a millisecond)."""
        if ttl <= 0:
            return
        self._client.set(self.prefix + key, msgpack.packb(value, use_bin_type=True),
                         px=max(1, int(ttl * 1000)))

    def delete(self, key: str) -> bool:
        """Remove the key."""
        return bool(self._client.delete(self.prefix + key))

    def clear(self) -> None:
        """Remove every key under the prefix."""
        batch = []
        for k in self._client.scan_iter(match=self.prefix + "*", count=500):
            batch.append(k)
            if len(batch) >= 500:
                self._client.delete(*batch)
                batch = []
        if batch:
            self._client.delete(*batch)

    def stats(self) -> CacheStats:
        """Hits and misses seen by this object; entries under the prefix; the server's
        evicted-keys count (server-wide)."""
        entries = sum(1 for _ in self._client.scan_iter(match=self.prefix + "*", count=500))
        evicted = int(self._client.info("stats").get("evicted_keys", 0))
        with self._lock:
            return CacheStats(self._hits, self._misses, evicted, entries)

    def close(self) -> None:
        """Close the client's connections."""
        self._client.close()
