"""Hostile tests of 9384fcd and ea88e32: ``ThreadPool`` counts given back by
``_take_nowait`` and ``drop_queued`` (``_free_one``), ``compensate(+1)`` spawning only for
unassigned work, a leaving thread leaving ``_threads`` in the block that decides it,
``shutdown(cancel_futures=True)`` cancelling (and notifying) what it drops
(``Droppable``), work moved to the queue after shutdown (``_Late``), ``join`` covering
every thread started; and ``Runtime``'s cache stores at ``stop()`` (refused after stop,
the stores bound for the caches the engine built waited for at most STORES_AT_STOP, then
dropped and counted, the others left to run).

A docstring starting "Found (since fixed in ea88e32)" records a bug this file found that
ea88e32 fixed (file:line as of 9384fcd); "Found (since fixed)", one found in ea88e32 and
fixed after it (file:line as of ea88e32). The others are attacks the code withstood,
kept because they drive the new paths. Every wait is bounded.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import random
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from constellation import Backends, ExecutionStatus
from constellation.actors._pool import ThreadPool
from constellation.core.errors import QueueFullError, ShuttingDownError
from constellation.spi import InMemoryCacheBackend
from constellation.spi._registry import register_backend, unregister_backend
from tests.faults import WAIT, GatedCache, Inc, all_ended, burst_runs_in_parallel, start_threads
from tests.waiting import reached

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from concurrent.futures import Future

    from constellation import Constellation
    from constellation.actors._runtime import Runtime

STORES = "constellation-cache-stores"


def _counts(pool: ThreadPool) -> str:
    return (f"{pool.name}: threads={pool.thread_count} max={pool.max_threads} "
            f"idle={pool._idle} unassigned={pool._unassigned} blocked={pool._blocked} "
            f"retiring={pool._retiring} queued={pool._queue.qsize()}")


def _count_out_of_turn(pool: ThreadPool) -> list[int]:
    """Count the tasks ``pool`` threads take out of turn (``_take_nowait``): ``[n]``."""
    taken = [0]
    lock = threading.Lock()
    original = pool._take_nowait

    def counting() -> Any:
        task = original()
        if task is not None:
            with lock:
                taken[0] += 1
        return task

    pool._take_nowait = counting  # type: ignore[method-assign]
    return taken


def _quiescent(pool: ThreadPool, timeout: float = WAIT) -> None:
    """Once nothing runs: nothing lent or queued, no sentinel pending, at most
    max_threads threads, and every thread counted idle (each waits on the queue and
    no queued item is left to assign it to)."""
    ok = reached(lambda: (pool._blocked == 0 and pool._retiring == 0
                         and pool._queue.qsize() == 0 and pool._unassigned == 0
                         and pool.thread_count <= pool.max_threads
                         and pool._idle == pool.thread_count), timeout)
    assert ok, _counts(pool)


def _threads_named(prefix: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(prefix)]


def _stop(pool: ThreadPool) -> None:
    pool.shutdown(wait=False)
    pool.join(WAIT)


class _SlowExitLock:
    """A pool lock; on release, a pool thread that has just left ``_threads`` pauses
    (as if preempted right after ``_leave``) before it goes on to exit."""

    def __init__(self, pool: ThreadPool, pause: float) -> None:
        self._lock = threading.Lock()
        self._pool = pool
        self._pause = pause

    def __enter__(self) -> bool:
        self._lock.acquire()
        return True

    def __exit__(self, *exc: object) -> None:
        self._lock.release()
        me = threading.current_thread()
        if me.name.startswith(self._pool.name + "-") and me not in self._pool._threads:
            time.sleep(self._pause)

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        self._lock.release()


# --- ThreadPool: counts under churn -------------------------------------------------------


def test_long_local_chains_under_churn_keep_every_count_exact() -> None:
    """Eight threads submit chains of 257..700 local tasks (each 256th lets a shared task
    in out of turn: ``_take_nowait`` gives its count back), some chains entering
    ``blocking()`` with a backlog, short tasks, and compensate(+1)/(-1) pairs, for a
    second. Then: every future done, every chain finished, tasks were taken out of turn,
    and the quiet pool counts each of its (<= max) threads idle with nothing unassigned
    -- a count off by one either way would show here -- and runs max_threads tasks that
    need each other at once, again and again."""
    pool = ThreadPool(3, "hostile-ps-chains")
    lock = threading.Lock()
    taken = _count_out_of_turn(pool)
    started, finished = [0], [0]
    futures: list[Future[Any]] = []
    errors: list[BaseException] = []
    stop = time.monotonic() + 1.0

    def chain(n: int, block: bool) -> None:
        if n == 0:
            with lock:
                finished[0] += 1
            return
        pool.schedule_local(lambda: chain(n - 1, block))
        if n % 97 == 0:
            pool.schedule_local(lambda: None)  # the slot is taken: into the backlog
            if block:
                with pool.blocking():  # the backlog goes to the shared queue
                    time.sleep(0.0005)

    def start_chain(n: int, block: bool) -> None:
        with lock:
            started[0] += 1
        chain(n, block)

    def churn(seed: int) -> None:
        rng = random.Random(seed)
        try:
            while time.monotonic() < stop:
                r = rng.random()
                f: Future[Any]
                if r < 0.3:
                    f = pool.submit(start_chain, rng.randint(257, 700), rng.random() < 0.5)
                elif r < 0.6:
                    f = pool.submit(time.sleep, rng.choice((0, 0, 0.0003)))
                elif r < 0.8:
                    k = rng.randint(1, 2)
                    for _ in range(k):
                        pool.compensate(1)
                    f = pool.submit(int)
                    time.sleep(rng.choice((0, 0.0005)))
                    for _ in range(k):
                        pool.compensate(-1)
                else:
                    time.sleep(0.0002)
                    continue
                with lock:
                    futures.append(f)
        except BaseException as exc:
            errors.append(exc)

    threads = start_threads(churn, 8, daemon=False)
    try:
        all_ended(threads, WAIT)
        assert not errors, errors
        _, pending = concurrent.futures.wait(futures, timeout=WAIT)
        assert not pending, f"{len(pending)} futures never ran: {_counts(pool)}"
        assert reached(lambda: finished[0] == started[0], WAIT), (started, finished)
        assert taken[0] > 0, "no task was taken out of turn: the attack missed its path"
        _quiescent(pool)
        for _ in range(3):
            burst_runs_in_parallel(pool, pool.max_threads)
            _quiescent(pool)
    finally:
        _stop(pool)


def _shutdowns_racing_submitters(seed: int) -> None:
    name = f"hostile-ps-stops-{seed}"
    pool = ThreadPool(3, name)
    lock = threading.Lock()
    futures: list[tuple[int, Future[None]]] = []
    ran: set[int] = set()
    go = threading.Event()
    rng = random.Random(seed)
    raise_for = {i for i in range(3000) if rng.random() < 0.3}

    def work(i: int) -> None:
        with lock:
            ran.add(i)
        if i % 5 == 0:
            time.sleep(0.0002)

    def callback(f: Future[None], *, i: int) -> None:
        if f.cancelled() and i in raise_for:
            raise SystemExit("from a done-callback")

    def submitter(s: int) -> None:
        r = random.Random(s)
        go.wait(WAIT)
        for j in range(500):
            i = s * 500 + j
            try:
                f = pool.submit(work, i)
            except RuntimeError:
                return
            f.add_done_callback(functools.partial(callback, i=i))
            with lock:
                futures.append((i, f))
            if r.random() < 0.1:
                pool.compensate(1)
                pool.compensate(-1)

    def stopper(k: int) -> None:
        go.wait(WAIT)
        time.sleep(0.001 * k)
        # A callback's SystemExit goes on up, once every future was dropped.
        with contextlib.suppress(SystemExit):
            pool.shutdown(wait=k % 2 == 0, cancel_futures=k % 3 != 0)

    workers = [threading.Thread(target=submitter, args=(s,)) for s in range(6)]
    workers += [threading.Thread(target=stopper, args=(k,)) for k in range(4)]
    for t in workers:
        t.start()
    go.set()
    for t in workers:
        t.join(WAIT)
    assert not any(t.is_alive() for t in workers)
    assert reached(lambda: all(f.done() for _, f in futures), WAIT), (
        f"{sum(not f.done() for _, f in futures)} futures neither ran nor were "
        f"cancelled: {_counts(pool)}")
    for i, f in futures:
        assert f.cancelled() != (i in ran), (i, f)
    assert pool.join(WAIT)
    assert reached(lambda: not _threads_named(name + "-"), WAIT)
    with pytest.raises(RuntimeError):
        pool.submit(int)


def test_concurrent_shutdowns_racing_submitters_leave_no_future_pending() -> None:
    """Six threads submit (and lend/return threads) while four call shutdown at once,
    with and without cancel_futures, waiting or not; done-callbacks of cancelled
    futures raise SystemExit now and then. Every future accepted ends (run or
    cancelled, never both), every pool thread exits, and submit() is refused after."""
    for seed in range(6):
        _shutdowns_racing_submitters(seed)


def test_drop_queued_racing_workers_on_a_live_pool_keeps_it_whole() -> None:
    """``drop_queued`` called over and over from another thread while work flows
    through a live pool: a dropped task never runs and its future is cancelled, a task
    not dropped runs once, the drops reported add up to the futures cancelled, and the
    counts given back leave a pool that counts its threads idle and runs in parallel."""
    pool = ThreadPool(3, "hostile-ps-live-drop")
    lock = threading.Lock()
    ran: list[int] = []
    futures: list[tuple[int, Future[None]]] = []
    dropped = [0]
    stop = threading.Event()

    def work(i: int) -> None:
        with lock:
            ran.append(i)

    def submitter(s: int) -> None:
        for j in range(1500):
            i = s * 1500 + j
            f = pool.submit(work, i)
            with lock:
                futures.append((i, f))
            if j % 100 == 0:
                pool.compensate(1)
                pool.compensate(-1)

    def dropper() -> None:
        while not stop.is_set():
            n = pool.drop_queued()
            with lock:
                dropped[0] += n
            time.sleep(0.0001)

    d = threading.Thread(target=dropper)
    subs = [threading.Thread(target=submitter, args=(s,)) for s in range(4)]
    try:
        d.start()
        for t in subs:
            t.start()
        for t in subs:
            t.join(WAIT)
        stop.set()
        d.join(WAIT)
        assert reached(lambda: all(f.done() for _, f in futures), WAIT), _counts(pool)
        done = set(ran)
        assert len(done) == len(ran), "a task ran twice"
        cancelled = sum(f.cancelled() for _, f in futures)
        assert all(f.cancelled() != (i in done) for i, f in futures)
        assert cancelled == dropped[0]
        assert 0 < cancelled < len(futures), "the drops never (or always) raced the workers"
        _quiescent(pool)
        burst_runs_in_parallel(pool, pool.max_threads)
        _quiescent(pool)
    finally:
        stop.set()
        _stop(pool)


def test_done_callbacks_that_raise_or_block_when_dropped() -> None:
    """The futures shutdown(cancel_futures=True) drops get done-callbacks that raise
    KeyboardInterrupt, block a while, submit to the stopped pool (RuntimeError) or call
    shutdown again: every dropped future is still cancelled and its other callbacks
    run, shutdown returns once the callbacks did (bounded) -- raising the
    KeyboardInterrupt then, as the user's Ctrl-C --, and the running task ends."""
    pool = ThreadPool(1, "hostile-ps-callbacks")
    hold = threading.Event()
    busy = pool.submit(hold.wait, WAIT)
    assert reached(busy.running, WAIT)
    seen: list[str] = []

    def interrupt(_: Future[Any]) -> None:
        seen.append("interrupt")
        raise KeyboardInterrupt

    def block(_: Future[Any]) -> None:
        seen.append("block")
        time.sleep(0.2)

    def resubmit(_: Future[Any]) -> None:
        seen.append("resubmit")
        pool.submit(int)  # RuntimeError: logged by the Future

    def again(_: Future[Any]) -> None:
        seen.append("again")
        pool.shutdown(wait=False, cancel_futures=True)

    queued = [pool.submit(int) for _ in range(5)]
    for f, cb in zip(queued, (interrupt, block, resubmit, again, block), strict=True):
        f.add_done_callback(cb)
    queued[0].add_done_callback(lambda _: seen.append("after-interrupt"))
    t0 = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):  # once every future was dropped
            pool.shutdown(wait=False, cancel_futures=True)
        took = time.monotonic() - t0
        assert all(f.cancelled() for f in queued)
        assert sorted(seen) == sorted(["interrupt", "block", "resubmit", "again", "block"])
        assert 0.4 <= took < 2.0, took
    finally:
        hold.set()
    assert busy.result(timeout=WAIT) is True
    assert pool.join(WAIT)


