"""ThreadPool: an Executor with per-thread slots and a bounded number of threads."""

from __future__ import annotations

import threading
import time

import pytest

from constellation.actors import ThreadPool, current_pool
from tests.waiting import wait_for


def test_submit_returns_results_and_exceptions() -> None:
    pool = ThreadPool(2, "t")
    assert pool.submit(lambda a, b: a + b, 2, 3).result(5) == 5
    with pytest.raises(ZeroDivisionError):
        pool.submit(lambda: 1 / 0).result(5)
    pool.shutdown()


def test_never_holds_more_than_max_threads() -> None:
    pool = ThreadPool(3, "bounded")
    gate = threading.Event()
    futures = [pool.submit(gate.wait, 5) for _ in range(20)]
    time.sleep(0.05)
    assert pool.thread_count == 3
    gate.set()
    assert all(f.result(5) for f in futures)
    pool.shutdown()


def test_a_burst_of_blocking_tasks_gets_one_thread_each() -> None:
    pool = ThreadPool(16, "burst")
    barrier = threading.Barrier(16, timeout=5)
    futures = [pool.submit(barrier.wait) for _ in range(16)]
    for f in futures:
        f.result(5)  # raises BrokenBarrierError if they had to run one after another
    pool.shutdown()


def test_work_scheduled_from_a_pool_thread_runs_next_on_that_thread() -> None:
    pool = ThreadPool(4, "slot")
    seen: list[str] = []
    done = threading.Event()

    def second() -> None:
        seen.append(threading.current_thread().name)
        done.set()

    def first() -> None:
        seen.append(threading.current_thread().name)
        assert current_pool() is pool
        pool.schedule(second)

    pool.schedule(first)
    assert done.wait(5)
    assert seen[0] == seen[1]
    pool.shutdown()


def test_shutdown_rejects_new_work_and_joins() -> None:
    pool = ThreadPool(2, "shut")
    pool.submit(lambda: None).result(5)
    pool.shutdown()
    assert pool.join(5)
    with pytest.raises(RuntimeError):
        pool.submit(lambda: None)


def test_current_pool_is_none_outside_pools() -> None:
    assert current_pool() is None


def test_the_backlog_of_a_thread_that_blocks_is_rescued_to_idle_threads() -> None:
    import threading as _threading

    pool = ThreadPool(4, "rescue-test")
    release = _threading.Event()
    ran: list[str] = []

    def blocker() -> None:
        release.wait(10)  # quick on average, blocks this once

    def turn() -> None:
        # Like an actor turn making four calls ready: the first takes the thread's
        # slot, the others wait in its backlog, behind the one that will block.
        pool.schedule_local(blocker)
        for i in range(3):
            pool.schedule_local(lambda i=i: ran.append(f"quick-{i}"))

    try:
        pool.schedule_queued(turn)
        deadline = time.monotonic() + 5
        while len(ran) < 3 and time.monotonic() < deadline:
            pool.rescue()  # the engine's timer calls this every RESCUE_AFTER seconds
            time.sleep(0.01)
        assert sorted(ran) == ["quick-0", "quick-1", "quick-2"]
        assert pool.rescued >= 1
    finally:
        release.set()
        pool.shutdown(wait=True)


def test_a_thread_killed_outside_a_task_is_replaced() -> None:
    """An exception injected into an idle pool thread (PyThreadState_SetAsyncExc) lands
    as it takes its next task, outside the task's own try: the thread dies. The pool no
    longer counts it and starts a replacement, so later work runs. (The task it was
    taking is lost: the exception fires before the thread holds it.)"""
    import ctypes

    pool = ThreadPool(1, "killed")
    ran: list[int] = []
    try:
        pool.schedule_queued(lambda: ran.append(0))
        wait_for(lambda: ran == [0] and pool._idle == 1)
        (worker,) = pool._threads
        assert ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(worker.ident), ctypes.py_object(SystemExit)) == 1
        pool.schedule_queued(lambda: ran.append(1))  # taken by the dying thread
        worker.join(5)
        assert not worker.is_alive()
        wait_for(lambda: pool.thread_count == 1 and pool._threads[0] is not worker)
        pool.schedule_queued(lambda: ran.append(2))
        wait_for(lambda: 2 in ran)
    finally:
        pool.shutdown()
    assert pool.thread_count == 0 or all(not t.is_alive() for t in pool._threads)
