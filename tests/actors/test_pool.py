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


def _inject(thread: threading.Thread, exc: type[BaseException] = SystemExit) -> None:
    import ctypes

    assert ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread.ident), ctypes.py_object(exc)) == 1


class _Injected(BaseException):
    pass


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.parametrize("exc", [SystemExit, KeyboardInterrupt, _Injected])
def test_a_thread_killed_outside_a_task_is_replaced_and_its_task_runs(
        exc: type[BaseException]) -> None:
    """An exception injected into an idle pool thread (PyThreadState_SetAsyncExc) fires
    as the queue's get() returns its next task, outside any task: the thread dies. The
    task was taken into the thread's state in the same C call, so the replacement runs
    it; the counts stay right (every later task runs, one thread, idle)."""
    pool = ThreadPool(1, "killed")
    ran: list[int] = []
    try:
        pool.schedule_queued(lambda: ran.append(0))
        wait_for(lambda: ran == [0] and pool._idle == 1)
        (worker,) = pool._threads
        _inject(worker, exc)
        pool.schedule_queued(lambda: ran.append(1))  # taken by the dying thread
        worker.join(5)
        assert not worker.is_alive()
        wait_for(lambda: 1 in ran)
        wait_for(lambda: pool.thread_count == 1 and pool._threads[0] is not worker)
        pool.schedule_queued(lambda: ran.append(2))
        wait_for(lambda: 2 in ran)
        wait_for(lambda: pool._idle == 1)
        assert pool._unassigned == 0
    finally:
        pool.shutdown()
    assert pool.thread_count == 0 or all(not t.is_alive() for t in pool._threads)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_task_taken_by_a_dying_thread_after_shutdown_still_runs() -> None:
    """Accepted before shutdown(), taken by a thread that dies as it takes it, after
    the stop signals are queued: no replacement would be started after shutdown, and
    the task waited behind the stops for threads that had left. _died starts one for
    the work, with a stop behind it; join() waits for it too."""
    pool = ThreadPool(1, "late")
    pool.submit(lambda: None).result(5)
    wait_for(lambda: pool._idle == 1)
    (worker,) = pool._threads
    _inject(worker)
    future = pool.submit(lambda: 42)
    pool.shutdown(wait=False)
    assert pool.join(5)
    assert future.result(timeout=0) == 42
    assert pool._late == 0


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_thread_killed_as_it_starts_is_replaced_and_its_task_runs() -> None:
    """A thread started for a task waits for the pool's lock (its starter holds it):
    an exception injected right after the start fires there, in the thread's setup,
    which is guarded like the rest of its life (it used to die unreplaced, still
    counted, and the pool of one ran nothing again)."""
    for _ in range(5):
        pool = ThreadPool(1, "starting")
        try:
            future = pool.submit(lambda: 7)
            _inject(pool._threads[-1])
            assert future.result(timeout=5) == 7
            assert pool.submit(lambda: 8).result(timeout=5) == 8
        finally:
            pool.shutdown()
            assert pool.join(5)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_dying_thread_that_cannot_be_replaced_leaves_the_counts_right(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """No replacement can be started (no more threads): the task the dying thread took
    is assigned a thread again, and the thread is not left counted as idle (a phantom
    idle thread took the next task's count while the one real thread was busy)."""
    pool = ThreadPool(2, "unreplaced")
    try:
        pool.submit(lambda: None).result(5)
        wait_for(lambda: pool._idle == 1 and pool.thread_count == 1)
        (worker,) = pool._threads
        start = threading.Thread.start

        def failing_start(self: threading.Thread) -> None:
            if threading.current_thread() is worker:
                raise RuntimeError("can't start new thread")
            start(self)

        monkeypatch.setattr(threading.Thread, "start", failing_start)
        _inject(worker)
        taken = pool.submit(lambda: "taken")  # the only thread takes it and dies
        worker.join(5)
        assert not worker.is_alive()
        monkeypatch.undo()
        # The task waits for a thread: the next submit starts one, which runs both.
        assert pool._idle == 0
        assert pool.thread_count == 0
        assert pool.submit(lambda: "next").result(timeout=5) == "next"
        assert taken.result(timeout=5) == "taken"
        hold = threading.Event()
        busy = pool.submit(hold.wait, 5)
        wait_for(lambda: pool._idle == 0)
        assert pool.submit(lambda: "room").result(timeout=5) == "room"  # a second thread
        hold.set()
        assert busy.result(timeout=5)
    finally:
        pool.shutdown()
        assert pool.join(5)