def test_shutdown_with_cancel_from_inside_a_task_returns_and_drops_the_rest() -> None:
    """A task calls shutdown(wait=True, cancel_futures=True) on its own pool: it does
    not join itself, the queued futures are cancelled, its own future completes and
    the pool's threads exit."""
    pool = ThreadPool(2, "hostile-ps-self")
    gate = threading.Event()

    def stopper() -> str:
        gate.wait(WAIT)
        pool.shutdown(wait=True, cancel_futures=True)  # joins the other thread
        return "stopped"

    def other() -> bool:  # busy until the pool is shut down: takes nothing queued
        return reached(lambda: pool._shutdown, WAIT)

    busy = pool.submit(other)
    mine = pool.submit(stopper)
    assert reached(lambda: busy.running() and mine.running(), WAIT)
    queued = [pool.submit(int) for _ in range(4)]
    gate.set()
    assert mine.result(timeout=WAIT) == "stopped"
    assert busy.result(timeout=WAIT) is True
    assert all(f.cancelled() for f in queued)
    assert pool.join(WAIT)
    assert reached(lambda: not _threads_named("hostile-ps-self-"), WAIT)


# --- ThreadPool: found (since fixed) ------------------------------------------------------


def test_a_second_shutdown_with_wait_waits_for_the_work() -> None:
    """Found (since fixed in ea88e32): ThreadPool.shutdown (actors/_pool.py:212-229)
    joins only the threads of the call that set _shutdown; a later shutdown(wait=True)
    (a `with pool:` after a shutdown(wait=False), a second thread stopping the pool)
    gets threads=[] and returns while queued and running work still runs, unlike
    ThreadPoolExecutor, whose every shutdown(wait=True) joins. Fix: when wait, join
    every live thread (self.join() minus the caller), not only the first call's
    snapshot."""
    pool = ThreadPool(1, "hostile-ps-twice")
    try:
        running = pool.submit(time.sleep, 0.3)
        queued = pool.submit(time.sleep, 0.1)
        pool.shutdown(wait=False)  # someone else stops it first ...
        pool.shutdown(wait=True)  # ... this caller relies on wait=True
        assert running.done(), "shutdown(wait=True) returned with a task running"
        assert queued.done(), "shutdown(wait=True) returned with a task queued"
    finally:
        pool.join(WAIT)


