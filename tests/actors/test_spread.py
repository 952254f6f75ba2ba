"""Many quick calls launched at once off the worker pool reach it in a few slices."""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

import pytest

from constellation import ExecutionStatus, SchedulerConfig, module
from constellation.actors import _plan
from constellation.actors import _pool as pool_mod
from constellation.actors._messages import AttemptFinished
from constellation.actors._pool import ThreadPool
from constellation.actors._runners import Gathered, PoolRunner
from constellation.core.errors import ExecutorError
from tests.waiting import wait_for

WAIT = 10.0


def test_a_spread_runs_every_task_once_in_order_within_its_slice() -> None:
    puts: list[Any] = []

    class Counting(queue.SimpleQueue):  # type: ignore[type-arg]
        def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
            puts.append(item)
            super().put(item, block, timeout)

    pool = ThreadPool(4, "spread")
    pool._queue = Counting()  # before any thread started
    ran: list[tuple[str, int]] = []
    lock = threading.Lock()

    def task(i: int) -> Any:
        def run() -> None:
            with lock:
                ran.append((threading.current_thread().name, i))
        return run

    try:
        pool.schedule_spread([task(i) for i in range(100)])
        wait_for(lambda: len(ran) == 100)
        queued = list(puts)  # (the stop signals come after)
    finally:
        pool.shutdown()
    assert sorted(i for _, i in ran) == list(range(100))
    assert len(queued) == min(4, pool_mod._SPREAD_SLICES)  # one queue put per slice
    for thread in {t for t, _ in ran}:
        mine = [i for t, i in ran if t == thread]
        assert mine == sorted(mine), (thread, mine)  # a slice runs in order


def test_a_spread_on_a_stopped_pool_raises_and_queues_nothing() -> None:
    pool = ThreadPool(2, "spread")
    pool.shutdown()
    with pytest.raises(RuntimeError):
        pool.schedule_spread([lambda: None, lambda: None, lambda: None])
    assert pool._queue.qsize() == pool.thread_count  # only the stop signals, if any


def test_a_spread_survives_a_thread_that_cannot_be_started(
        monkeypatch: pytest.MonkeyPatch) -> None:
    pool = ThreadPool(4, "spread")
    spawn = ThreadPool._spawn
    spawned: list[bool] = []

    def once(self: ThreadPool) -> None:
        if spawned:
            raise RuntimeError("can't start new thread")
        spawned.append(True)
        spawn(self)

    monkeypatch.setattr(ThreadPool, "_spawn", once)
    monkeypatch.setattr(pool_mod, "_SPREAD_SLICES", 4)
    ran: list[int] = []
    try:
        pool.schedule_spread([lambda i=i: ran.append(i) for i in range(40)])
        # The one thread that started takes every slice in turn: nothing is lost.
        wait_for(lambda: len(ran) == 40)
    finally:
        pool.shutdown()
    assert sorted(ran) == list(range(40))


class _Attempt:
    def __init__(self) -> None:
        self.finished = 0

    def finish(self) -> bool:
        self.finished += 1
        return self.finished == 1


class _Node:
    name = "n"

    class module:  # noqa: N801 - stands in for a ModuleDefinition
        name = "M"


class _Actor:
    node = _Node()

    def __init__(self) -> None:
        self.posted: list[Any] = []

    def post(self, message: Any) -> bool:
        self.posted.append(message)
        return True


class _Call:
    def __init__(self) -> None:
        self.actor = _Actor()
        self.attempt = _Attempt()


def test_calls_spread_to_a_stopped_pool_are_each_refused_with_an_executor_error() -> None:
    pool = ThreadPool(2, "spread")
    runner = PoolRunner(pool)
    gathered = runner.gather()
    assert gathered is not None
    calls = [_Call() for _ in range(3)]
    gathered.extend(calls)
    pool.shutdown()
    runner.spread(gathered)
    assert runner.gather() is not None  # the thread gathers no more after spread()
    from constellation.actors._pool import _local

    _local.gathered = None
    for call in calls:
        [message] = call.actor.posted
        assert type(message) is AttemptFinished
        assert isinstance(message.error, ExecutorError)
        assert message.error.details["executor"] == "spread"


def test_a_pool_thread_never_gathers() -> None:
    pool = ThreadPool(1, "spread")
    runner = PoolRunner(pool)
    got: list[Gathered | None] = []
    try:
        pool.schedule_queued(lambda: got.append(runner.gather()))
        wait_for(lambda: len(got) == 1)
    finally:
        pool.shutdown()
    assert got == [None]


def _wide(n: int) -> str:
    return "in x: Int\n" + "".join(f"b{i} = Leaf(x + {i})\n" for i in range(n)) + \
        "".join(f"out b{i}\n" for i in range(n))


@module
def Leaf(x: int) -> int:
    """Quick, unless told to block (x == -1000 + its offset 0)."""
    if x == -1000:
        time.sleep(1.5)
    return x


def test_a_wide_launch_reaches_the_workers_in_slices(
        engine_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_plan, "FAST_CALL_SECONDS", 1.0)  # every Leaf counts as quick
    engine = engine_factory([Leaf], scheduler=SchedulerConfig(worker_threads=2))
    pipeline = engine.compile(_wide(200))
    for _ in range(3):
        engine.run(pipeline, {"x": 0}, timeout=WAIT)
    spreads: list[int] = []
    spread = ThreadPool.schedule_spread
    monkeypatch.setattr(ThreadPool, "schedule_spread",
                        lambda self, tasks: (spreads.append(len(tasks)), spread(self, tasks)))
    # submit(): the first step runs on a dispatcher thread, off the worker pool. (A
    # run() is handed to a free worker, which keeps the calls in its slot and backlog:
    # see test_run_hand_over.py.)
    r = engine.submit(pipeline, {"x": 5}, timeout=WAIT).result()
    assert r.outputs == {f"b{i}": 5 + i for i in range(200)}, r.errors
    assert spreads == [200]  # every leaf's call in one spread


def test_a_quick_call_that_blocks_in_a_slice_does_not_hold_its_siblings(
        engine_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_plan, "FAST_CALL_SECONDS", 1.0)
    done: dict[int, float] = {}

    @module
    def Mark(x: int) -> int:
        if x == -1000:
            time.sleep(1.5)  # measured quick, blocks this once
        done[x] = time.monotonic()
        return x

    engine = engine_factory([Mark], scheduler=SchedulerConfig(worker_threads=2))
    source = "in x: Int\n" + "".join(f"b{i} = Mark(x + {i})\n" for i in range(40)) + \
        "".join(f"out b{i}\n" for i in range(40))
    pipeline = engine.compile(source)
    for _ in range(3):
        engine.run(pipeline, {"x": 0}, timeout=WAIT)
    done.clear()
    t0 = time.monotonic()
    r = engine.run(pipeline, {"x": -1000}, timeout=0.8)
    took = time.monotonic() - t0
    # The caller keeps the deadline; the blocker's slice-mates were taken away from
    # its thread by the rescuer and ran meanwhile.
    assert r.status is ExecutionStatus.TIMED_OUT
    assert took < 2.0
    others = [t - t0 for x, t in done.items() if x != -1000]
    assert len(others) == 39, sorted(done)
    assert max(others) < 0.8, others
