"""Helpers for testing code that uses the engine.

``ManualClock`` replaces the engine's monotonic clock so that retry delays, throttles,
circuit-breaker reset times and deadlines can be checked without sleeping::

    clock = ManualClock()
    engine = Constellation([flaky], clock=clock)
    execution = engine.submit(pipeline, inputs)
    clock.advance(1.0)          # the first retry is due now
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["ManualClock"]


class ManualClock:
    """A monotonic clock that moves only when told to.

    Call it for the time, like ``time.monotonic``. The engine's timer subscribes to it,
    so whatever falls due when :meth:`advance` moves the clock fires at once.

    Args:
        start: the initial reading, in seconds.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()
        self._subscribers: list[Callable[[], None]] = []

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` and wake whoever waits on it.

        Raises:
            ValueError: ``seconds`` is negative (a monotonic clock never goes back).
        """
        if seconds < 0:
            raise ValueError("a monotonic clock cannot go back")
        with self._lock:
            self._now += seconds
            subscribers = list(self._subscribers)
        for fn in subscribers:
            fn()

    def subscribe(self, fn: Callable[[], None]) -> None:
        """Call ``fn`` after every :meth:`advance` (the engine's timer does)."""
        with self._lock:
            self._subscribers.append(fn)

    def __repr__(self) -> str:
        return f"<ManualClock {self._now:.6f}>"