def test_futures_dropped_at_shutdown_are_seen_by_concurrent_futures_wait() -> None:
    """Found (since fixed in ea88e32): ThreadPool.submit (actors/_pool.py:188-205) gives
    Droppable on_drop=future.cancel: drop_queued (shutdown(cancel_futures=True)) leaves
    the future CANCELLED but never CANCELLED_AND_NOTIFIED, so concurrent.futures.wait()
    and as_completed() never count it done (wait(timeout=None) hangs for good; same
    upstream bug in ThreadPoolExecutor, python/cpython#87893 and #109934). Fix: on_drop
    = lambda: future.cancel() and future.set_running_or_notify_cancel() (the fix of
    python/cpython PR #134618)."""
    pool = ThreadPool(1, "hostile-ps-wait")
    hold = threading.Event()
    busy = pool.submit(hold.wait, WAIT)
    queued = pool.submit(int)
    try:
        assert reached(lambda: pool._queue.qsize() == 1, WAIT)
        pool.shutdown(wait=False, cancel_futures=True)
        assert queued.cancelled()
        hold.set()
        both: list[Future[Any]] = [busy, queued]
        done, _ = concurrent.futures.wait(both, timeout=1.0)
        assert queued in done, "a future cancelled by shutdown is 'not done' for wait()"
        it = concurrent.futures.as_completed([queued], timeout=1.0)
        assert next(it) is queued
    finally:
        hold.set()
        pool.join(WAIT)


def test_local_work_moved_to_the_queue_after_shutdown_still_runs() -> None:
    """Found (since fixed in ea88e32): ThreadPool._enqueue (actors/_pool.py:170-173),
    used by release_backlog (blocking(), a module call with options: _PoolCall) and
    rescue(), puts work on the shared queue even after shutdown(), i.e. behind the
    threads' _STOP sentinels: every thread takes its _STOP first and exits, and the
    task, accepted earlier by schedule_local, never runs and is never dropped (rescue()
    checks _shutdown without the lock: same race). Fix: once _shutdown, have
    release_backlog/rescue leave the backlog on its thread (which runs it before it
    reads the queue again), or count tasks enqueued after shutdown and let a thread that
    takes _STOP while such are queued put the _STOP back and run them first."""
    pool = ThreadPool(1, "hostile-ps-late")
    go = threading.Event()
    ran: list[str] = []

    def task() -> None:
        go.wait(WAIT)
        pool.schedule_local(lambda: ran.append("slot"))
        pool.schedule_local(lambda: ran.append("backlog"))  # accepted: runs here later
        with pool.blocking():  # a call that may block: its backlog goes to the queue
            pass

    f = pool.submit(task)
    try:
        assert reached(lambda: pool._idle == 0 and pool._queue.qsize() == 0, WAIT)
        pool.shutdown(wait=False)  # no cancel_futures: accepted work still runs
        go.set()
        f.result(timeout=WAIT)
        assert reached(lambda: len(ran) == 2, 1.0), (
            f"ran {ran}; queued={pool._queue.qsize()}, threads={pool.thread_count}")
    finally:
        go.set()
        pool.join(WAIT)


