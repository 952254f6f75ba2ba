"""A small thread pool with a per-thread "run next" slot.

Two of these run an engine: the *dispatcher* (a fixed few threads running actor turns)
and the *worker pool* (module calls; a ``concurrent.futures.Executor``). Handing work to
another thread costs about 45 µs here, so work scheduled from a pool thread goes into
that thread's slot and runs as soon as the current task returns, on the same thread.
Only the first task scheduled during a task takes the slot; the rest go to the shared
queue, where idle threads pick them up. A chain of nodes therefore runs on one thread
without handoffs, and a fan-out still spreads over the pool.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from contextlib import contextmanager
from itertools import starmap
from typing import Any, ParamSpec, TypeVar

__all__ = ["RESCUE_AFTER", "SLOT_HELD", "Borrowed", "Droppable", "Gathered", "ThreadPool",
           "current_pool"]

logger = logging.getLogger("constellation.actors")

P = ParamSpec("P")
T = TypeVar("T")
Task = Callable[[], None]

_local = threading.local()
# Consecutive local tasks (slot, then backlog) a thread runs before it lets the shared
# queue in (fairness).
_SLOT_RUN_LIMIT = 256
_ONCE = ((),)  # starmap(get, _ONCE): one call of get(), see ThreadPool._work
_STOP = object()
# The most slices a burst of short tasks is split into (schedule_spread): they are
# quick calls, which take the GIL, so more threads than cores only contend for it.
_SPREAD_SLICES = max(1, min(8, os.cpu_count() or 1))
_RETIRE = object()  # to an idle thread: leave if the pool still has one too many


def _is_control(item: Any) -> bool:
    """Whether a queue item is a signal to a thread (stop, retire), not work."""
    return item is _STOP or item is _RETIRE


RESCUE_AFTER = 0.05
"""A thread busy with one task this long while work waits in its local backlog gets that
work taken away, onto the shared queue (see ThreadPool.rescue): a module that is quick
on average but blocks this once must not hold the calls queued behind it."""


def _held() -> None:  # pragma: no cover - never run; marks a slot as unavailable
    raise AssertionError("SLOT_HELD must never run")


SLOT_HELD: Task = _held
"""Put in a thread's slot while module code runs there: work scheduled meanwhile (say, a
module that submits another execution and waits for it) must go to the queue, not wait
behind the very call that is waiting for it."""


def _cancel_dropped(future: Future[Any]) -> None:
    # Cancelled and notified: concurrent.futures.wait() and as_completed() see it done
    # (cancel() alone leaves it CANCELLED, which they never count). cancel() runs the
    # done callbacks: one raising a BaseException (Ctrl-C) escapes it, after the state
    # was set CANCELLED -- the waiters are told all the same.
    try:
        cancelled = future.cancel()
    except BaseException:
        future.set_running_or_notify_cancel()
        raise
    if cancelled:
        future.set_running_or_notify_cancel()


class _Slice:
    """A slice of tasks (see ThreadPool.schedule_spread): run on a thread of its pool,
    it hands them to that thread's slot and backlog, so that they run one after the
    other there and the rescuer can still move them to the shared queue."""

    __slots__ = ("pool", "tasks")

    def __init__(self, pool: ThreadPool, tasks: list[Task]) -> None:
        self.pool = pool
        self.tasks = tasks

    def __call__(self) -> None:
        schedule_local = self.pool.schedule_local
        for task in self.tasks:
            schedule_local(task)


class Gathered(list):  # type: ignore[type-arg]
    """Tasks gathered for one pool by one thread (see ThreadPool.gather)."""

    __slots__ = ("pool",)

    def __init__(self, pool: ThreadPool) -> None:
        super().__init__()
        self.pool = pool


def current_pool() -> ThreadPool | None:
    """The pool whose thread is running the caller, or ``None`` on other threads."""
    return getattr(_local, "pool", None)


class _ThreadState:
    """What the rescuer sees of one pool thread."""

    __slots__ = ("backlog", "busy_since", "taking")

    def __init__(self) -> None:
        self.backlog: deque[Task] = deque()
        self.busy_since = 0.0  # monotonic start of the task it runs; 0 when idle
        # The item the thread is taking from the shared queue, between the queue's get()
        # and the thread's own name for it (see ThreadPool._work).
        self.taking: list[Any] = []


class ThreadPool(Executor):
    """A pool of up to ``max_threads`` daemon threads, started on demand.

    Args:
        max_threads: the most threads the pool ever holds.
        name: thread name prefix.
        eager: start every thread now rather than when work arrives.
    """

    def __init__(self, max_threads: int, name: str, *, eager: bool = False) -> None:
        if max_threads < 1:
            raise ValueError("a ThreadPool needs at least one thread")
        self.max_threads = max_threads
        self.name = name
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        # Threads waiting on the queue that no queued task has been assigned to. Every
        # queued item has a thread assigned or is counted in _unassigned; one taken
        # out of turn or dropped gives its count back (see _free_one).
        self._idle = 0
        self._unassigned = 0  # queued tasks no thread was assigned to (all busy)
        self._blocked = 0  # threads waiting for another execution (see blocking())
        self._retiring = 0  # _RETIRE sentinels queued and not yet taken
        self._lock = threading.Lock()
        self._shutdown = False
        self._runs_on: tuple[ThreadPool, ...] = (self,)
        self._states: list[_ThreadState] = []  # one per live thread (see _rescue)
        self.rescued = 0
        """Tasks moved off the backlog of a thread that stayed busy (see _rescue)."""
        self.dead_letters = 0
        """Messages posted to actors of this pool after they stopped (dropped)."""
        self.on_dead_letter: Callable[[], None] | None = None
        self._started: list[threading.Thread] = []  # to join: alive, or not yet joined
        self._joining: set[threading.Thread] = set()  # threads in join() (not joined)
        self._late = 0  # tasks queued after shutdown, behind the stops (see _enqueue)
        if eager:
            with self._lock:
                for _ in range(max_threads):
                    self._spawn()
                    self._idle += 1  # started for no task: it waits unassigned

    def prestart(self) -> None:
        """Start one thread now if the pool has none (it waits unassigned), so that a
        later failure to start threads leaves the pool one that takes its work."""
        with self._lock:
            if not self._threads and not self._shutdown:
                self._spawn()
                self._idle += 1

    def dead_letter(self) -> None:
        """Count a message dropped because its actor had stopped (see ``_Inbox.post``)."""
        with self._lock:
            self.dead_letters += 1
        hook = self.on_dead_letter
        if hook is not None:
            try:
                hook()
            except Exception:  # a metrics hook must not fail the sender
                logger.exception("dead-letter hook failed")

    # --- scheduling --------------------------------------------------------------------

    def also_runs_on(self, other: ThreadPool) -> None:
        """Let threads of ``other`` run this pool's tasks in their slots."""
        self._runs_on = (*self._runs_on, other)

    def schedule(self, task: Task) -> None:
        """Run ``task`` soon: next on this thread if it may, else on one of ours.

        "May" means the caller is a thread of this pool (or of a pool registered with
        :meth:`also_runs_on`) whose slot is free.

        Raises:
            RuntimeError: the pool is shut down.
        """
        if getattr(_local, "pool", None) in self._runs_on and _local.slot is None:
            _local.slot = task
            return
        self.schedule_queued(task)

    def schedule_local(self, task: Task) -> None:
        """Run ``task`` on this thread after the work already queued on it, if this is
        one of the threads that may run it; else like :meth:`schedule`.

        For short work (actor turns, calls of modules known to be quick): keeping it on
        the thread that produced it avoids a handoff per task. Long or unknown work
        should use :meth:`schedule` so that it spreads over the pool.
        """
        if getattr(_local, "pool", None) in self._runs_on:
            slot = _local.slot
            if slot is None:
                _local.slot = task
                return
            if slot is not SLOT_HELD:
                _local.backlog.append(task)
                return
        gathered = getattr(_local, "gathered", None)
        if gathered is not None and gathered.pool is self:
            gathered.append(task)  # queued with the others by spread()
            return
        self.schedule_queued(task)

    def gather(self) -> Gathered | None:
        """From now on, gather what this thread hands to :meth:`schedule_local`, to queue
        it all at once with :meth:`spread` (many quick calls launched in one turn).

        Returns:
            The gathering, or ``None`` on a thread of this pool (it keeps such tasks in
            its slot and backlog anyway) or on a thread gathering already.
        """
        if getattr(_local, "gathered", None) is not None or \
                getattr(_local, "pool", None) in self._runs_on:
            return None
        gathered = _local.gathered = Gathered(self)
        return gathered

    def spread(self, gathered: Gathered) -> None:
        """End the gathering and queue what it holds (see :meth:`schedule_spread`).

        Raises:
            RuntimeError: the pool is shut down (nothing was queued then).
        """
        _local.gathered = None
        self.schedule_spread(list(gathered))

    def schedule_queued(self, task: Task) -> None:
        """Put ``task`` on the shared queue (never the caller's slot).

        A thread that cannot be started (``RuntimeError: can't start new thread``)
        leaves the task to the threads the pool has, once one is free.

        Raises:
            RuntimeError: the pool is shut down (checked under the pool's lock, with
                the enqueue: a task accepted here is ahead of the threads' stop
                signals, so it runs unless ``shutdown(cancel_futures=True)`` drops it),
                or it has no thread and none could be started (nothing was queued).
        """
        with self._lock:
            if self._shutdown:
                raise RuntimeError(f"{self.name} is shut down")
            if self._threads:
                self._assign_queued()
            else:
                self._assign()  # nobody else could run it: if no thread starts, raise
            self._queue.put(task)

    def schedule_if_free(self, task: Task) -> bool:
        """Queue ``task`` only if a thread takes it at once: one is waiting with nothing
        assigned, or one more may start. For work that must not wait behind module calls
        (an execution's hand-over, see ``Constellation.run``): the caller does it the
        other way when this says no.

        Returns:
            False: nothing was queued (every thread is busy, or the pool is shut down,
            or no thread could be started).
        """
        with self._lock:
            if self._shutdown or (self._idle == 0 and len(self._threads)
                                  >= self.max_threads + self._blocked):
                return False
            try:
                self._assign()  # first: a thread that cannot start leaves nothing queued
            except RuntimeError:
                logger.exception("%s could not start a thread", self.name)
                return False
            self._queue.put(task)
        return True

    def schedule_spread(self, tasks: list[Task]) -> None:
        """Put ``tasks`` on the shared queue in a few slices, one per thread that may
        run them at once (at most one per core), in order: the thread that takes a
        slice runs its tasks from its slot and backlog, as if it had scheduled them
        itself. For many short tasks at once: one queue put and wake-up per slice, not
        per task.

        Raises:
            RuntimeError: the pool is shut down (nothing was queued then).
        """
        n = len(tasks)
        if not n:
            return
        k = min(n, self.max_threads, _SPREAD_SLICES)
        size, extra = divmod(n, k)
        parts: list[Task] = []
        start = 0
        for i in range(k):
            end = start + size + (1 if i < extra else 0)
            parts.append(_Slice(self, tasks[start:end]) if end - start > 1 else tasks[start])
            start = end
        with self._lock:
            if self._shutdown:
                raise RuntimeError(f"{self.name} is shut down")
            for part in parts:  # all queued before any thread is started: none is lost
                self._queue.put(part)
            for _ in parts:
                self._assign_queued()

    def _enqueue(self, task: Any) -> None:
        # Work accepted earlier (a thread's backlog, moved by release_backlog or the
        # rescuer) must run even if the pool was shut down meanwhile: then it goes
        # behind the threads' stop signals, marked, and a thread that takes a stop while
        # such work is queued puts the stop back and takes the work first.
        with self._lock:
            self._enqueue_locked(task)

    def _enqueue_locked(self, task: Any) -> None:
        # Under _lock: _enqueue's work.
        self._queue_again(task)
        if not self._shutdown:
            self._assign_queued()

    def _assign_queued(self) -> None:
        # Under _lock, for a task queued (or about to be) that must not be lost: a thread
        # for it, or -- if none can be started now -- the next busy one to finish.
        try:
            self._assign()
        except RuntimeError:
            self._unassigned += 1
            logger.exception("%s could not start a thread", self.name)

    def _start_thread(self) -> bool:
        # Under _lock. One more thread; False (logged) if none can be started now.
        try:
            self._spawn()
        except RuntimeError:
            logger.exception("%s could not start a thread", self.name)
            return False
        return True

    def _assign(self) -> None:
        # Under _lock. Assign the queued task a thread: a waiting one if any is not yet
        # assigned, else a new one. Only the enqueuer updates the count after a wake-up
        # (a woken thread touches no lock until it is about to wait again), so a burst
        # of N tasks wakes N threads without ping-ponging on this lock with each of them.
        if self._idle > 0:
            self._idle -= 1
        elif len(self._threads) < self.max_threads + self._blocked and not self._shutdown:
            self._spawn()  # the new thread is this task's: it starts assigned
        else:
            # Every thread is busy: the next one to finish takes it without counting
            # itself idle (else each such task left the idle count one too high, and a
            # pool whose threads were all stuck in abandoned calls never grew).
            self._unassigned += 1

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Run ``fn(*args, **kwargs)`` on the pool (the ``Executor`` interface).
        ``shutdown(cancel_futures=True)`` cancels the Future if the call has not
        started."""
        future: Future[T] = Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)

        self.schedule_queued(Droppable(run, lambda: _cancel_dropped(future)))
        return future

    @property
    def thread_count(self) -> int:
        """Threads alive now."""
        return len(self._threads)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop the threads once the queued work is done.

        Args:
            wait: join the threads before returning (not when called from a pool thread).
            cancel_futures: drop queued work that has not started.
        """
        with self._lock:
            if self._shutdown:
                threads = []
            else:
                self._shutdown = True
                threads = list(self._threads)
            for _ in threads:
                self._queue.put(_STOP)
        if cancel_futures:
            self.drop_queued()
        if wait:  # every call that waits, not only the first: the work may still run
            self.join()

    def drop_queued(self, keep: Callable[[Any], bool] | None = None) -> int:
        """Drop the queued work no thread has started (after :meth:`shutdown`, or a
        pool stopping): a task's ``on_drop`` runs, if it has one (a ``submit()`` Future
        is cancelled, see :class:`Droppable`), the counts are given back, the threads'
        stop signals stay. Tasks for which ``keep(task)`` is true stay queued (ahead of
        the stop signals: they still run).

        Returns:
            How many tasks were dropped.
        """
        dropped: list[Any] = []
        with self._lock:
            stops = 0
            kept: list[_Late] = []
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stops += 1
                    continue
                if item is _RETIRE:
                    self._retiring -= 1
                    self._free_one()
                    continue
                late = type(item) is _Late
                task = item.task if late else item
                if not late:
                    self._free_one()  # counted now as late work, if kept, or gone
                if keep is not None and keep(task):
                    if not late:
                        self._late += 1
                    kept.append(item if late else _Late(task))
                    continue
                if late:
                    self._late -= 1
                dropped.append(task)
            for item in kept:  # run by the threads before they take their stop
                self._queue.put(item)
            for _ in range(stops):
                self._queue.put(_STOP)
            self._retire_surplus()  # a live pool: threads assigned to dropped work idle
        interrupted: BaseException | None = None
        for task in dropped:  # outside the lock: on_drop may run a Future's callbacks
            on_drop = getattr(task, "on_drop", None)
            if on_drop is not None:
                try:
                    on_drop()
                except Exception:
                    logger.exception("dropping a task of %s failed", self.name)
                except BaseException as exc:  # Ctrl-C: once every task is dropped
                    interrupted = interrupted or exc
        if interrupted is not None:
            raise interrupted
        return len(dropped)

    def _free_one(self) -> None:
        # Under _lock: one thread is free again -- it finished its task, or the queued
        # item it was assigned to left the queue (run out of turn, dropped). It takes a
        # task no thread was assigned to, if one is queued, else it counts idle. (For an
        # item that left the queue, that gives back what the enqueuer counted for it.)
        if self._unassigned > 0:
            self._unassigned -= 1
        else:
            self._idle += 1

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the threads to exit after :meth:`shutdown`; return whether all did."""
        deadline = None if timeout is None else time.monotonic() + timeout
        me = threading.current_thread()
        joined: set[threading.Thread] = set()
        with self._lock:
            self._joining.add(me)
        try:
            while True:
                with self._lock:
                    # Every thread started, not only those in _threads: a leaving thread
                    # leaves _threads a moment before it exits. Not the threads joining
                    # too (two pool threads each stopping the pool would wait for each
                    # other for good). Again after each pass: a thread that died started
                    # one in its place for the work it held (_died).
                    threads = [t for t in self._started
                               if t not in self._joining and t not in joined]
                if not threads:
                    return True
                for t in threads:
                    t.join(None if deadline is None
                           else max(0.0, deadline - time.monotonic()))
                    if t.is_alive():
                        return False
                    joined.add(t)
        finally:
            with self._lock:
                self._joining.discard(me)

    @contextmanager
    def blocking(self) -> Iterator[None]:
        """Mark the calling pool thread as blocked on other work for the duration.

        Meanwhile the pool may run one thread more than ``max_threads`` for it, and the
        thread's own queued local work goes to the shared queue. Without this, threads
        that all wait for executions whose modules need a thread would starve the pool
        (a module that runs a sub-pipeline and waits for it, say). Outside a pool
        thread it does nothing.
        """
        if getattr(_local, "pool", None) is not self:
            yield
            return
        # The slot too: held while this thread waits (nothing scheduled from here may
        # wait in it behind the wait -- a module called inside a lambda runs in its
        # execution's turn with the slot free), and a task already in it is queued.
        slot = getattr(_local, "slot", None)
        _local.slot = SLOT_HELD
        self.compensate(1)
        try:
            if slot is not None and slot is not SLOT_HELD:
                self._enqueue(slot)
            self.release_backlog()
            yield
        finally:
            self.compensate(-1)
            _local.slot = SLOT_HELD if slot is SLOT_HELD else None

    def release_backlog(self) -> None:
        """Move the calling thread's queued local work to the shared queue (before it
        starts something that may take long, so that nothing waits behind it)."""
        if getattr(_local, "pool", None) is None:
            return
        backlog: deque[Task] = _local.backlog
        while True:
            try:
                task = backlog.popleft()
            except IndexError:  # empty (or the rescuer took the last one)
                return
            self._enqueue(task)

    def compensate(self, delta: int) -> None:
        """Count ``delta`` threads as lost to work that will not come back soon (+1) or
        as back (-1): the pool may run that many more than ``max_threads`` meanwhile.
        Used for the threads of abandoned module calls, which cannot be killed."""
        with self._lock:
            self._blocked += delta
            if (delta > 0 and self._unassigned > 0
                    and len(self._threads) < self.max_threads + self._blocked
                    and not self._shutdown):
                # Only for a task no thread was assigned to: a queued item that has
                # one (a task a woken thread is about to take, a _RETIRE) needs none.
                if self._start_thread():  # else it stays for a busy thread to take
                    self._unassigned -= 1  # the new thread takes it
            elif delta < 0:
                self._retire_surplus()

    def _retire_surplus(self) -> None:
        # Under _lock. Threads started in place of lost ones that now wait idle would
        # stay for good (a thread retires after a task): tell that many to leave.
        if self._shutdown:
            return
        surplus = len(self._threads) - self.max_threads - self._blocked - self._retiring
        for _ in range(min(surplus, self._idle)):
            self._idle -= 1  # assigned to the sentinel, as to a task
            self._retiring += 1
            self._queue.put(_RETIRE)

    def _take_nowait(self) -> Task | None:
        with self._lock:
            try:
                task = self._queue.get_nowait()
            except queue.Empty:
                return None
            if _is_control(task):
                self._queue.put(task)  # for a waiting thread, not work to run here
                return None
            if type(task) is _Late:
                self._late -= 1
                return task.task
            self._free_one()  # run here: the thread assigned to it stays waiting
            self._retire_surplus()  # ... idle: if it is one too many, it leaves
        return task  # type: ignore[no-any-return]

    # --- threads -----------------------------------------------------------------------

    def _spawn(self) -> None:
        # Under _lock (or in the constructor).
        t = threading.Thread(target=self._worker, name=f"{self.name}-{len(self._threads)}",
                             daemon=True)
        self._threads.append(t)
        started = self._started
        if len(started) > 2 * self.max_threads:
            started[:] = [s for s in started if s.is_alive()]
        started.append(t)
        try:
            t.start()
        except BaseException:  # (RuntimeError: no more threads) not counted, not joined
            self._threads.remove(t)
            started.remove(t)
            raise

    def rescue(self, busy_for: float = RESCUE_AFTER) -> int:
        """One pass of work stealing for threads that block: the local backlog of a
        thread busy with one task for more than ``busy_for`` seconds goes to the shared
        queue, where idle (or new) threads take it. Called from another thread (the
        engine's timer, every ``RESCUE_AFTER`` seconds while executions are in flight).
        ``popleft`` is atomic: the owner and the rescuer never get the same task.

        Returns:
            How many tasks were moved.
        """
        if self._shutdown:
            return 0
        now = time.monotonic()
        moved = 0
        for state in list(self._states):
            backlog = state.backlog
            since = state.busy_since
            if backlog and since and now - since > busy_for:
                while True:
                    try:
                        task = backlog.popleft()
                    except IndexError:
                        break
                    self._enqueue(task)
                    moved += 1
        if moved:
            with self._lock:
                self.rescued += moved
        return moved

    def _worker(self) -> None:
        state = _ThreadState()
        try:
            # The setup is guarded too: a thread started for a task waits here for the
            # lock its starter holds, and an exception injected right after the start
            # fires as it gets the lock.
            _local.pool = self
            _local.slot = None
            _local.backlog = state.backlog
            _local.state = state
            with self._lock:
                self._states.append(state)
            self._work(state)
        except BaseException:
            # Not a task's exception (_run catches those): one injected into this thread
            # (PyThreadState_SetAsyncExc, say) outside a task. The thread is gone.
            logger.exception("a thread of %s died", self.name)
            self._died(state)

    def _died(self, state: _ThreadState) -> None:
        # A replacement takes over what this thread was counted as (idle, or assigned
        # the queued task it was taking: state.taking) and the work it held locally.
        # After shutdown one is started only for work, with a stop signal behind it.
        # All under the lock: shutdown() queues one stop per thread under it, so a
        # thread that takes its stop sees the work (as late work) queued before it.
        slot = getattr(_local, "slot", None)
        _local.slot = None
        local = [slot] if slot is not None and slot is not SLOT_HELD else []
        while True:
            try:
                local.append(state.backlog.popleft())
            except IndexError:
                break
        taken = state.taking[:]
        state.taking.clear()
        work = bool(local) or not all(map(_is_control, taken))
        with self._lock:
            me = threading.current_thread()
            if me in self._threads:
                self._threads.remove(me)
            if state in self._states:
                self._states.remove(state)
            shutdown = self._shutdown
            replaced = (not shutdown or work) and self._start_thread()
            for task in local:  # each needs a thread counted for it
                self._enqueue_locked(task)
            for item in taken:
                # The item just taken from the queue, back as it came: a replacement
                # took over the dying thread's count, which was this item's; without
                # one it is assigned a thread again.
                self._queue_again(item)
                if not replaced and not shutdown and not _is_control(item):
                    self._assign_queued()
            if shutdown and replaced:
                self._queue.put(_STOP)  # for the replacement, after the work

    def _queue_again(self, item: Any) -> None:
        # Under _lock: an item back on the queue; after shutdown work goes behind the
        # stop signals, marked late (see _enqueue).
        if self._shutdown and not _is_control(item) and type(item) is not _Late:
            self._late += 1
            item = _Late(item)
        self._queue.put(item)

    def _work(self, state: _ThreadState) -> None:
        # A thread idle in get() that an exception is injected into (PyThreadState_
        # SetAsyncExc) raises it as get() returns its next item: no Python code runs
        # before the interpreter checks for it, so `task = get()` would lose the item.
        # Here the item goes from the queue into state.taking inside one C call
        # (list.extend over a one-shot starmap: get() returns into the list, not to
        # Python code), where the interpreter's check then finds it; _died puts it back
        # for the replacement thread. (The next line's pop() is Python's again: an
        # exception landing exactly there, not one waiting in get(), can still lose it.)
        take = state.taking
        deposit = take.extend
        pop = take.pop
        get = self._queue.get
        lock = self._lock
        deposit(starmap(get, _ONCE))
        task = pop()  # a new thread was started for a task: it is already assigned
        while True:
            if task is _STOP:
                with lock:
                    if self._late == 0:
                        self._leave(state)
                        return
                    self._queue.put(_STOP)  # behind the late work: that first
                deposit(starmap(get, _ONCE))
                task = pop()
                continue
            if type(task) is _Late:
                with lock:
                    self._late -= 1
                self._run(task.task)
                deposit(starmap(get, _ONCE))
                task = pop()
                continue
            if task is _RETIRE:
                with lock:
                    self._retiring -= 1
                    if len(self._threads) > self.max_threads + self._blocked:
                        self._leave(state)  # still one too many: this one leaves
                        return
                    self._free_one()  # needed again meanwhile, or idle
                deposit(starmap(get, _ONCE))
                task = pop()
                continue
            self._run(task)
            with lock:
                if (len(self._threads) > self.max_threads + self._blocked
                        and self._unassigned == 0):
                    # A thread started in place of an abandoned call: retire it (what
                    # is queued has threads assigned; staying, it would wait idle).
                    self._leave(state)
                    return
                self._free_one()  # a task queued while every thread was busy, or idle
            deposit(starmap(get, _ONCE))
            task = pop()

    def _leave(self, state: _ThreadState) -> None:
        # Under _lock, in the block that decides the thread leaves: counted one moment
        # longer, a second surplus check would pass too (two leave for one surplus) and
        # _assign would see the pool full and leave a new task without a thread.
        self._threads.remove(threading.current_thread())
        self._states.remove(state)

    def _run(self, task: Task) -> None:
        runs = 0
        backlog: deque[Task] = _local.backlog
        state: _ThreadState = _local.state
        monotonic = time.monotonic
        while True:
            state.busy_since = monotonic()
            try:
                task()
            except BaseException:
                logger.exception("unhandled error in a task on %s", self.name)
            nxt: Task | None = _local.slot
            if nxt is None:
                try:
                    nxt = backlog.popleft()
                except IndexError:  # empty (or rescued meanwhile)
                    state.busy_since = 0.0
                    return
            else:
                _local.slot = None
            task = nxt
            runs += 1
            if runs >= _SLOT_RUN_LIMIT:
                # Let the shared queue in: run its head before the next local task. Local
                # work never leaves this thread (spilling it would wake every idle thread),
                # and this thread never blocks while it has local work.
                runs = 0
                shared = self._take_nowait()
                if shared is not None:
                    backlog.appendleft(task)
                    task = shared


class _Late:
    """Work queued after shutdown, behind the stop signals (see ThreadPool._enqueue)."""

    __slots__ = ("task",)

    def __init__(self, task: Task) -> None:
        self.task = task


class Droppable:
    """A queued task with what to do if it is dropped unrun (see
    :meth:`ThreadPool.drop_queued`): cancel its Future, give back a count."""

    __slots__ = ("on_drop", "task")

    def __init__(self, task: Task, on_drop: Callable[[], object]) -> None:
        self.task = task
        self.on_drop = on_drop

    def __call__(self) -> None:
        self.task()


class Borrowed:
    """A task on ``pool`` that its owner may give up on while it runs: a node's cache
    or secrets lookup, which may block in a backend.

    The task calls :meth:`start` when it begins (False: its owner gave up while it was
    queued, so it does nothing) and :meth:`done` when it ends (False: its owner gave up
    meanwhile, the result is unwanted). The owner calls :meth:`give_up`. Only a task
    given up on *while it runs* counts its thread as lost to the pool, which may then
    start one more (``ThreadPool.compensate``); ``done`` gives that thread back. One
    given up on while queued holds no thread and lends none: otherwise the thread the
    pool started for nothing would take the next queued lookup into the same stuck
    backend. Not on the hot path of module calls: a small lock decides.

    ``cancel`` makes it usable as ``Attempt.future``: abandoning the attempt gives up
    on the lookup.
    """

    __slots__ = ("_lock", "_state", "pool")

    _QUEUED, _RUNNING, _ENDED, _GIVEN_UP_QUEUED, _GIVEN_UP_RUNNING = range(5)

    def __init__(self, pool: ThreadPool) -> None:
        self.pool = pool
        self._state = self._QUEUED
        self._lock = threading.Lock()

    def start(self) -> bool:
        """The task begins; False if its owner gave up while it was queued."""
        with self._lock:
            if self._state != self._QUEUED:
                return False
            self._state = self._RUNNING
            return True

    def give_up(self) -> bool:
        """The owner stops waiting; False if the task had already ended."""
        with self._lock:
            state = self._state
            if state == self._QUEUED:
                self._state = self._GIVEN_UP_QUEUED
                return True
            if state != self._RUNNING:
                return False
            self._state = self._GIVEN_UP_RUNNING
            # Under the lock: a done() in between must not give back (-1) first.
            self.pool.compensate(1)  # its thread may be stuck in the backend
        return True

    def done(self) -> bool:
        """The task (started) ends; False if its owner had given up meanwhile."""
        with self._lock:
            state = self._state
            self._state = self._ENDED
            if state == self._GIVEN_UP_RUNNING:
                self.pool.compensate(-1)  # the pool may have started one in its place
        return state == self._RUNNING

    def cancel(self) -> bool:
        self.give_up()
        return True
