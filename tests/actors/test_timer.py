"""TimerService: fires in time order, cancel works, stop ends the thread."""

from __future__ import annotations

import threading
import time

from constellation.actors import TimerService


def test_callbacks_fire_in_deadline_order() -> None:
    timer = TimerService()
    fired: list[int] = []
    done = threading.Event()
    now = time.monotonic()
    for i, delay in enumerate([0.06, 0.02, 0.04]):
        timer.call_at(now + delay, lambda i=i: fired.append(i))
    timer.call_at(now + 0.08, done.set)
    assert done.wait(5)
    assert fired == [1, 2, 0]
    timer.stop()


def test_a_cancelled_entry_never_fires() -> None:
    timer = TimerService()
    fired = threading.Event()
    done = threading.Event()
    entry = timer.call_later(0.02, fired.set)
    timer.cancel(entry)
    timer.call_later(0.05, done.set)
    assert done.wait(5)
    assert not fired.is_set()
    timer.stop()


def test_an_earlier_entry_wakes_the_timer() -> None:
    timer = TimerService()
    done = threading.Event()
    timer.call_later(60, lambda: None)
    start = time.monotonic()
    timer.call_later(0.02, done.set)
    assert done.wait(5)
    assert time.monotonic() - start < 1.0
    timer.stop()


def test_a_failing_callback_does_not_stop_the_timer() -> None:
    timer = TimerService()
    done = threading.Event()

    def boom() -> None:
        raise RuntimeError("boom")

    timer.call_later(0.01, boom)
    timer.call_later(0.03, done.set)
    assert done.wait(5)
    timer.stop()