def test_join_returning_true_means_the_threads_have_exited() -> None:
    """Found (since fixed in ea88e32): ThreadPool.join (actors/_pool.py:267-275) joins
    list(self._threads), but a thread removes itself from _threads in _leave
    (actors/_pool.py:438-443) and only then returns: a join() called after that
    (Runtime.stop joins the store pool after shutdown(wait=False)) skips a thread that
    is still alive and returns True -- 'all exited' -- while it is not. Fix: keep the
    threads to join apart from _threads (a list of every thread started, or the snapshot
    shutdown() takes) and join those."""
    pool = ThreadPool(2, "hostile-ps-join")
    pool._lock = _SlowExitLock(pool, 0.5)  # type: ignore[assignment]
    burst_runs_in_parallel(pool, 2)
    threads = list(pool._threads)
    pool.shutdown(wait=False)
    assert reached(lambda: pool.thread_count == 0, WAIT)  # both took their _STOP
    assert pool.join(2.0)
    alive = [t.name for t in threads if t.is_alive()]
    for t in threads:
        t.join(WAIT)
    assert not alive, f"join() returned True with {alive} alive"


def test_an_eager_pool_counts_its_waiting_threads_idle() -> None:
    """Found (since fixed in ea88e32): ThreadPool(eager=True) (actors/_pool.py:107-109)
    starts max_threads threads without counting them idle, though no task is assigned to
    them: _idle stays 0 while they all wait, so with one thread lent (compensate(+1))
    the next task starts a thread although max_threads wait idle (and _idle never equals
    the waiting threads: the invariant 9384fcd relies on). Low impact: no engine pool is
    eager. Fix: self._idle += 1 for each thread the constructor starts."""
    pool = ThreadPool(2, "hostile-ps-eager", eager=True)
    try:
        time.sleep(0.05)  # both threads wait on the queue
        pool.compensate(1)  # a thread lent: the pool may run 3 meanwhile
        pool.submit(int).result(timeout=WAIT)  # two wait idle: no third is needed
        started = pool.thread_count
        pool.compensate(-1)
        assert started == 2, f"a thread started with two idle: {_counts(pool)}"
    finally:
        _stop(pool)


# --- ThreadPool: work moved to the queue after shutdown (ea88e32) ------------------------


def test_late_work_from_several_threads_runs_also_out_of_turn() -> None:
    """After shutdown, two threads move their backlogs to the queue (``blocking()``):
    that work goes behind the stop signals, marked late. A third thread then runs a
    local chain of 2,000 tasks: every 256th lets the shared queue in, which rotates the
    stops to the back and then takes late work out of turn. Every task runs exactly
    once, the threads all exit, and no late work stays counted."""
    pool = ThreadPool(3, "hostile-ps-late-many")
    lock = threading.Lock()
    ran: list[tuple[int, int]] = []
    taken = _count_out_of_turn(pool)
    go, released = threading.Event(), threading.Semaphore(0)
    k = 40

    def record(i: int, j: int) -> None:
        with lock:
            ran.append((i, j))

    def releaser(i: int) -> None:
        go.wait(WAIT)
        for j in range(k + 1):  # the first takes the slot, the others the backlog
            pool.schedule_local(functools.partial(record, i, j))
        with pool.blocking():  # a call that may block: the backlog goes to the queue
            pass
        released.release()
        time.sleep(0.2)  # this thread stays busy: the late work waits in the queue

    def chain(n: int) -> None:
        record(2, n)
        if n:
            pool.schedule_local(functools.partial(chain, n - 1))

    def chainer() -> None:
        go.wait(WAIT)
        for _ in range(2):
            assert released.acquire(timeout=WAIT)
        chain(2000)

    futures = [pool.submit(releaser, 0), pool.submit(releaser, 1), pool.submit(chainer)]
    try:
        assert reached(lambda: all(f.running() for f in futures), WAIT)
        pool.shutdown(wait=False)
        assert pool.rescue(0.0) == 0  # the rescuer leaves a stopped pool alone
        go.set()
        for f in futures:
            f.result(timeout=WAIT)
        total = 2 * (k + 1) + 2001
        assert reached(lambda: len(ran) == total, WAIT), (len(ran), total, pool._late)
        assert len(set(ran)) == total, "a task ran twice"
        assert pool.join(WAIT)
        assert pool._late == 0
        assert pool._queue.qsize() == 0
        assert taken[0] > 0, "no late work was taken out of turn: the attack missed"
    finally:
        go.set()
        pool.join(WAIT)


