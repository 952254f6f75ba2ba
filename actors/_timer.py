"""One timer thread for the whole engine: deadlines and other due messages.

Callbacks run on the timer thread and must be quick (they tell an actor). Cancelled
entries are dropped lazily and compacted when they outnumber the live ones, so a
long default timeout on every execution does not grow the heap without bound.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["TimerService"]

logger = logging.getLogger("constellation.actors")


class TimerEntry:
    """A scheduled callback; :meth:`cancel` stops it from firing."""

    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], object]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        """Do not fire (harmless if it already fired)."""
        self.cancelled = True


class TimerService:
    """Fires callbacks at monotonic times on one daemon thread, started on first use.

    Args:
        name: the thread's name.
        clock: the monotonic clock deadlines are measured on.
    """

    def __init__(self, name: str = "constellation-timer",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._name = name
        self.clock = clock
        self._heap: list[tuple[float, int, TimerEntry]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._cancelled_hint = 0
        # A test clock (constellation.testing.ManualClock) tells the timer when it moves.
        subscribe = getattr(clock, "subscribe", None)
        if callable(subscribe):
            subscribe(self.poke)

    def poke(self) -> None:
        """Look at the clock again now (a manual clock was moved)."""
        with self._cond:
            self._cond.notify()

    def call_at(self, when: float, callback: Callable[[], object]) -> TimerEntry:
        """Run ``callback`` on the timer thread at clock time ``when``."""
        entry = TimerEntry(when, callback)
        with self._cond:
            if self._stopped:
                raise RuntimeError("timer service is stopped")
            earliest = not self._heap or when < self._heap[0][0]
            heapq.heappush(self._heap, (when, next(self._seq), entry))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()
            elif earliest:
                self._cond.notify()
        return entry

    def call_later(self, delay: float, callback: Callable[[], object]) -> TimerEntry:
        """Run ``callback`` after ``delay`` seconds."""
        return self.call_at(self.clock() + delay, callback)

    def cancel(self, entry: TimerEntry) -> None:
        """Cancel ``entry``; compacts the heap when cancelled entries dominate it."""
        entry.cancel()
        self._cancelled_hint += 1
        if self._cancelled_hint > 1024 and self._cancelled_hint * 2 > len(self._heap):
            with self._cond:
                self._heap = [e for e in self._heap if not e[2].cancelled]
                heapq.heapify(self._heap)
                self._cancelled_hint = 0

    def stop(self) -> None:
        """Stop the thread; pending callbacks never fire."""
        with self._cond:
            self._stopped = True
            self._cond.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    @property
    def pending(self) -> int:
        """Entries not yet fired or compacted away (cancelled ones may be included)."""
        return len(self._heap)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopped:
                    if self._heap:
                        wait = self._heap[0][0] - self.clock()
                        if wait <= 0:
                            break
                        self._cond.wait(min(wait, 1.0))
                    else:
                        self._cond.wait(1.0)
                if self._stopped:
                    return
                _, _, entry = heapq.heappop(self._heap)
            if entry.cancelled:
                continue
            try:
                entry.callback()
            except BaseException:
                logger.exception("timer callback failed")
