"""The scheduler queue: highest effective priority first, FIFO within a priority, with aging.

An entry's effective priority grows linearly while it waits::

    effective(now) = priority + rate * (now - enqueued_at),  rate = 100 / starvation_timeout

so a BACKGROUND (0) execution that has waited ``starvation_timeout`` seconds ranks with a
CRITICAL (100) one that has just arrived, and beats it a moment later. Because every
entry ages at the same rate, comparing two entries at any ``now`` gives the same answer
as comparing ``priority - rate * enqueued_at``; the order never changes while entries
wait, and a plain binary heap keyed on that value serves them in O(log n).
"""

from __future__ import annotations

import heapq
import itertools
import time
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["SchedulerQueue"]

T = TypeVar("T")


class SchedulerQueue(Generic[T]):
    """Priority queue with FIFO ties and linear aging (see the module docstring).

    Args:
        starvation_timeout: seconds after which a priority-0 entry ranks with a fresh
            priority-100 one.
        clock: monotonic clock in seconds (injectable for tests).
    """

    def __init__(self, starvation_timeout: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = 100.0 / starvation_timeout
        self._clock = clock
        self._heap: list[tuple[float, int, str, T]] = []
        self._seq = itertools.count()
        self._removed: set[str] = set()

    def push(self, key: str, item: T, priority: int, enqueued_at: float | None = None
             ) -> None:
        """Queue ``item`` (identified by ``key``) at ``priority``.

        Args:
            key: identifies the entry for :meth:`remove`.
            item: what :meth:`pop` returns.
            priority: higher is served first.
            enqueued_at: when the wait began on the queue's clock (default: now). The
                engine passes the submission time, so that aging counts from the
                caller's ``submit``, however late the supervisor gets to the message.
        """
        when = self._clock() if enqueued_at is None else enqueued_at
        rank = self._rate * when - priority
        heapq.heappush(self._heap, (rank, next(self._seq), key, item))

    def pop(self) -> T | None:
        """Remove and return the entry to serve next, or ``None`` when empty."""
        heap = self._heap
        while heap:
            _, _, key, item = heapq.heappop(heap)
            if key in self._removed:
                self._removed.discard(key)
                continue
            return item
        return None

    def remove(self, key: str) -> bool:
        """Drop the entry ``key`` if it is queued; return whether it was."""
        if key in self._removed or not any(e[2] == key for e in self._heap):
            return False
        self._removed.add(key)
        if len(self._removed) > 64 and len(self._removed) * 2 > len(self._heap):
            self._heap = [e for e in self._heap if e[2] not in self._removed]
            heapq.heapify(self._heap)
            self._removed.clear()
        return True

    def __len__(self) -> int:
        return len(self._heap) - len(self._removed)