def test_late_work_dropped_or_kept_by_drop_queued() -> None:
    """Late work (moved to the queue after shutdown) and ``drop_queued(keep=...)``: the
    late tasks kept run before the threads stop, the others are dropped (``on_drop``
    once each, never run), the late count falls to 0 and every thread exits. The task in
    the releaser's slot is late work too: ``blocking()`` queues it (fde3d6e), so it does
    not wait behind the blocking wait."""
    from constellation.actors._pool import Droppable

    pool = ThreadPool(2, "hostile-ps-late-drop")
    lock = threading.Lock()
    ran: list[int] = []
    dropped: list[int] = []
    go, hold = threading.Event(), threading.Event()
    k = 30

    def record(j: int) -> None:
        with lock:
            ran.append(j)

    def on_drop(j: int) -> None:
        with lock:
            dropped.append(j)

    def releaser() -> None:
        go.wait(WAIT)
        for j in range(k + 1):
            pool.schedule_local(Droppable(functools.partial(record, j),
                                          functools.partial(on_drop, j)))
        with pool.blocking():
            pass
        hold.wait(WAIT)  # both threads busy: the late work stays queued

    futures: list[Future[Any]] = [pool.submit(releaser), pool.submit(hold.wait, WAIT)]
    try:
        assert reached(lambda: all(f.running() for f in futures), WAIT)
        pool.shutdown(wait=False)
        go.set()
        assert reached(lambda: pool._late == k + 1, WAIT), pool._late  # slot + backlog

        def keep(task: Any) -> bool:
            return isinstance(task, Droppable) and task.task.args[0] % 3 == 0  # type: ignore[attr-defined]

        n = pool.drop_queued(keep=keep)
        kept = [j for j in range(k + 1) if j % 3 == 0]
        assert n == k + 1 - len(kept)
        assert pool._late == len(kept)
        hold.set()
        for f in futures:
            f.result(timeout=WAIT)
        assert pool.join(WAIT)
        assert sorted(ran) == kept  # the slot's task (0) among the kept ones
        assert sorted(dropped) == [j for j in range(1, k + 1) if j % 3 != 0]
        assert pool._late == 0
    finally:
        go.set()
        hold.set()
        pool.join(WAIT)


# --- ThreadPool: found, open --------------------------------------------------------------


def test_two_pool_threads_shutting_the_pool_down_do_not_deadlock() -> None:
    """Found (since fixed): ThreadPool.shutdown (actors/_pool.py:248-249, ea88e32:
    'every call that waits ... joins') now calls self.join()
    (actors/_pool.py:311-321), which joins every thread started except the caller,
    with no timeout. Two pool threads that each call shutdown() (wait=True, the
    default) -- two tasks, or two done-callbacks of submit() futures, that stop the
    pool on an error -- each join the other: both hang for good (before ea88e32 the
    second call returned at once). Fixed: keep a set of the threads inside
    shutdown()/join() (under _lock) and have join() skip those (a thread waiting for
    the pool runs no more work), or let a pool thread's shutdown(wait=True) not wait
    for its siblings."""
    """(Bounded here: join() is given a 1 s timeout, so the threads come free after a
    second instead of never; the check wants both calls back well before that.)"""
    pool = ThreadPool(2, "hostile-ps-mutual")
    original = pool.join

    def bounded_join(timeout: float | None = None) -> bool:
        return original(1.0 if timeout is None else timeout)

    pool.join = bounded_join  # type: ignore[method-assign]
    barrier = threading.Barrier(2, timeout=WAIT)

    def stop_on_error() -> str:
        barrier.wait()  # both tasks hit the error at once
        pool.shutdown()  # wait=True: the default, as `with pool:` does
        return "stopped"

    futures = [pool.submit(stop_on_error) for _ in range(2)]
    try:
        assert reached(lambda: all(f.done() for f in futures), 0.7), (
            "two pool threads calling shutdown() wait for each other: "
            f"{[f._state for f in futures]}")
    finally:
        assert original(WAIT)


def test_a_dropped_future_whose_callback_raises_is_still_seen_done() -> None:
    """Found (since fixed): _cancel_dropped (actors/_pool.py:54-58, ea88e32) calls
    future.cancel(), which runs the done-callbacks, and only then
    set_running_or_notify_cancel(): a callback raising a BaseException
    (KeyboardInterrupt -- a Ctrl-C landing in the callback that
    shutdown(cancel_futures=True) runs on the caller's thread --, SystemExit)
    escapes Future._invoke_callbacks (it catches Exception only), so the notify
    never happens: the future stays CANCELLED, never CANCELLED_AND_NOTIFIED, and
    concurrent.futures.wait()/as_completed() never count it done (wait(timeout=None)
    hangs); drop_queued (actors/_pool.py:298-299) then logs and swallows the
    KeyboardInterrupt. Fixed: notify in a finally (try: future.cancel() finally: if
    future._state == CANCELLED: future.set_running_or_notify_cancel()), and re-raise
    a non-Exception from drop_queued once every task has been dropped."""
    pool = ThreadPool(1, "hostile-ps-notify")
    hold = threading.Event()
    busy = pool.submit(hold.wait, WAIT)
    try:
        assert reached(busy.running, WAIT)
        queued = [pool.submit(int) for _ in range(2)]

        def interrupted(_: Future[int]) -> None:
            raise KeyboardInterrupt

        queued[0].add_done_callback(interrupted)
        with pytest.raises(KeyboardInterrupt):  # the Ctrl-C goes on up, after the drop
            pool.shutdown(wait=False, cancel_futures=True)
        assert all(f.cancelled() for f in queued)
        _, pending = concurrent.futures.wait(queued, timeout=1.0)
        assert not pending, f"wait() does not see {len(pending)} cancelled future(s)"
    finally:
        hold.set()
        pool.join(WAIT)


# --- the store threads at stop ------------------------------------------------------------


class _Owned(InMemoryCacheBackend):
    """A backend with its own set (stored on the store threads) that records set()
    calls made after close() and how often it was closed; set may block on ``gate``."""

    def __init__(self, *, block: bool = False) -> None:
        super().__init__()
        self.block = block
        self.gate = threading.Event()
        self.closed = False
        self.closes = 0
        self.after_close: list[str] = []
        self.entered = 0
        self._count = threading.Lock()

    def set(self, key: str, value: Any, ttl: float) -> None:
        with self._count:
            self.entered += 1
            if self.closed:
                self.after_close.append(key)
        if self.block:
            self.gate.wait(WAIT)
        super().set(key, value, ttl)

    def close(self) -> None:
        with self._count:
            self.closed = True
            self.closes += 1


