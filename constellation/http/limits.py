"""Per-client token buckets (rate limiting) for the HTTP daemon."""

from __future__ import annotations

import math
import threading
import time
from typing import TYPE_CHECKING

from cachetools import LRUCache

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["RateLimiter"]


class RateLimiter:
    """A token bucket per client: ``rate`` requests per second on average, bursts of
    ``burst``. Clients are keyed by API key when there is one, else by IP; the least
    recently seen are forgotten past ``max_clients``.

    Args:
        per_minute: average requests per minute per client.
        burst: the most requests a client may make at once.
        clock: seconds, monotonic.
        max_clients: clients remembered.
    """

    def __init__(self, per_minute: float, burst: int, *,
                 clock: Callable[[], float] = time.monotonic,
                 max_clients: int = 100_000) -> None:
        if per_minute <= 0 or burst < 1:
            raise ValueError("a rate limit needs a positive rate and a burst of at least 1")
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.clock = clock
        self._buckets: LRUCache[str, tuple[float, float]] = LRUCache(maxsize=max_clients)
        self._lock = threading.Lock()

    def acquire(self, client: str) -> float:
        """Take a token for ``client``: 0.0 if allowed, else the seconds until one is
        available (for ``Retry-After``)."""
        now = self.clock()
        with self._lock:
            tokens, last = self._buckets.get(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[client] = (tokens - 1.0, now)
                return 0.0
            self._buckets[client] = (tokens, now)
            return (1.0 - tokens) / self.rate

    @staticmethod
    def retry_after(wait: float) -> str:
        """A ``Retry-After`` value: whole seconds, at least 1."""
        return str(max(1, math.ceil(wait)))
