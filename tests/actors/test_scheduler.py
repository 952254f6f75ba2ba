"""SchedulerQueue: priority order, FIFO within a priority, aging, removal."""

from __future__ import annotations

from constellation.actors import SchedulerQueue


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def drain(q: SchedulerQueue[str]) -> list[str]:
    out = []
    while (item := q.pop()) is not None:
        out.append(item)
    return out


def test_higher_priority_is_served_first() -> None:
    q: SchedulerQueue[str] = SchedulerQueue(30.0, FakeClock())
    for name, prio in [("low", 20), ("critical", 100), ("normal", 50), ("high", 80),
                       ("background", 0)]:
        q.push(name, name, prio)
    assert drain(q) == ["critical", "high", "normal", "low", "background"]


def test_equal_priorities_are_served_in_arrival_order() -> None:
    q: SchedulerQueue[str] = SchedulerQueue(30.0, FakeClock())
    for i in range(100):
        q.push(str(i), str(i), 50)
    assert drain(q) == [str(i) for i in range(100)]


def test_a_waiting_low_priority_entry_is_eventually_served_before_newer_high_ones() -> None:
    clock = FakeClock()
    q: SchedulerQueue[str] = SchedulerQueue(30.0, clock)
    q.push("old-background", "old-background", 0)
    clock.now += 31.0  # waited longer than starvation_timeout
    q.push("new-critical", "new-critical", 100)
    assert drain(q) == ["old-background", "new-critical"]


def test_aging_is_gradual() -> None:
    clock = FakeClock()
    q: SchedulerQueue[str] = SchedulerQueue(30.0, clock)
    q.push("low", "low", 20)
    clock.now += 15.0  # half of starvation_timeout: +50 points, effective 70
    q.push("high", "high", 80)
    q.push("normal", "normal", 50)
    assert drain(q) == ["high", "low", "normal"]


def test_removed_entries_are_skipped_and_not_counted() -> None:
    q: SchedulerQueue[str] = SchedulerQueue(30.0, FakeClock())
    for i in range(5):
        q.push(str(i), str(i), 50)
    assert q.remove("2") is True
    assert q.remove("2") is False
    assert q.remove("nope") is False
    assert len(q) == 4
    assert drain(q) == ["0", "1", "3", "4"]
    assert len(q) == 0


def test_many_removals_compact_the_heap() -> None:
    q: SchedulerQueue[str] = SchedulerQueue(30.0, FakeClock())
    for i in range(300):
        q.push(str(i), str(i), 50)
    for i in range(200):
        q.remove(str(i))
    assert len(q) == 100
    assert drain(q) == [str(i) for i in range(200, 300)]