@pytest.fixture
def owned() -> Iterator[tuple[str, list[_Owned]]]:
    """A cache backend registered for ``cache_backend:`` (the engine builds it, owns it
    and closes it at stop); the instances made."""
    name = "hostile-ps-owned"
    made: list[_Owned] = []

    def factory() -> _Owned:
        cache = _Owned()
        made.append(cache)
        return cache

    register_backend("cache", name, factory, replace=True)
    try:
        yield name, made
    finally:
        for cache in made:
            cache.gate.set()
        unregister_backend("cache", name)


@pytest.fixture
def owned_blocking(owned: tuple[str, list[_Owned]]) -> tuple[str, list[_Owned]]:
    """Like ``owned``, whose set() blocks until its gate is set (at most WAIT)."""
    name, made = owned

    def factory() -> _Owned:
        cache = _Owned(block=True)
        made.append(cache)
        return cache

    register_backend("cache", name, factory, replace=True)
    return name, made


def _pipeline(name: str) -> str:
    return f'in x: Int\na = Inc(x) with cache: 1min, cache_backend: "{name}"\nout a'


@pytest.mark.parametrize("bound", [True, False], ids=["bound-to-owned", "unbound"])
def test_direct_stores_racing_shutdowns_from_several_threads_add_up(
        engine_factory: Any, owned: tuple[str, list[_Owned]], bound: bool) -> None:
    """Six threads store into an owned cache as fast as they can while three threads
    shut the engine down at once: every store is made or counted dropped (none lost,
    none both), pending_stores falls back to 0, the cache is closed once, and every
    shutdown call gives the same answer. Stores that name their cache (as NodeActor
    does) are bound to it: none reaches set() after the engine closed it. Stores that
    name another (a user's backend) are the user's business: they run on after the
    stop."""
    name, made = owned
    engine: Constellation = engine_factory([Inc])
    runtime: Runtime = engine._runtime
    cache = runtime.cache_backend(name)
    assert isinstance(cache, _Owned)
    assert cache in runtime._owned_caches
    attempts = [0] * 6
    stop = threading.Event()
    named = cache if bound else _Owned()  # not the engine's: it does not close it

    def storer(i: int) -> None:
        n = 0
        while not stop.is_set() and n < 20_000:
            put = functools.partial(cache.set, f"{i}-{n}", 1, 60.0)
            runtime.store_in_cache(put, "hostile", named)
            n += 1
            if n % 64 == 0:
                time.sleep(0.0002)
        attempts[i] = n

    answers: list[bool] = []
    storers = [threading.Thread(target=storer, args=(i,)) for i in range(6)]
    stoppers = [threading.Thread(target=lambda: answers.append(engine.shutdown(5)))
                for _ in range(3)]
    try:
        for t in storers:
            t.start()
        assert reached(lambda: cache.entered > 200, WAIT)
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join(WAIT + 20)
        time.sleep(0.02)  # stores refused after the stop
    finally:
        stop.set()
        for t in storers:
            t.join(WAIT)
    assert answers == [True, True, True]
    assert reached(lambda: runtime.pending_stores == 0, WAIT), runtime.pending_stores
    assert runtime._pending_owned == 0
    assert cache.entered + runtime.stores_dropped == sum(attempts), (
        cache.entered, runtime.stores_dropped, sum(attempts))
    assert runtime.stores_dropped > 0, "no store raced the stop: the attack missed"
    assert engine.health()["runtime"]["cache_stores_dropped"] == runtime.stores_dropped
    if bound:
        assert cache.after_close == [], f"{len(cache.after_close)} set() after close()"
    assert cache.closes == 1
    assert made == [cache]


def test_executions_racing_shutdown_store_every_completed_result(
        engine_factory: Any, owned: tuple[str, list[_Owned]]) -> None:
    """Executions submitted on an owned cache while the engine shuts down: each one that
    completed had its result stored (before the cache was closed), nothing is counted
    dropped, and the submitter is refused with ShuttingDownError."""
    name, made = owned
    engine: Constellation = engine_factory([Inc])
    pipeline = engine.compile(_pipeline(name))
    handles: list[Any] = []
    refused: list[BaseException] = []
    gate = threading.Event()

    def submitter() -> None:
        for i in range(5000):
            try:
                handles.append(engine.submit(pipeline, {"x": i}, timeout=WAIT))
            except QueueFullError:
                time.sleep(0.001)
            except ShuttingDownError as exc:
                refused.append(exc)
                return
            if i == 50:
                gate.set()
            time.sleep(0.0002)

    t = threading.Thread(target=submitter)
    t.start()
    try:
        assert gate.wait(WAIT)
        assert engine.shutdown(drain_timeout=WAIT)
    finally:
        t.join(WAIT)
    assert refused, "the submitter never met the shutdown"
    results = [h.result(timeout=WAIT) for h in handles]
    completed = sum(r.status is ExecutionStatus.COMPLETED for r in results)
    assert completed >= 50
    (cache,) = made
    runtime = engine._runtime
    assert reached(lambda: runtime.pending_stores == 0, WAIT)
    assert cache.stats().entries == completed
    assert runtime.stores_dropped == 0
    assert cache.after_close == []
    assert cache.closes == 1


