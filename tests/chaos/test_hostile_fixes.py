"""Hostile tests of the four fixes of 0e904cc: ``Borrowed`` states (start/give_up/done),
``ThreadPool.compensate(-1)`` retiring idle surplus threads with ``_RETIRE`` sentinels,
cache stores on the engine's own store threads (``Runtime.store_in_cache``, bounded by
MAX_PENDING_STORES) and ``lookup_secret`` catching BaseException.

A test whose docstring starts "Found (since fixed)" records a bug found and fixed (where
and how); the others are attacks the fixes withstood, kept because they drive the new
paths. Interleavings that need an exact moment get it by wrapping the pool's lock or
``compensate``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import random
import sys
import threading
import time
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any

import pytest

from constellation import Backends, ExecutionStatus, SchedulerConfig, module
from constellation.actors._pool import Borrowed, ThreadPool
from constellation.spi import InMemoryCacheBackend
from constellation.spi._registry import register_backend, unregister_backend
from tests.faults import WAIT, GatedCache, Inc, all_ended, burst_runs_in_parallel, start_threads
from tests.waiting import reached, wait_for

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType

CACHED = "in x: Int\na = Inc(x) with cache: 1min\nout a"
PLAIN = "in x: Int\na = Inc(x)\nout a"
STORES = "constellation-cache-stores"


def _settled(pool: ThreadPool, timeout: float = WAIT) -> None:
    """Nothing lent, no sentinel pending, nothing queued, no more threads than max."""
    deadline = time.monotonic() + timeout
    while (pool._blocked != 0 or pool._retiring != 0 or pool._queue.qsize()
           or pool.thread_count > pool.max_threads):
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{pool.name}: blocked={pool._blocked} retiring={pool._retiring} "
                f"threads={pool.thread_count} max={pool.max_threads} idle={pool._idle} "
                f"unassigned={pool._unassigned} queued={pool._queue.qsize()}")
        time.sleep(0.002)


def _spawn_idle(pool: ThreadPool, n: int) -> None:
    """Make the (non-eager) pool start ``n`` threads and leave them idle."""
    burst_runs_in_parallel(pool, n)
    wait_for(lambda: pool._idle == n == pool.thread_count, timeout=WAIT)


def _store_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(STORES)]


class _HookLock:
    """A pool lock that calls ``hook(frame)`` before each acquisition in a ``with``."""

    def __init__(self, hook: Callable[[FrameType], None]) -> None:
        self._lock = threading.Lock()
        self.hook = hook

    def __enter__(self) -> bool:
        self.hook(sys._getframe(1))
        self._lock.acquire()
        return True

    def __exit__(self, *exc: object) -> None:
        self._lock.release()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        self._lock.release()


def _leave_line() -> int | None:
    """The line of ``with self._lock:`` in ThreadPool._worker that removes a leaving
    thread from ``_threads`` (None once the code no longer has that shape)."""
    lines, start = inspect.getsourcelines(ThreadPool._worker)
    for i, line in enumerate(lines):
        if "self._threads.remove(" in line and i > 0 and "with self._lock" in lines[i - 1]:
            return start + i - 1
    return None


# --- ThreadPool: compensate(-1), _RETIRE, leaving threads --------------------------------


def test_a_task_submitted_while_surplus_threads_leave_still_gets_a_thread() -> None:
    """Found (since fixed): a thread that decided to leave (ThreadPool._worker,
    actors/_pool.py: the `break` after a task, or after a _RETIRE) releases the lock
    and only later, under a second `with self._lock`, removes itself from _threads.
    In that window len(self._threads) still counts it: a second surplus check passes
    too (two threads leave for one surplus), and _assign() sees the pool full and
    queues a new task unassigned instead of starting a thread. Here (max_threads=2,
    one lent thread returned) two finishing threads both leave and a task submitted
    meanwhile waits behind the one remaining busy thread, although the pool runs 1
    of its 2 threads. Fixed: remove the thread from _threads/_states in the same
    locked block that decides it leaves."""
    leave_line = _leave_line()
    leavers: list[str] = []
    let_go = threading.Event()

    def hook(frame: FrameType) -> None:
        if frame.f_code is ThreadPool._worker.__code__ and frame.f_lineno == leave_line:
            leavers.append(threading.current_thread().name)
            let_go.wait(WAIT)

    pool = ThreadPool(2, "hostile-window")
    pool._lock = _HookLock(hook)  # type: ignore[assignment]
    hold_a, hold_b, hold_c = threading.Event(), threading.Event(), threading.Event()
    running: list[str] = []
    try:
        for ev in (hold_a, hold_b):
            pool.submit(lambda ev=ev: (running.append("x"), ev.wait(WAIT)))
        wait_for(lambda: len(running) == 2, timeout=WAIT)
        pool.compensate(1)  # one thread lent (say, a given-up lookup)
        pool.submit(lambda: (running.append("c"), hold_c.wait(WAIT)))
        wait_for(lambda: len(running) == 3 and pool.thread_count == 3, timeout=WAIT)
        pool.compensate(-1)  # it came back: one thread too many, none idle
        hold_c.set()  # its thread is the surplus: it leaves
        assert reached(lambda: len(leavers) == 1, 1.0) or leave_line is None
        hold_a.set()  # a second thread finishes while the first has not left yet
        reached(lambda: len(leavers) == 2, 1.0)
        ran = threading.Event()
        pool.submit(ran.set)
        let_go.set()
        # B still runs; the pool has room for a second thread: the task must run now.
        assert ran.wait(1.0), (
            f"the task waits: threads={pool.thread_count} idle={pool._idle} "
            f"unassigned={pool._unassigned} leavers={leavers}")
    finally:
        let_go.set()
        for ev in (hold_a, hold_b, hold_c):
            ev.set()
        pool.shutdown(wait=False)
        pool.join(WAIT)


def test_work_taken_out_of_turn_does_not_keep_surplus_threads() -> None:
    """Found (since fixed): ThreadPool._take_nowait (actors/_pool.py), used by a
    thread after _SLOT_RUN_LIMIT=256 local tasks, takes a queued task without
    touching the counts: a task queued while every thread was busy stays counted in
    _unassigned after it ran. Each such phantom later makes a finishing thread skip
    `_idle += 1`, so the pool counts idle threads as busy: compensate(+1) then
    _assign start a thread while one waits idle, and compensate(-1) -- the 0e904cc
    fix -- sends no _RETIRE (it retires at most _idle): the surplus stays for good,
    the very bug the fix closed. In an engine any worker thread running a long chain
    of local turns under load does this (a churn of 8 threads with such chains left
    threads=8, max=4, idle=0, _unassigned=186, queue empty). A second source of the
    same drift: compensate(+1) spawns when qsize() > 0 and _idle == 0 even if every
    queued item (a task a woken thread is about to take, a _RETIRE) already has a
    thread, and decrements nothing then (a churn without chains: threads=11, max=4,
    idle=0, _unassigned=6). Fixed: in _take_nowait, under the lock, decrement
    _unassigned if > 0, else give back the _idle the enqueuer took for that task; in
    compensate(+1) spawn only while _unassigned > 0."""
    pool = ThreadPool(1, "hostile-out-of-turn")
    go = threading.Event()
    chain_done = threading.Event()
    out_of_turn: list[int] = []

    def chain(n: int) -> None:
        if n == 1000:
            go.wait(WAIT)  # the others are queued while the pool's one thread is busy
        if n:
            pool.schedule_local(lambda: chain(n - 1))
        else:
            chain_done.set()

    try:
        pool.submit(chain, 1000)
        wait_for(lambda: pool.thread_count == 1 and pool._idle == 0, timeout=WAIT)
        for i in range(3):
            pool.submit(out_of_turn.append, i)  # taken out of turn, every 256 tasks
        go.set()
        assert chain_done.wait(WAIT)
        wait_for(lambda: len(out_of_turn) == 3 and pool._queue.qsize() == 0,
                 timeout=WAIT)
        time.sleep(0.05)  # the thread is back waiting on the queue (idle)
        # A lent thread: the pool may run one more meanwhile, then it comes back.
        pool.compensate(1)
        pool.submit(int).result(timeout=WAIT)  # on a second thread: none counted idle
        time.sleep(0.05)  # both threads wait on the queue
        pool.compensate(-1)  # one too many, idle: it must be told to retire
        _settled(pool, timeout=1.0)
    finally:
        go.set()
        pool.shutdown(wait=False)
        pool.join(WAIT)


def test_retirement_churn_from_many_threads_leaves_a_consistent_pool() -> None:
    """Eight threads lend and return threads (compensate +1/-1) and submit work for a
    while: afterwards nothing is lent, no sentinel is pending, nothing is queued, and
    a burst of max_threads tasks that need each other gets max_threads threads at
    once, again and again: never too few threads, and no surplus thread stays (it did
    while idle threads could be counted busy: see
    test_work_taken_out_of_turn_does_not_keep_surplus_threads)."""
    pool = ThreadPool(4, "hostile-churn")
    errors: list[BaseException] = []
    stop = time.monotonic() + 1.5
    ran = [0]
    lock = threading.Lock()

    def tick() -> None:
        with lock:
            ran[0] += 1

    def churn(seed: int) -> None:
        rng = random.Random(seed)
        try:
            while time.monotonic() < stop:
                k = rng.randint(1, 3)
                for _ in range(k):
                    pool.compensate(1)
                for _ in range(rng.randint(0, 6)):
                    pool.submit(time.sleep, rng.choice((0, 0, 0.0005)))
                if rng.random() < 0.2:
                    pool.submit(tick)
                time.sleep(rng.choice((0, 0.0002, 0.001)))
                for _ in range(k):
                    pool.compensate(-1)
        except BaseException as exc:
            errors.append(exc)

    threads = start_threads(churn, 8, daemon=False)
    try:
        all_ended(threads, WAIT)
        assert not errors, errors
        wait_for(lambda: pool._blocked == 0 and pool._retiring == 0
                 and pool._queue.qsize() == 0, timeout=WAIT)
        for _ in range(3):  # right after retirement, and again
            burst_runs_in_parallel(pool, pool.max_threads)
            assert pool._blocked == 0
        _settled(pool)  # the surplus left too
        assert ran[0] > 0
    finally:
        pool.shutdown(wait=False)
        assert pool.join(WAIT)


def test_work_submitted_right_after_compensate_minus_one_gets_the_threads() -> None:
    """Sentinels racing submissions: surplus idle threads are told to retire and, at
    once, a burst needing every thread of the pool arrives. Repeated: the burst always
    gets its threads, and the surplus is gone afterwards."""
    pool = ThreadPool(3, "hostile-race")
    try:
        for _ in range(40):
            for _ in range(3):
                pool.compensate(1)
            _spawn_idle(pool, 6)  # three threads more than max, all idle
            for _ in range(3):
                pool.compensate(-1)  # three sentinels go out ...
            burst_runs_in_parallel(pool, 3)  # ... while this needs three threads
            _settled(pool)
            assert pool.thread_count <= 3
    finally:
        pool.shutdown(wait=False)
        assert pool.join(WAIT)


def test_shutdown_with_sentinels_queued_is_bounded_and_stops_every_thread() -> None:
    """compensate(-1) then at once shutdown(cancel_futures=True): the drain may drop
    sentinels that idle threads were assigned; every thread still stops, promptly."""
    for i in range(60):
        pool = ThreadPool(1, f"hostile-stop-{i}")
        for _ in range(3):
            pool.compensate(1)
        _spawn_idle(pool, 4)
        for _ in range(3):
            pool.compensate(-1)
        t0 = time.monotonic()
        pool.shutdown(wait=False, cancel_futures=i % 2 == 0)
        assert pool.join(2.0), [t.name for t in pool._threads]
        assert time.monotonic() - t0 < 2.0
        with pytest.raises(RuntimeError):
            pool.submit(int)


def test_cancel_futures_cancels_the_futures_it_drops() -> None:
    """Found (since fixed, older than 0e904cc, same drain):
    ThreadPool.shutdown(cancel_futures=True) (actors/_pool.py) empties the queue
    with get_nowait() and drops the submit() closures without cancelling their
    Futures: result() on one waits forever (here 1 s, TimeoutError) and it is
    neither cancelled nor done, unlike concurrent.futures.ThreadPoolExecutor, which
    cancels them. The dropped sentinels also leave _retiring/_unassigned counted for
    good. Fixed: keep the Future with the queued task (or the task's cancel hook)
    and cancel what the drain removes."""
    pool = ThreadPool(1, "hostile-cancel")
    hold = threading.Event()
    busy = pool.submit(hold.wait, WAIT)
    queued = pool.submit(int)
    wait_for(lambda: pool._queue.qsize() == 1, timeout=WAIT)
    pool.shutdown(wait=False, cancel_futures=True)
    hold.set()
    assert busy.result(timeout=WAIT)
    try:
        queued.result(timeout=1.0)
    except FutureTimeout:
        pytest.fail("a dropped future waits forever: neither cancelled nor done")
    except BaseException:  # CancelledError: what an Executor does
        pass
    assert queued.cancelled()


# --- Borrowed ------------------------------------------------------------------------------


def test_give_up_and_done_racing_never_lend_a_negative_thread() -> None:
    """Found (since fixed): Borrowed.give_up (actors/_pool.py) marks GIVEN_UP_RUNNING
    under its lock but calls pool.compensate(1) after releasing it; a done() on the
    lookup's thread in between sees GIVEN_UP_RUNNING and calls compensate(-1) first.
    _blocked goes to -1: compensate(-1) computes a surplus of one (threads - max - (-1))
    and sends a _RETIRE that an idle thread obeys (2 > 2 + -1), and _assign caps the
    pool at max_threads - 1 meanwhile, so of two tasks that need each other only one
    gets a thread until the +1 lands. Realistic: a lookup timing out just as the backend
    answers. Fix: make the compensate(+1) inside the Borrowed lock (pool code never
    calls back into Borrowed, so the lock order Borrowed -> pool is safe), or let done()
    wait for/skip the -1 until give_up's +1 was made."""
    pool = ThreadPool(2, "hostile-borrowed")
    _spawn_idle(pool, 2)
    original = pool.compensate
    seen: list[int] = []
    in_plus, let_plus = threading.Event(), threading.Event()

    def compensate(delta: int) -> None:
        if delta > 0:
            in_plus.set()
            let_plus.wait(WAIT)  # give_up is between its lock and its +1
        original(delta)
        seen.append(pool._blocked)

    pool.compensate = compensate  # type: ignore[method-assign]
    lookup = Borrowed(pool)
    assert lookup.start()
    giver = threading.Thread(target=lookup.give_up)
    started: list[int] = []
    barrier = threading.Barrier(2, timeout=1.0)

    def needs_a_partner() -> None:
        started.append(1)
        barrier.wait()

    try:
        giver.start()
        assert in_plus.wait(WAIT)
        assert lookup.done() is False  # the lookup's thread: it was given up on
        reached(lambda: pool.thread_count < 2, 0.5)
        futures = [pool.submit(needs_a_partner) for _ in range(2)]
        both = reached(lambda: len(started) == 2, 0.5)
    finally:
        let_plus.set()
        giver.join(WAIT)
    for f in futures:
        with contextlib.suppress(threading.BrokenBarrierError):
            f.result(timeout=WAIT)
    pool.compensate = original  # type: ignore[method-assign]
    try:
        assert min(seen) >= 0, f"_blocked went to {min(seen)}: {seen}"
        assert both, "two tasks of a 2-thread pool, nothing lent: one waited"
        _settled(pool)
    finally:
        pool.shutdown(wait=False)
        pool.join(WAIT)


def test_borrowed_give_up_start_and_done_from_different_threads_balance() -> None:
    """Thousands of lookups, each given up at a random moment (queued, running, after
    done) from another thread: a queued one given up never runs, one given up while it
    ran lends exactly one thread and gets it back, and the pool ends with nothing lent
    and no more than its threads."""
    pool = ThreadPool(3, "hostile-borrowed-many")
    ran: list[bool] = []
    lock = threading.Lock()

    def task(lookup: Borrowed, wait: float) -> None:
        if not lookup.start():
            return
        with lock:
            ran.append(True)
        if wait:
            time.sleep(wait)
        lookup.done()

    rng = random.Random(7)
    lookups: list[Borrowed] = []
    givers: list[threading.Thread] = []
    try:
        for i in range(1500):
            lookup = Borrowed(pool)
            lookups.append(lookup)
            pool.submit(task, lookup, rng.choice((0, 0, 0.0002)))
            if i % 3:
                if i % 50 == 0:
                    g = threading.Thread(target=lookup.give_up)
                    g.start()
                    givers.append(g)
                else:
                    lookup.give_up()
        for g in givers:
            g.join(WAIT)
        wait_for(lambda: all(lk._state in (lk._ENDED, lk._GIVEN_UP_QUEUED)
                             for lk in lookups), timeout=WAIT)
        _settled(pool)
        # given up while queued: skipped (never ran); every other one ran once
        skipped = sum(lk._state == lk._GIVEN_UP_QUEUED for lk in lookups)
        assert len(ran) + skipped == len(lookups)
        burst_runs_in_parallel(pool, 3)
    finally:
        pool.shutdown(wait=False)
        assert pool.join(WAIT)


def test_hung_lookups_cancelled_in_bulk_leave_a_pool_that_runs_in_parallel(
        engine_factory: Any) -> None:
    """Forty executions on a cache whose get() hangs, cancelled (running lookups and
    queued ones): once the backend answers, the worker pool lends nothing, has no
    sentinel pending, holds at most worker_threads, and two calls that need each other
    run at once."""
    hung = GatedCache(hang_get=True)
    gate, asked = hung.gate, hung.asked

    barrier = threading.Barrier(2, timeout=2.0)

    @module
    def Meet(x: int) -> int:
        barrier.wait()
        return x

    engine = engine_factory([Inc, Meet], backends=Backends(cache=hung),
                            scheduler=SchedulerConfig(worker_threads=2))
    workers = engine._runtime.workers
    try:
        pipeline = engine.compile(CACHED)
        handles = [engine.submit(pipeline, {"x": i}, timeout=WAIT) for i in range(40)]
        wait_for(lambda: len(asked) >= 2, timeout=WAIT)
        for h in handles:
            h.cancel()
        for h in handles:
            assert h.result(timeout=WAIT).status is ExecutionStatus.CANCELLED
        # The lookups given up while running lent threads; the pool may have started
        # more, which take the queued lookups -- those are skipped, not run.
        assert workers.thread_count <= 2 + len(asked)
    finally:
        gate.set()
    _settled(workers)
    r = engine.run("in x: Int\ny = Inc(x)\na = Meet(x)\nb = Meet(y)\nout a\nout b",
                   {"x": 1}, timeout=WAIT)
    assert r.status is ExecutionStatus.COMPLETED, r.errors
    _settled(workers)


# --- the store threads -----------------------------------------------------------------


def test_queued_stores_do_not_run_on_a_cache_the_engine_closed(engine_factory: Any) -> None:
    """Found (since fixed): Runtime.stop (actors/_runtime.py) closes the owned cache
    backends (those built from the registry for `cache_backend:`) before it shuts
    down the store pool, whose queued stores 'still run': they call set() on a
    backend already closed (RedisCacheBackend: the client reconnects after close(),
    a connection nobody closes; others fail and log). Fixed: shut the store pool
    down first and join it (bounded, say min(join_timeout, 5 s)) before closing the
    owned caches, dropping what is still queued after that."""
    gate = threading.Event()
    made: list[Any] = []

    class Closing(InMemoryCacheBackend):
        def __init__(self) -> None:
            super().__init__()
            self.closed = False
            self.after_close: list[str] = []
            self.entered = 0
            made.append(self)

        def set(self, key: str, value: Any, ttl: float) -> None:
            if self.closed:
                self.after_close.append(key)
            self.entered += 1
            gate.wait(WAIT)  # a slow backend: two stores run, the rest wait
            super().set(key, value, ttl)

        def close(self) -> None:
            self.closed = True
            gate.set()

    register_backend("cache", "hostile-closing", Closing, replace=True)
    try:
        engine = engine_factory([Inc])
        pipeline = engine.compile(
            'in x: Int\na = Inc(x) with cache: 1min, cache_backend: "hostile-closing"\n'
            "out a")
        for i in range(5):
            assert engine.run(pipeline, {"x": i}, timeout=WAIT).status \
                is ExecutionStatus.COMPLETED
        (cache,) = made
        wait_for(lambda: cache.entered == 2, timeout=WAIT)
        assert engine._runtime.pending_stores == 5
        t0 = time.monotonic()
        engine.shutdown(drain_timeout=5)
        assert time.monotonic() - t0 < 5.0
        wait_for(lambda: engine._runtime.pending_stores == 0, timeout=WAIT)
        assert cache.after_close == [], f"{len(cache.after_close)} set() after close()"
    finally:
        gate.set()
        unregister_backend("cache", "hostile-closing")


def test_shutdown_with_stores_stuck_and_queued_is_bounded_and_leaks_no_thread(
        engine_factory: Any) -> None:
    """Two stores hang in set(), more wait: shutdown returns at once (the store pool is
    not joined), and once the backend answers the store threads finish and exit."""
    before = set(_store_threads())
    stuck = GatedCache(hang_set=True)
    gate = stuck.gate

    engine = engine_factory([Inc], backends=Backends(cache=stuck))
    try:
        pipeline = engine.compile(CACHED)
        for i in range(6):
            assert engine.run(pipeline, {"x": i}, timeout=WAIT).status \
                is ExecutionStatus.COMPLETED
        wait_for(lambda: len(set(_store_threads()) - before) == 2, timeout=WAIT)
        t0 = time.monotonic()
        assert engine.shutdown(drain_timeout=2)
        assert time.monotonic() - t0 < 2.0
    finally:
        gate.set()
    wait_for(lambda: engine._runtime.pending_stores == 0, timeout=WAIT)
    wait_for(lambda: not (set(_store_threads()) - before), timeout=WAIT)


def test_engines_made_and_shut_down_repeatedly_leak_no_store_threads(
        engine_factory: Any) -> None:
    before = set(_store_threads())
    for i in range(15):
        engine = engine_factory([Inc], scheduler=SchedulerConfig(caller_helps=i % 2 == 0))
        r = engine.run(CACHED, {"x": i}, timeout=WAIT)
        assert r.status is ExecutionStatus.COMPLETED
        wait_for(lambda e=engine: e._runtime.pending_stores == 0, timeout=WAIT)
        engine.shutdown(drain_timeout=5)
    wait_for(lambda: not (set(_store_threads()) - before), timeout=WAIT)


@pytest.mark.parametrize("exc", [SystemExit, KeyboardInterrupt, GeneratorExit,
                                 MemoryError])
def test_a_cache_whose_set_raises_a_base_exception_keeps_the_store_threads(
        engine_factory: Any, exc: type[BaseException]) -> None:
    """set() raising BaseException: the store is logged and counted done, the store
    threads survive, and the next stores are made (later runs hit)."""
    calls: list[int] = []
    failing = [True]

    class Raising(InMemoryCacheBackend):
        def set(self, key: str, value: Any, ttl: float) -> None:
            if failing[0]:
                raise exc("from set")
            super().set(key, value, ttl)

    @module
    def Counted(x: int) -> int:
        calls.append(x)
        return x + 1

    engine = engine_factory([Counted], backends=Backends(cache=Raising()))
    runtime = engine._runtime
    pipeline = engine.compile("in x: Int\na = Counted(x) with cache: 1min\nout a")
    for i in range(6):
        assert engine.run(pipeline, {"x": i}, timeout=WAIT).outputs == {"a": i + 1}
    wait_for(lambda: runtime.pending_stores == 0, timeout=WAIT)
    failing[0] = False
    for i in range(6):
        assert engine.run(pipeline, {"x": i}, timeout=WAIT).outputs == {"a": i + 1}
    wait_for(lambda: runtime.pending_stores == 0, timeout=WAIT)
    assert runtime._stores_pool is not None
    assert runtime._stores_pool.thread_count >= 1
    for i in range(6):  # now stored: hits
        assert engine.run(pipeline, {"x": i}, timeout=WAIT).outputs == {"a": i + 1}
    assert len(calls) == 12
    assert engine.health()["runtime"]["cache_stores_dropped"] == 0
    assert runtime.internal_errors == 0


class _OwnSet(InMemoryCacheBackend):
    """A backend of the user's (its own set): stored on the store threads."""

    def set(self, key: str, value: Any, ttl: float) -> None:
        super().set(key, value, ttl)


def test_very_many_stores_are_all_made_and_none_dropped(engine_factory: Any) -> None:
    cache = _OwnSet()
    engine = engine_factory([Inc], backends=Backends(cache=cache),
                            scheduler=SchedulerConfig(worker_threads=4))
    pipeline = engine.compile(CACHED)
    n = 3000
    for start in range(0, n, 500):  # the admission queue holds 1,000
        handles = [engine.submit(pipeline, {"x": i}, timeout=30)
                   for i in range(start, start + 500)]
        for i, h in enumerate(handles, start):
            assert h.result(timeout=30).outputs == {"a": i + 1}
    runtime = engine._runtime
    wait_for(lambda: runtime.pending_stores == 0, timeout=WAIT)
    assert engine.health()["runtime"]["cache_stores_dropped"] == 0
    assert cache.stats().entries == n
    assert runtime._stores_pool is not None
    assert runtime._stores_pool.thread_count <= 2
    assert runtime.workers._blocked == 0


def test_an_async_module_with_a_cache_whose_set_blocks(engine_factory: Any) -> None:
    """An async def module's result is stored on the store threads (never on the event
    loop or a module thread): with set() hung, async and plain pipelines run on, and
    once it answers, the next run is a hit."""
    stuck = GatedCache(hang_set=True)
    gate, on = stuck.gate, stuck.stored_on
    calls: list[int] = []

    @module
    async def AInc(x: int) -> int:
        calls.append(x)
        await asyncio.sleep(0)
        return x + 1

    engine = engine_factory([AInc, Inc], backends=Backends(cache=stuck),
                            scheduler=SchedulerConfig(worker_threads=1))
    try:
        cached = engine.compile("in x: Int\na = AInc(x) with cache: 1min\nout a")
        for i in range(4):
            assert engine.run(cached, {"x": i}, timeout=WAIT).outputs == {"a": i + 1}
        wait_for(lambda: len(on) == 2, timeout=WAIT)
        r = engine.run("in x: Int\na = AInc(x)\nb = Inc(a)\nout b", {"x": 1}, timeout=1.0)
        assert r.status is ExecutionStatus.COMPLETED, [e.code for e in r.errors]
    finally:
        gate.set()
    wait_for(lambda: engine._runtime.pending_stores == 0, timeout=WAIT)
    assert all(name.startswith(STORES) for name in on), on
    n = len(calls)
    assert engine.run(cached, {"x": 0}, timeout=WAIT).outputs == {"a": 1}
    assert len(calls) == n  # a hit


def test_caller_helps_with_a_cache_whose_set_blocks(engine_factory: Any) -> None:
    """The helping caller runs quick modules (and their last turn) itself: a store it
    makes still goes to the store threads, so neither the caller nor the module threads
    hang in set(), and a cached pipeline's run returns promptly."""
    stuck = GatedCache(hang_set=True)
    gate, on = stuck.gate, stuck.stored_on

    engine = engine_factory([Inc], backends=Backends(cache=stuck),
                            scheduler=SchedulerConfig(caller_helps=True, worker_threads=1))
    try:
        plain = engine.compile(PLAIN)
        for i in range(30):  # Inc measured quick: the caller runs it from now on
            assert engine.run(plain, {"x": i}, timeout=WAIT).status \
                is ExecutionStatus.COMPLETED
        cached = engine.compile(CACHED)
        for i in range(8):
            t0 = time.monotonic()
            r = engine.run(cached, {"x": i}, timeout=WAIT)
            assert r.outputs == {"a": i + 1}
            assert time.monotonic() - t0 < 1.0
        r = engine.run(plain, {"x": 1}, timeout=1.0)
        assert r.status is ExecutionStatus.COMPLETED
        assert engine._runtime.pending_stores == 8
    finally:
        gate.set()
    wait_for(lambda: engine._runtime.pending_stores == 0, timeout=WAIT)
    assert on
    assert all(name.startswith(STORES) for name in on), on
    assert engine._runtime.workers._blocked == 0


def test_a_shutdown_from_inside_an_owned_caches_set_does_not_wait_for_itself(
        engine_factory: Any) -> None:
    """Found (since fixed): Runtime.stop waited up to STORES_AT_STOP (2 s) for the
    stores bound for the caches the engine built -- also when called from one of those
    stores (a backend's set() that shuts the engine down), which waited for itself."""
    results: list[tuple[bool, float]] = []
    holder: list[Any] = []

    class StopsTheEngine(InMemoryCacheBackend):
        def set(self, key: str, value: Any, ttl: float) -> None:
            super().set(key, value, ttl)
            t0 = time.monotonic()
            results.append((holder[0].shutdown(drain_timeout=5), time.monotonic() - t0))

    register_backend("cache", "hostile-stops", StopsTheEngine, replace=True)
    try:
        engine = engine_factory([Inc])
        holder.append(engine)
        r = engine.run('in x: Int\na = Inc(x) with cache: 1min, cache_backend: '
                       '"hostile-stops"\nout a', {"x": 1}, timeout=WAIT)
        assert r.status is ExecutionStatus.COMPLETED
        assert reached(lambda: bool(results), WAIT)
        drained, took = results[0]
        assert drained
        assert took < 1.0, f"shutdown from a store took {took:.2f} s"
    finally:
        unregister_backend("cache", "hostile-stops")
