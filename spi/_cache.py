"""CacheBackend: module results cached with a time to live.

Keys are strings built by the engine from the module, its version and a hash of its
arguments; values are the module's JSON-ready results.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from cachetools import TLRUCache

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["CacheBackend", "CacheStats", "InMemoryCacheBackend", "MISSING"]


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
"""What ``get`` returns for a key that is not cached (None is a valid cached value)."""


@dataclass(frozen=True, slots=True)
class CacheStats:
    """Counts since the backend was created.

    Attributes:
        hits: gets that found a live value.
        misses: gets that did not.
        evictions: values dropped for room (expired values are not counted here).
        entries: values held now.
    """

    hits: int
    misses: int
    evictions: int
    entries: int

    @property
    def hit_rate(self) -> float:
        """hits / (hits + misses), 0.0 before any get."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


@runtime_checkable
class CacheBackend(Protocol):
    """Caches values for a time. Implementations must be thread-safe."""

    def get(self, key: str) -> Any:
        """The value, or :data:`MISSING`."""

    def set(self, key: str, value: Any, ttl: float) -> None:
        """Store ``value`` for ``ttl`` seconds."""

    def delete(self, key: str) -> bool:
        """Remove the key; whether it was there."""

    def clear(self) -> None:
        """Remove everything."""

    def stats(self) -> CacheStats:
        """Hit, miss and eviction counts."""


class _EvictionCountingCache(TLRUCache):  # type: ignore[type-arg]
    def __init__(self, maxsize: int, ttu: Callable[[Any, Any, float], float],
                 timer: Callable[[], float], on_evict: Callable[[], None]) -> None:
        super().__init__(maxsize, ttu, timer)
        self._on_evict = on_evict

    def popitem(self) -> Any:
        # cachetools calls popitem only to make room: that is an eviction.
        item = super().popitem()
        self._on_evict()
        return item


class InMemoryCacheBackend:
    """A bounded in-process cache (cachetools): per-entry TTL, least recently used first
    out when full. The default.

    Args:
        max_entries: the most values held.
        clock: seconds, monotonic (tests inject one).
    """

    def __init__(self, max_entries: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._hits = self._misses = self._evictions = 0

        def count_eviction() -> None:
            self._evictions += 1

        self._cache = _EvictionCountingCache(
            max_entries, lambda _k, v, now: now + v[1], clock, count_eviction)

    def get(self, key: str) -> Any:
        """The value, or MISSING (expired values are misses)."""
        with self._lock:
            entry = self._cache.get(key)
            if entry is None:
                self._misses += 1
                return MISSING
            self._hits += 1
            return entry[0]

    def set(self, key: str, value: Any, ttl: float) -> None:
        """Store for ``ttl`` seconds."""
        if ttl <= 0:
            return
        with self._lock:
            self._cache[key] = (value, ttl)

    def delete(self, key: str) -> bool:
        """Remove the key."""
        with self._lock:
            return self._cache.pop(key, None) is not None

    def clear(self) -> None:
        """Remove everything (counts are kept)."""
        with self._lock:
            self._cache.clear()

    def stats(self) -> CacheStats:
        """Counts and size."""
        with self._lock:
            self._cache.expire()
            return CacheStats(self._hits, self._misses, self._evictions, len(self._cache))