def test_shutdowns_with_stores_stuck_on_an_owned_cache_are_bounded_and_counted(
        engine_factory: Any, owned_blocking: tuple[str, list[_Owned]]) -> None:
    """Two stores hang in an owned cache's set(), four wait; a thread waits for the
    stores; three threads shut down at once. All return within STORES_AT_STOP plus
    slack with the same answer; the four are dropped and counted, the two running are
    still pending; once set() answers, pending_stores is 0, the waiter wakes with
    True, and the store threads exit."""
    name, made = owned_blocking
    engine: Constellation = engine_factory([Inc])
    runtime = engine._runtime
    pipeline = engine.compile(_pipeline(name))
    for i in range(6):
        assert engine.run(pipeline, {"x": i}, timeout=WAIT).status \
            is ExecutionStatus.COMPLETED
    (cache,) = made
    assert reached(lambda: cache.entered == 2, WAIT)
    assert runtime.pending_stores == 6
    assert runtime._stores_pool is not None
    store_threads = list(runtime._stores_pool._threads)
    waited: list[bool] = []
    waiter = threading.Thread(target=lambda: waited.append(engine.wait_for_cache_stores(WAIT)))
    waiter.start()
    answers: list[tuple[bool, float]] = []

    def stopper() -> None:
        t0 = time.monotonic()
        answers.append((engine.shutdown(drain_timeout=5), time.monotonic() - t0))

    stoppers = [threading.Thread(target=stopper) for _ in range(3)]
    try:
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join(WAIT + 20)
        assert [a for a, _ in answers] == [True, True, True]
        assert max(s for _, s in answers) < 4.0, answers
        assert runtime.stores_dropped == 4
        assert runtime.pending_stores == 2
        assert engine.health()["runtime"]["cache_stores_dropped"] == 4
        assert cache.closes == 1
        assert cache.entered == 2  # the dropped ones never reached set()
    finally:
        cache.gate.set()
    waiter.join(WAIT)
    assert waited == [True]
    assert runtime.pending_stores == 0
    assert reached(lambda: not any(t.is_alive() for t in store_threads), WAIT)


def test_a_store_raising_a_base_exception_is_counted_done(engine_factory: Any) -> None:
    """A store (put) that raises KeyboardInterrupt or SystemExit on a store thread --
    put must not raise, this one does: pending_stores still falls to 0, nothing is
    counted dropped, the store threads survive and make the next stores."""
    engine: Constellation = engine_factory([Inc])
    runtime = engine._runtime
    made: list[int] = []
    user = _Owned()  # a backend of its own set: stored on the store threads

    def raising(exc: type[BaseException]) -> Callable[[], None]:
        def put() -> None:
            raise exc("from put")
        return put

    for i in range(6):
        runtime.store_in_cache(raising(KeyboardInterrupt if i % 2 else SystemExit), "m",
                               user)
    assert reached(lambda: runtime.pending_stores == 0, WAIT), runtime.pending_stores
    for i in range(6):
        runtime.store_in_cache(functools.partial(made.append, i), "m", user)
    assert runtime.wait_for_stores(WAIT)
    assert sorted(made) == list(range(6))
    assert runtime.stores_dropped == 0
    assert runtime._stores_pool is not None
    assert 1 <= runtime._stores_pool.thread_count <= 2


def test_stores_after_stop_are_refused_counted_and_make_no_threads(
        engine_factory: Any) -> None:
    """Stores arriving after the engine stopped (a straggler's turn) are not made,
    counted dropped, leave pending_stores at 0, and no store pool is made for them."""
    before = set(_threads_named(STORES))
    engine: Constellation = engine_factory([Inc])
    runtime = engine._runtime
    assert engine.shutdown(drain_timeout=5)
    made: list[int] = []
    for i in range(3):
        runtime.store_in_cache(functools.partial(made.append, i), "m", _Owned())
    assert made == []
    assert runtime.stores_dropped == 3
    assert runtime.pending_stores == 0
    assert runtime._stores_pool is None
    assert runtime.wait_for_stores(0.1)
    assert set(_threads_named(STORES)) <= before


def test_stores_stuck_on_both_kinds_of_cache_at_stop(
        engine_factory: Any, owned_blocking: tuple[str, list[_Owned]]) -> None:
    """The two store threads hang, one in an owned cache's set(), one in the user's;
    three stores of each kind wait. At stop the owned ones get STORES_AT_STOP, then the
    three queued are dropped (counted), while the user's three stay queued (kept as late
    work) and run once the user's cache answers; pending_stores ends at 0 and the
    store threads exit."""
    name, made = owned_blocking
    user = GatedCache(hang_set=True)
    engine: Constellation = engine_factory([Inc], backends=Backends(cache=user))
    runtime = engine._runtime
    to_owned = engine.compile(_pipeline(name))
    to_user = engine.compile("in x: Int\na = Inc(x) with cache: 1min\nout a")
    try:
        assert engine.run(to_owned, {"x": 0}, timeout=WAIT).status \
            is ExecutionStatus.COMPLETED
        (cache,) = made
        assert reached(lambda: cache.entered == 1, WAIT)
        assert engine.run(to_user, {"x": 0}, timeout=WAIT).status \
            is ExecutionStatus.COMPLETED
        assert reached(lambda: len(user.storing) == 1, WAIT)
        for i in range(1, 4):
            for pipeline in (to_owned, to_user):
                assert engine.run(pipeline, {"x": i}, timeout=WAIT).status \
                    is ExecutionStatus.COMPLETED
        assert runtime.pending_stores == 8
        assert runtime._pending_owned == 4
        assert runtime._stores_pool is not None
        store_threads = list(runtime._stores_pool._threads)
        t0 = time.monotonic()
        assert engine.shutdown(drain_timeout=5)
        took = time.monotonic() - t0
        assert 1.5 < took < 4.0, took  # STORES_AT_STOP for the owned ones, no more
        assert runtime.stores_dropped == 3
        assert runtime._pending_owned == 1  # the one still in set()
        assert cache.closes == 1
    finally:
        user.gate.set()
        for c in made:
            c.gate.set()
    assert reached(lambda: runtime.pending_stores == 0, WAIT), runtime.pending_stores
    assert reached(lambda: user.stats().entries == 4, WAIT), user.stats().entries
    assert cache.entered == 1  # the dropped ones never reached set()
    assert runtime.stores_dropped == 3
    assert reached(lambda: not any(t.is_alive() for t in store_threads), WAIT)


# --- the store threads at stop: found (since fixed) ---------------------------------------


@pytest.mark.parametrize("exc", [KeyboardInterrupt, SystemExit])
def test_an_owned_cache_whose_close_raises_a_base_exception_leaks_no_thread(
        engine_factory: Any, exc: type[BaseException]) -> None:
    """Found (since fixed in ea88e32): Runtime.stop (actors/_runtime.py:446-454) closes
    the owned caches with `except Exception`: a close() raising
    KeyboardInterrupt/SystemExit (BaseException) leaves stop() before timer.stop(),
    async_runner.shutdown() and the dispatcher, worker, io and callbacks pools'
    shutdown: their threads run on for good after engine.shutdown() returned
    (re-raising) and the engine says STOPPED (Constellation._drain_and_stop also catches
    only Exception). Fix: close each cache in try/except BaseException (log it, remember
    the first), finish the stop, then re-raise it; or put the rest of stop() in a
    finally."""
    name = f"hostile-ps-close-{exc.__name__}"

    class Raising(InMemoryCacheBackend):
        def set(self, key: str, value: Any, ttl: float) -> None:
            super().set(key, value, ttl)

        def close(self) -> None:
            raise exc("from close")

    register_backend("cache", name, Raising, replace=True)
    engine: Constellation = engine_factory([Inc])
    runtime = engine._runtime
    try:
        r = engine.run(_pipeline(name), {"x": 1}, timeout=WAIT)
        assert r.status is ExecutionStatus.COMPLETED
        assert engine.wait_for_cache_stores(WAIT)
        timer = runtime.timer._thread
        threads = [*runtime.dispatcher._threads, *runtime.workers._threads,
                   *([] if timer is None else [timer])]
        assert threads
        raised: list[BaseException] = []
        try:
            engine.shutdown(drain_timeout=5)
        except BaseException as e:  # a KeyboardInterrupt may go on up: that is fine
            raised.append(e)

        def alive() -> list[str]:
            return [t.name for t in threads if t.is_alive()]

        assert reached(lambda: not alive(), 1.5), (
            f"after shutdown() ({raised}) still running: {alive()}")
        assert [type(e) for e in raised] == [exc]  # the interrupt still goes on up
    finally:
        unregister_backend("cache", name)
        runtime.timer.stop()
        runtime.dispatcher.shutdown(wait=False)
        runtime.workers.shutdown(wait=False)
        runtime.dispatcher.join(WAIT)
        runtime.workers.join(WAIT)


def test_stores_for_a_users_cache_are_not_dropped_because_another_is_owned(
        engine_factory: Any, owned: tuple[str, list[_Owned]]) -> None:
    """Found (since fixed in ea88e32): Runtime.stop (actors/_runtime.py:436-444) joins
    the store pool and then drop_queued()s it whenever the engine owns any cache
    (self._owned_caches), dropping the queued stores of every backend -- also those of a
    cache the user passed in Backends (say their Redis), which the engine never closes
    and whose stores run to the end when the engine owns none; shutdown also waits up to
    2 s for them. A cached result is lost just because some node used `cache_backend:`.
    Fix: give the drop a predicate (drop_queued(keep=...)) or one store pool per owned
    cache, so that only stores bound for the caches about to be closed are waited for
    and dropped; the others run on as before."""
    name, made = owned
    user = GatedCache(hang_set=True)  # the user's own backend: slow right now
    engine: Constellation = engine_factory([Inc], backends=Backends(cache=user))
    runtime = engine._runtime
    try:
        r = engine.run(_pipeline(name), {"x": 100}, timeout=WAIT)  # an owned cache
        assert r.status is ExecutionStatus.COMPLETED
        assert reached(lambda: bool(made) and made[0].entered == 1, WAIT)
        cached = engine.compile("in x: Int\na = Inc(x) with cache: 1min\nout a")
        for i in range(6):
            assert engine.run(cached, {"x": i}, timeout=WAIT).status \
                is ExecutionStatus.COMPLETED
        assert reached(lambda: len(user.storing) == 2, WAIT)
        t0 = time.monotonic()
        engine.shutdown(drain_timeout=5)
        took = time.monotonic() - t0
    finally:
        user.gate.set()
    assert took < 1.5, f"shutdown waited {took:.1f} s for stores it does not have to wait for"
    assert reached(lambda: runtime.pending_stores == 0, WAIT)
    assert reached(lambda: user.stats().entries == 6, 1.0), (
        f"{user.stats().entries} of 6 results stored in the user's cache, "
        f"{runtime.stores_dropped} dropped")
    assert runtime.stores_dropped == 0


# --- the owned caches: found, open ---------------------------------------------------------


def test_every_cache_backend_the_engine_builds_is_closed(engine_factory: Any) -> None:
    """Found (since fixed, older than 9384fcd): Runtime.cache_backend
    (actors/_runtime.py:354-360) builds a registry backend outside the lock and
    keeps the first one stored (named_caches.setdefault): two threads compiling
    pipelines with the same `cache_backend:` at once both build one, and the loser
    -- say a Redis client with its connection pool -- is neither kept nor in
    _owned_caches, so stop() never closes it. Fixed: close the backend that lost the
    race (if it has close()) right there, or build under a per-name lock so that
    only one is built."""
    name = "hostile-ps-twice-built"
    made: list[_Owned] = []
    barrier = threading.Barrier(2, timeout=1.0)

    def factory() -> _Owned:
        cache = _Owned()
        made.append(cache)
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait()  # both callers are building one at once
        return cache

    register_backend("cache", name, factory, replace=True)
    try:
        engine: Constellation = engine_factory([Inc])
        runtime = engine._runtime
        got: list[Any] = []
        threads = [threading.Thread(target=lambda: got.append(runtime.cache_backend(name)))
                   for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT)
        assert len(got) == 2
        assert got[0] is got[1]  # one backend in use
        assert engine.shutdown(drain_timeout=5)
        assert [c.closes for c in made] == [1] * len(made), (
            f"{sum(c.closes == 0 for c in made)} of {len(made)} built backends never closed")
    finally:
        unregister_backend("cache", name)
